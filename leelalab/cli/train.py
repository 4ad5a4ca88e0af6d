"""``leelalab train``: train a student network (ResNet or attention body) from a teacher."""

from __future__ import annotations

import argparse
from typing import Any

from leelalab.cli.common import (
    add_command,
    add_device,
    add_net,
    add_no_progress,
    add_output,
    add_overwrite,
    add_overwrite_file,
    check_figure_output,
    check_output_file,
    make_parent,
    note,
    note_resumed,
    positive_int,
    print_table,
)


def train_config(args: argparse.Namespace) -> Any:
    """The training configuration of parsed ``leelalab train`` options (validated)."""
    from leelalab.runs.experiment import settings_from_args
    from leelalab.training.settings import TrainSettings

    config = settings_from_args(TrainSettings, args).config()
    config.validate()
    return config


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from leelalab.inference.networks import load_network, resolve_device
    from leelalab.training.trainer import train

    output = check_output_file(args.output, overwrite=args.overwrite, suffixes=(".pb.gz",))
    if args.threads:
        torch.set_num_threads(args.threads)
    config = train_config(args)  # settings errors before the teacher loads
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
    from leelalab.plots.training import training_figure
    from leelalab.training.records import load_training_run

    output = check_figure_output(args.output, overwrite=args.overwrite)
    figure = training_figure(load_training_run(args.network_run), title=args.title or "")
    for path in save_figure(figure, make_parent(output)):
        note(f"wrote {path}")
    return 0


def register(commands: Any, plot_commands: Any) -> None:
    """Add ``leelalab train`` and ``leelalab plot training``."""
    from dataclasses import fields

    from leelalab.runs.experiment import add_settings_options
    from leelalab.training.settings import (
        DATA_FIELDS,
        SCHEDULE_FIELDS,
        STUDENT_FIELDS,
        TrainSettings,
    )

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
    everything = {field.name for field in fields(TrainSettings)}
    add_settings_options(parser, TrainSettings, exclude=everything - {"seed"})
    add_device(parser)
    parser.add_argument(
        "--threads", type=positive_int, help="CPU threads for torch (default: torch's choice)"
    )
    add_no_progress(parser)
    for title, names in (
        ("student", STUDENT_FIELDS),
        ("schedule", SCHEDULE_FIELDS),
        ("self-play data", DATA_FIELDS),
    ):
        group = parser.add_argument_group(title)
        add_settings_options(group, TrainSettings, exclude=everything - set(names))  # type: ignore[arg-type]
    parser.set_defaults(run=cmd_train)
