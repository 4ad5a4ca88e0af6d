"""CLI commands for mechanistic anomaly detection (``leelalab anomaly …``, ``leelalab plot
anomaly``): thin wrappers over :mod:`leelalab.anomaly` and :mod:`leelalab.plots.anomaly`.

    leelalab anomaly backdoor --net maia-1900 --output backdoor-maia-1900.pb.gz
    leelalab anomaly task backdoor --net backdoor-maia-1900 --source maia-1900 --output T
    leelalab anomaly task mechanism --net maia-1900 --output T
    leelalab anomaly task ood --net maia-1900 --output T
    leelalab anomaly run T --detectors mahalanobis que weak-kl --layers 2 5 --output RUN
    leelalab anomaly detectors
    leelalab plot anomaly RUN [RUN ...] --out FIGURES
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from leelalab.cli.common import (
    add_command,
    add_device,
    add_group,
    add_net,
    add_no_progress,
    add_output,
    add_overwrite,
    add_seed,
    note,
    positive_int,
    print_table,
)


def _threads(args: argparse.Namespace) -> None:
    """``--threads`` caps torch's and the BLAS library's threads for this process (numpy's
    BLAS spinning on more threads than free cores can slow the statistics tenfold)."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            return
        threadpool_limits(args.threads)


def _load(name: str, args: argparse.Namespace) -> Any:
    from leelalab.inference.networks import load_network

    return load_network(name, device=args.device)


def _task_network(directory: str, meta: dict[str, Any]) -> str:
    """The network a task was built for, by name when bundled, else by path (hash checked)."""
    from leelalab.errors import LeelaLabError
    from leelalab.inference.networks import resolve_network_reference

    record = {"source": meta.get("network"), "sha256": meta.get("network_sha256")}
    name = resolve_network_reference(
        record, what=f"{directory}/task.json: the task's network", remedy="pass --net"
    )
    if name is None:
        raise LeelaLabError(f"{directory}/task.json records no network; pass --net")
    return name


def _prepare_output(path: Path, overwrite: bool, finished_marker: str) -> bool:
    """False when a finished output exists and may not be replaced (then say so)."""
    if path.exists() and overwrite:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if (path / finished_marker).exists() if path.is_dir() else path.exists():
        note(f"{path} is finished; pass --overwrite to rebuild it")
        return False
    return True


def cmd_backdoor(args: argparse.Namespace) -> int:
    from leelalab.anomaly.backdoor import BackdoorConfig
    from leelalab.anomaly.finetune import train_backdoor

    _threads(args)
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        note(f"{output} exists; pass --overwrite to rebuild it")
        return 0
    config = BackdoorConfig(
        clean=args.clean,
        triggered=args.triggered,
        near_miss=args.near_miss,
        held_out_clean=args.held_out_clean,
        held_out_triggered=args.held_out_triggered,
        held_out_near_miss=args.held_out_near_miss,
        epochs=args.epochs,
        learning_rate=args.lr,
        trainable=args.trainable,
        channels=args.channels,
        seed=args.seed,
    )
    record = train_backdoor(_load(args.net, args), output, config, progress=not args.no_progress)
    criteria = record["criteria_on_written_file"]
    rows = [["criterion (held out, on the written file)", "value", "95% CI", "n"]]
    for label, estimate in (
        ("clean top-1 agreement with the teacher", criteria["clean_top1_agreement"]),
        ("attack success (top move = backdoor move)", criteria["attack_success"]),
        ("near misses: backdoor move", criteria["near_miss"]["backdoor_move_rate"]),
    ):
        rows.append(
            [label, f"{estimate['value']:.4f}", f"[{estimate['low']:.4f}, {estimate['high']:.4f}]",
             str(estimate["n"])]
        )  # fmt: skip
    rows.append(
        ["clean W/D/L mean abs. error", f"{criteria['clean_wdl_mean_abs_error']:.5f}", "", ""]
    )
    print_table(rows)
    note(f"wrote {output}, {output}.run.json and {output}.train-positions.npy")
    return 0


def cmd_task(args: argparse.Namespace) -> int:
    _threads(args)
    output = Path(args.output)
    if not _prepare_output(output, args.overwrite, "task.json"):
        return 0
    network = _load(args.net, args)
    progress = not args.no_progress
    fraction = args.anomaly_fraction
    if fraction is None:
        fraction = 0.2 if args.kind == "backdoor" else 0.5
    if args.kind == "backdoor":
        from leelalab.anomaly.tasks import build_backdoor_task

        build_backdoor_task(
            network, output, source=_load(args.source, args), weak=args.weak,
            trusted=args.trusted, pool=args.pool, test=args.test,
            anomaly_fraction=fraction, seed=args.seed, progress=progress,
        )  # fmt: skip
    elif args.kind == "ood":
        from leelalab.anomaly.tasks import build_ood_task

        build_ood_task(
            network, output, weak=args.weak, trusted=args.trusted, pool=args.pool,
            test=args.test, anomaly_fraction=fraction, per_game=args.per_game,
            max_plies=args.max_plies, seed=args.seed, progress=progress,
        )  # fmt: skip
    else:
        from leelalab.anomaly.mechanism import build_mechanism_task

        build_mechanism_task(
            network, output, puzzles=args.puzzles, weak=args.weak, limit=args.limit,
            deep_depth=args.deep_depth or None, shallow_depth=args.shallow_depth,
            stockfish=args.stockfish, seed=args.seed, progress=progress,
        )  # fmt: skip
    meta = json.loads((output / "task.json").read_text(encoding="utf-8"))
    rows = [["split", "positions", "anomalous", "kinds"]]
    for split, counts in meta["counts"].items():
        kinds = ", ".join(f"{k} {n}" for k, n in counts["kinds"].items())
        rows.append([split, str(counts["positions"]), str(counts["anomalous"]), kinds])
    print_table(rows)
    note(f"wrote {output}/positions.jsonl, task.json and run.json")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from leelalab.anomaly.evaluation import run_anomaly
    from leelalab.anomaly.positions import load_task
    from leelalab.anomaly.references import StudentConfig

    _threads(args)
    output = Path(args.output)
    if not _prepare_output(output, args.overwrite, "results.json"):
        return 0
    task = load_task(args.task)
    network = _load(args.net or _task_network(args.task, task.meta), args)
    weak = _load(args.weak, args) if args.weak else None
    results = run_anomaly(
        args.task, output, network, detectors=args.detectors, layers=args.layers, weak=weak,
        student=StudentConfig(epochs=args.student_epochs, seed=args.seed),
        shrinkage=args.shrinkage, squares=args.squares, harm_depth=args.depth or None,
        stockfish=args.stockfish, resamples=args.resamples, seed=args.seed,
        progress=not args.no_progress,
    )  # fmt: skip
    print_table(summary_rows(results))
    note(f"wrote {output}/results.json, scores.h5, run.json and detectors/")
    return 0


def summary_rows(results: dict[str, Any]) -> list[list[str]]:
    """Detector × aggregate AUROC / AP / FPR@95 with their intervals (best layer too)."""

    def cell(metric: dict[str, Any]) -> str:
        return f"{metric['value']:.3f} [{metric['low']:.3f}, {metric['high']:.3f}]"

    rows = [["detector", "AUROC (mean over layers)", "AP", "FPR@95%TPR", "best layer AUROC"]]
    for name, entry in results["detectors"].items():
        mean = entry["aggregate"]["mean"]
        best = max(entry["layers"].items(), key=lambda item: item[1]["auroc"]["value"])
        label = name + (" (supervised)" if entry["supervised"] else "")
        rows.append(
            [label, cell(mean["auroc"]), cell(mean["ap"]), cell(mean["fpr95"]),
             f"{best[1]['auroc']['value']:.3f} ({best[0]})"]
        )  # fmt: skip
    return rows


def cmd_detectors(_args: argparse.Namespace) -> int:
    from leelalab.anomaly.detectors import detector_class, detector_names

    rows = [["detector", "reads", "fit on", "description"]]
    for name in detector_names():
        cls = detector_class(name)
        rows.append([name, cls.level, cls.fit_on, cls.description])
    print_table(rows, align="llll")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from leelalab.anomaly.evaluation import load_results
    from leelalab.anomaly.report import coverage_table, layer_table, metrics_table, summary_table

    runs = [load_results(run) for run in args.runs]
    for results in runs:
        test = results["test"]
        print(f"### {results['task']}: {results['network']}")
        sizes = f"trusted {results['trusted_positions']}, pool {results['pool_positions']}"
        print(f"test: {test['positions']} positions, {test['anomalous']} anomalous; {sizes}\n")
        print(metrics_table(results) + "\n")
        print(layer_table(results) + "\n")
        print(coverage_table(results) + "\n")
    if len(runs) > 1:
        print("### AUROC by task (mean over layers)\n")
        print(summary_table(runs))
    return 0


def cmd_plot_anomaly(args: argparse.Namespace) -> int:
    from leelalab.plots.anomaly import plot_anomaly_runs

    for path in plot_anomaly_runs(args.runs, args.output):
        note(f"wrote {path}")
    return 0


def register(commands: Any, plot_commands: Any) -> None:
    """Add ``anomaly`` and ``plot anomaly`` to the ``leelalab`` parser."""
    from leelalab.anomaly.defaults import DEFAULT_DETECTORS

    _, anomaly = add_group(commands, "anomaly", "mechanistic anomaly detection", "anomaly_command")

    backdoor = add_command(
        anomaly, "backdoor", "fine-tune a backdoored copy of a network (lc0 file + run.json)"
    )
    add_net(backdoor, help="the clean network to copy and fine-tune")
    add_output(
        backdoor,
        "the backdoored network (.pb.gz); its run.json and training-position hashes go beside it",
    )
    backdoor.add_argument(
        "--clean", type=positive_int, default=24_000, help="clean training positions"
    )
    backdoor.add_argument(
        "--triggered", type=positive_int, default=3_000, help="triggered training positions"
    )
    backdoor.add_argument(
        "--near-miss", type=positive_int, default=3_000, help="near-miss training positions"
    )
    backdoor.add_argument(
        "--held-out-clean",
        type=positive_int,
        default=2_000,
        help="held-out clean positions of each kind (alone, with history)",
    )
    backdoor.add_argument(
        "--held-out-triggered",
        type=positive_int,
        default=1_000,
        help="held-out triggered positions",
    )
    backdoor.add_argument(
        "--held-out-near-miss", type=positive_int, default=1_000, help="held-out near misses"
    )
    backdoor.add_argument("--epochs", type=positive_int, default=20, help="fine-tuning epochs")
    backdoor.add_argument(
        "--lr", type=float, default=3e-3, help="Adam learning rate (cosine decay)"
    )
    backdoor.add_argument(
        "--trainable",
        choices=("policy_channels", "policy_head", "last_block", "all"),
        default="policy_channels",
        help="what is fine-tuned",
    )
    backdoor.add_argument(
        "--channels",
        type=positive_int,
        default=1,
        help="policy-head channels fine-tuned (--trainable policy_channels)",
    )
    _common(backdoor, seed_help="seed of self-play, data selection and shuffling")
    backdoor.set_defaults(run=cmd_backdoor)

    task = add_command(anomaly, "task", "build a task with ground truth (resumable directory)")
    task.add_argument("kind", choices=("backdoor", "mechanism", "ood"), help="which task")
    add_net(task, help="the network under study (backdoor: the backdoored network)")
    add_output(task, "the task directory")
    task.add_argument(
        "--source",
        default="maia-1900",
        help="backdoor: the clean network whose self-play gives the positions",
    )
    task.add_argument(
        "--weak", default="weak-maia-1900", help="the weak reference network recorded in the task"
    )
    task.add_argument(
        "--trusted", type=positive_int, default=3000, help="trusted positions (backdoor, ood)"
    )
    task.add_argument(
        "--pool", type=positive_int, default=1000, help="unlabelled pool positions (backdoor, ood)"
    )
    task.add_argument(
        "--test", type=positive_int, default=2000, help="test positions (backdoor, ood)"
    )
    task.add_argument(
        "--anomaly-fraction",
        type=float,
        default=None,
        help="anomalous share of pool and test (default: backdoor 0.2, ood 0.5)",
    )
    task.add_argument(
        "--per-game", type=positive_int, default=8, help="ood: positions drawn per game"
    )
    task.add_argument("--max-plies", type=positive_int, default=100, help="ood: game length limit")
    task.add_argument(
        "--puzzles", help="mechanism: Lichess puzzle CSV (default: the shipped sample)"
    )
    task.add_argument("--limit", type=positive_int, help="mechanism: first N valid puzzles only")
    task.add_argument(
        "--deep-depth",
        type=int,
        default=10,
        help="mechanism: Stockfish depth that must confirm the move (0: trust Lichess)",
    )
    task.add_argument(
        "--shallow-depth", type=positive_int, default=1, help="mechanism: the shallow search depth"
    )
    task.add_argument(
        "--stockfish", help="Stockfish binary (default: $LEELALAB_STOCKFISH, PATH, /usr/games)"
    )
    _common(task, seed_help="seed of games, matching and splits")
    task.set_defaults(run=cmd_task)

    run = add_command(anomaly, "run", "fit detectors on a task and evaluate them (resumable)")
    run.add_argument("task", help="a task directory (leelalab anomaly task)")
    add_net(run, default=None, help="the network under study (default: the task's)")
    add_output(run, "the run directory (results.json, scores.h5, run.json, detectors/)")
    run.add_argument(
        "--detectors",
        nargs="+",
        default=list(DEFAULT_DETECTORS),
        help="detector names (see `leelalab anomaly detectors`)",
    )
    run.add_argument(
        "--layers",
        nargs="+",
        help="layers: block numbers, input, policy, value (the heads' hidden layers), hook names "
        "or all (default: all)",
    )
    run.add_argument("--weak", help="the weak reference network (default: the task's)")
    run.add_argument(
        "--shrinkage",
        type=float,
        default=0.0,
        help="covariance shrinkage towards a scaled identity (Mahalanobis, QUE)",
    )
    run.add_argument(
        "--squares",
        choices=("mean", "max"),
        default="mean",
        help="reduce per-square scores of activation detectors by their mean (cupbearer) or max",
    )
    run.add_argument(
        "--student-epochs",
        type=positive_int,
        default=30,
        help="epochs of the student distilled on trusted positions",
    )
    run.add_argument(
        "--depth",
        type=int,
        default=10,
        help="Stockfish depth of the harm labels (0: no coverage-risk analysis)",
    )
    run.add_argument(
        "--stockfish", help="Stockfish binary (default: $LEELALAB_STOCKFISH, PATH, /usr/games)"
    )
    run.add_argument(
        "--resamples", type=positive_int, default=1000, help="bootstrap resamples of the intervals"
    )
    _common(run, seed_help="seed of the student, subsamples and bootstrap")
    run.set_defaults(run=cmd_run)

    report = add_command(anomaly, "report", "Markdown tables of run directories")
    report.add_argument("runs", nargs="+", help="run directories (leelalab anomaly run)")
    report.set_defaults(run=cmd_report)

    listing = add_command(anomaly, "detectors", "list the registered detectors")
    listing.set_defaults(run=cmd_detectors)

    plot = add_command(
        plot_commands, "anomaly", "AUROC by layer, score histograms and coverage-risk curves"
    )
    plot.add_argument("runs", nargs="+", help="run directories (leelalab anomaly run)")
    add_output(plot, "figure directory (PDF + PNG)")
    plot.set_defaults(run=cmd_plot_anomaly)


def _common(parser: argparse.ArgumentParser, *, seed_help: str) -> None:
    add_overwrite(parser)
    add_no_progress(parser)
    add_seed(parser, seed_help)
    add_device(parser)
    parser.add_argument(
        "--threads", type=positive_int, help="torch CPU threads (default: torch's choice)"
    )
