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
    note,
    positive_int,
    print_table,
)
from leelalab.cli.figures import add_figure_overwrite, write_figures


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


def cmd_backdoor(args: argparse.Namespace) -> int:
    from leelalab.anomaly.finetune import train_backdoor
    from leelalab.anomaly.settings import BackdoorConfig
    from leelalab.runs.experiment import settings_from_args

    config = settings_from_args(BackdoorConfig, args)  # out-of-range values: one line, first
    _threads(args)
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        note(f"{output} exists; pass --overwrite to rebuild it")
        return 0
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
    from leelalab.anomaly.settings import TaskSettings
    from leelalab.anomaly.tasks import build_task, open_task
    from leelalab.runs.experiment import settings_from_args

    settings = settings_from_args(TaskSettings, args, kind=args.kind)
    _threads(args)
    network = _load(args.net, args)
    source = _load(settings.source, args) if settings.kind == "backdoor" else None
    run = open_task(settings, network, args.output, source=source, overwrite=args.overwrite)
    if run.complete("task.json"):
        note(f"{run.path} is finished; pass --overwrite to rebuild it")
        return 0
    meta = build_task(settings, network, run, source=source, progress=not args.no_progress)
    rows = [["split", "positions", "anomalous", "kinds"]]
    for split, counts in meta["counts"].items():
        kinds = ", ".join(f"{k} {n}" for k, n in counts["kinds"].items())
        rows.append([split, str(counts["positions"]), str(counts["anomalous"]), kinds])
    print_table(rows)
    note(f"wrote {run.path}/positions.jsonl, task.json and run.json")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from leelalab.anomaly.evaluation import open_run, run_anomaly
    from leelalab.anomaly.positions import load_task
    from leelalab.anomaly.report import minimum_note
    from leelalab.anomaly.settings import RunSettings
    from leelalab.runs.experiment import settings_from_args

    settings = settings_from_args(RunSettings, args)
    _threads(args)
    task = load_task(args.task)
    network = _load(args.net or _task_network(args.task, task.meta), args)
    weak = _load(args.weak, args) if args.weak else None
    run = open_run(settings, task, network, args.output, weak=weak, overwrite=args.overwrite)
    if run.complete("results.json"):
        note(f"{run.path} is finished; pass --overwrite to rebuild it")
        return 0
    results = run_anomaly(settings, task, network, run, weak=weak, progress=not args.no_progress)
    summary = results.to_json()
    print_table(summary_rows(summary))
    if minimum_note(summary):
        note(minimum_note(summary))
    note(f"wrote {run.path}/results.json, scores.h5, run.json and detectors/")
    return 0


def summary_rows(results: dict[str, Any]) -> list[list[str]]:
    """Detector × aggregate AUROC / AP / FPR@95 with their intervals (best layer too);
    "too few" where the test split is below the minimum n."""
    from leelalab.anomaly.report import describe_metric, enough_positions

    enough = enough_positions(results)
    rows = [["detector", "AUROC (mean over layers)", "AP", "FPR@95%TPR", "best layer AUROC"]]
    for name, entry in results["detectors"].items():
        mean = entry["aggregate"]["mean"]
        best = max(entry["layers"].items(), key=lambda item: item[1]["auroc"]["value"])
        label = name + (" (supervised)" if entry["supervised"] else "")
        cells = [describe_metric(mean[key], 3, enough) for key in ("auroc", "ap", "fpr95")]
        best_cell = f"{best[1]['auroc']['value']:.3f} ({best[0]})" if enough else "too few"
        rows.append([label, *cells, best_cell])
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
    from leelalab.anomaly.report import (
        coverage_table,
        layer_table,
        metrics_table,
        minimum_note,
        summary_table,
    )
    from leelalab.anomaly.results import load_results

    runs = [load_results(run) for run in args.runs]
    for results in runs:
        test = results["test"]
        print(f"### {results['task']}: {results['network']}")
        sizes = f"trusted {results['trusted_positions']}, pool {results['pool_positions']}"
        print(f"test: {test['positions']} positions, {test['anomalous']} anomalous; {sizes}\n")
        if minimum_note(results):
            print(minimum_note(results) + "\n")
        print(metrics_table(results) + "\n")
        print(layer_table(results) + "\n")
        print(coverage_table(results) + "\n")
    if len(runs) > 1:
        print("### AUROC by task (mean over layers)\n")
        print(summary_table(runs))
    return 0


def cmd_plot_anomaly(args: argparse.Namespace) -> int:
    from leelalab.anomaly.results import load_run
    from leelalab.plots.anomaly import plot_anomaly_runs

    # Every run is read before the figure folder is made.
    runs = [load_run(run) for run in args.runs]
    drawn = write_figures(
        args.output, args.overwrite, lambda folder: plot_anomaly_runs(runs, folder)
    )
    for path in drawn:
        note(f"wrote {path}")
    return 0


def register(commands: Any, plot_commands: Any) -> None:
    """Add ``anomaly`` and ``plot anomaly`` to the ``leelalab`` parser.

    The options of ``backdoor``, ``task`` and ``run`` are generated from their settings
    classes (help text, defaults and allowed values live there); the settings modules are
    light (no torch, h5py or scikit-learn), so help screens stay fast.
    """
    from leelalab.anomaly.settings import (
        DEFAULT_DETECTORS,
        BackdoorConfig,
        RunSettings,
        TaskSettings,
    )
    from leelalab.runs.experiment import add_settings_options

    _, anomaly = add_group(commands, "anomaly", "mechanistic anomaly detection", "anomaly_command")

    backdoor = add_command(
        anomaly, "backdoor", "fine-tune a backdoored copy of a network (lc0 file + run.json)"
    )
    add_net(backdoor, help="the clean network to copy and fine-tune")
    add_output(
        backdoor,
        "the backdoored network (.pb.gz); its run.json and training-position hashes go beside it",
    )
    add_settings_options(
        backdoor,
        BackdoorConfig,
        exclude=BackdoorConfig.LIBRARY_ONLY,
        defaults={"learning_rate": 3e-3, "trainable": "policy_channels"},
    )
    _common(backdoor)
    backdoor.set_defaults(run=cmd_backdoor)

    task = add_command(anomaly, "task", "build a task with ground truth (resumable directory)")
    task.add_argument("kind", choices=("backdoor", "mechanism", "ood"), help="which task")
    add_net(task, help="the network under study (backdoor: the backdoored network)")
    add_output(task, "the task directory")
    add_settings_options(task, TaskSettings, exclude=("kind", *TaskSettings.LIBRARY_ONLY))
    _common(task)
    task.set_defaults(run=cmd_task)

    run = add_command(anomaly, "run", "fit detectors on a task and evaluate them (resumable)")
    run.add_argument("task", help="a task directory (leelalab anomaly task)")
    add_net(run, default=None, help="the network under study (default: the task's)")
    add_output(run, "the run directory (results.json, scores.h5, run.json, detectors/)")
    run.add_argument("--weak", help="the weak reference network (default: the task's)")
    add_settings_options(run, RunSettings, defaults={"detectors": list(DEFAULT_DETECTORS)})
    _common(run)
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
    add_figure_overwrite(plot)
    plot.set_defaults(run=cmd_plot_anomaly)


def _common(parser: argparse.ArgumentParser) -> None:
    add_overwrite(parser)
    add_no_progress(parser)
    add_device(parser)
    parser.add_argument(
        "--threads", type=positive_int, help="torch CPU threads (default: torch's choice)"
    )
