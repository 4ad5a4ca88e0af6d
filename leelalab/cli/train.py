"""``leelalab train``: train a student network (ResNet or attention body) from a teacher."""

from __future__ import annotations

import argparse
from typing import Any

from leelalab.cli.common import (
    add_batch_size,
    add_command,
    add_device,
    add_net,
    add_no_progress,
    add_output,
    add_overwrite,
    add_overwrite_file,
    add_seed,
    check_figure_output,
    check_output_file,
    make_parent,
    note,
    note_resumed,
    positive_int,
    print_table,
)


def _student_config(args: argparse.Namespace) -> Any:
    from leelalab.training.students import StudentConfig

    return StudentConfig(
        family=args.family,
        blocks=args.blocks,
        filters=args.filters,
        se_channels=args.se_channels,
        layers=args.layers,
        d_model=args.d_model,
        heads=args.heads,
        ffn_size=args.ffn_size,
        smolgen=tuple(args.smolgen) if args.smolgen else None,
        policy_size=args.policy_size or args.d_model,
        value_channels=args.value_channels,
        value_hidden=args.value_hidden,
        moves_left=args.moves_left,
        activation=args.activation,
    )


def train_config(args: argparse.Namespace) -> Any:
    from leelalab.training.trainer import TrainConfig

    return TrainConfig(
        student=_student_config(args),
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        buffer_size=args.buffer_size,
        positions_per_epoch=args.positions_per_epoch,
        validation_positions=args.validation_positions,
        games_in_parallel=args.games_in_parallel,
        max_plies=args.max_plies,
        random_plies=args.random_plies,
        opening_plies=args.opening_plies,
        opening_temperature=args.opening_temperature,
        sample_rate=args.sample_rate,
        learning_rate=args.learning_rate,
        final_learning_rate=args.final_learning_rate,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        seed=args.seed,
    )


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from leelalab.inference.networks import load_network, resolve_device
    from leelalab.training.trainer import train

    output = check_output_file(args.output, overwrite=args.overwrite, suffixes=(".pb.gz",))
    if args.threads:
        torch.set_num_threads(args.threads)
    config = train_config(args)
    config.validate()  # settings errors before the teacher loads
    device = resolve_device(args.device)
    teacher = load_network(args.net, device=device)

    def on_epoch(record: dict[str, Any]) -> None:
        note(
            f"epoch {record['epoch']}/{config.epochs}: loss {record['train_loss']:.4f}, "
            f"held-out top-1 {record['held_out_top1']:.3f}, KL {record['held_out_kl']:.3f}, "
            f"W/D/L MAE {record['held_out_wdl_mae']:.4f} "
            f"({record['train_positions_per_second']:.0f} pos/s)"
        )

    report = train(
        teacher,
        output,
        config,
        checkpoints=args.checkpoints,
        overwrite=args.overwrite,
        device=device,
        progress=not args.no_progress,
        on_epoch=on_epoch,
        on_resume=lambda done, total: note_resumed(output, done, total, "epochs"),
    )
    held = report.held_out
    rows = [
        [
            "held-out positions",
            "top-1 agreement (95% CI)",
            "teacher p(student top)",
            "KL",
            "W/D/L MAE",
        ]
    ]
    for name, agreement in (("all", held), ("unseen in training", report.held_out_unseen)):
        if agreement is None:
            continue
        low, high = agreement.top1_ci95
        rows.append(
            [
                f"{name} ({agreement.positions})",
                f"{agreement.top1_agreement:.3f} [{low:.3f}, {high:.3f}]",
                f"{agreement.mean_teacher_prob_of_student_top:.3f}",
                f"{agreement.policy_kl:.3f}",
                f"{agreement.wdl_mae:.4f}",
            ]
        )
    print_table(rows)
    note(f"wrote {report.output} (+ .run.json) in {report.seconds:.0f} s")
    return 0


def cmd_plot_training(args: argparse.Namespace) -> int:
    from leelalab.plots.boards import save_figure
    from leelalab.plots.training import load_run, training_figure

    output = check_figure_output(args.output, overwrite=args.overwrite)
    figure = training_figure(load_run(args.network_run), title=args.title or "")
    for path in save_figure(figure, make_parent(output)):
        note(f"wrote {path}")
    return 0


def register(commands: Any, plot_commands: Any) -> None:
    """Add ``leelalab train`` and ``leelalab plot training``."""
    plot = add_command(
        plot_commands, "training", "held-out agreement and losses per epoch of a training run"
    )
    plot.add_argument(
        "network_run",
        metavar="NETWORK",
        help="what `leelalab train` wrote: the network (.pb.gz) or its run record "
        "(NETWORK.run.json)",
    )
    add_output(plot, "the figure file (STEM.pdf; STEM.png is written beside it)")
    add_overwrite_file(plot)
    plot.add_argument("--title", help="figure title (default: the student and schedule)")
    plot.set_defaults(run=cmd_plot_training)
    parser = add_command(
        commands,
        "train",
        "train a student network (ResNet or attention body) from a teacher's self-play",
        description=(
            "Train a student network in lc0 format from a teacher's sampled self-play (never\n"
            "puzzles): policy (KL) and W/D/L targets, a bounded buffer refreshed every epoch,\n"
            "validation on held-out games each epoch, a checkpoint after each epoch (a killed\n"
            "run resumes where it stopped). Writes OUTPUT (.pb.gz, lc0 loads it) and\n"
            "OUTPUT.run.json."
        ),
    )
    add_net(parser, help="the teacher network (file or bundled name)", aliases=("--teacher",))
    add_output(
        parser,
        "the network file to write (must end in .pb.gz); OUTPUT.run.json is written beside it",
    )
    parser.add_argument("--checkpoints", help="checkpoint directory (default: OUTPUT.checkpoints)")
    add_overwrite(parser)
    add_seed(parser, "seed of the student's initialisation, the self-play and the batches")
    add_device(parser)
    parser.add_argument(
        "--threads", type=positive_int, help="CPU threads for torch (default: torch's choice)"
    )
    add_no_progress(parser)

    student = parser.add_argument_group("student")
    student.add_argument(
        "--family", default="transformer", help="student family: transformer or resnet"
    )
    student.add_argument("--layers", type=int, default=6, help="transformer: encoder layers")
    student.add_argument("--d-model", type=int, default=128, help="transformer: width")
    student.add_argument("--heads", type=int, default=8, help="transformer: attention heads")
    student.add_argument("--ffn-size", type=int, default=256, help="transformer: FFN width")
    student.add_argument(
        "--smolgen",
        type=int,
        nargs=3,
        metavar=("COMPRESSED", "HIDDEN", "GEN"),
        help="transformer: add smolgen with these sizes (default: none)",
    )
    student.add_argument(
        "--policy-size", type=int, help="transformer: attention-policy width (default: d-model)"
    )
    student.add_argument("--blocks", type=int, default=2, help="resnet: residual blocks")
    student.add_argument("--filters", type=int, default=16, help="resnet: filters")
    student.add_argument(
        "--se-channels", type=int, default=0, help="resnet: squeeze-excitation width (0: none)"
    )
    student.add_argument("--value-channels", type=int, default=32, help="value head channels")
    student.add_argument("--value-hidden", type=int, default=128, help="value head hidden units")
    student.add_argument(
        "--moves-left",
        action="store_true",
        help="add a moves-left head (trained on the self-play games' real lengths)",
    )
    student.add_argument("--activation", default="relu", help="relu or mish")

    schedule = parser.add_argument_group("schedule")
    schedule.add_argument("--epochs", type=int, default=30, help="epochs")
    schedule.add_argument("--steps-per-epoch", type=int, default=100, help="optimiser steps")
    add_batch_size(schedule, 128, "positions per optimiser step")
    schedule.add_argument("--learning-rate", type=float, default=1e-3, help="peak AdamW rate")
    schedule.add_argument(
        "--final-learning-rate", type=float, default=5e-5, help="rate at the end of the cosine"
    )
    schedule.add_argument("--warmup-steps", type=int, default=100, help="linear warm-up steps")
    schedule.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay")

    data = parser.add_argument_group("self-play data")
    data.add_argument("--buffer-size", type=int, default=32_768, help="positions in the buffer")
    data.add_argument(
        "--positions-per-epoch", type=int, default=4096, help="fresh positions per epoch"
    )
    data.add_argument("--validation-positions", type=int, default=4096, help="held-out positions")
    data.add_argument("--games-in-parallel", type=int, default=128, help="self-play games")
    data.add_argument("--max-plies", type=int, default=200, help="games are cut at this ply")
    data.add_argument(
        "--random-plies", type=int, default=2, help="each game opens with 0..N random moves"
    )
    data.add_argument(
        "--opening-plies",
        type=int,
        default=10,
        help="plies sampled at --opening-temperature",
    )
    data.add_argument(
        "--opening-temperature", type=float, default=1.5, help="opening sampling temperature"
    )
    data.add_argument(
        "--sample-rate", type=float, default=0.5, help="fraction of positions kept for training"
    )
    parser.set_defaults(run=cmd_train)
