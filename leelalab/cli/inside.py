"""CLI commands for looking inside the network (``leelalab lens``, ``leelalab refutations``,
``leelalab future-board``, ``leelalab steer`` and their ``leelalab plot`` figures): thin
wrappers over :mod:`leelalab.probing.lens`, :mod:`leelalab.analyses.lens_analysis`,
:mod:`leelalab.analyses.refutation`, :mod:`leelalab.probing.concepts`,
:mod:`leelalab.analyses.steering` and :mod:`leelalab.plots.inside`.

Each experiment's options are generated from its settings class (light modules without
torch, so help screens stay fast), which refuses an out-of-range value in one line before
any input is read; inputs are checked before ``--output`` is touched, and the output
directory follows :class:`~leelalab.runs.results.RunDirectory`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from leelalab.analyses.inside_settings import (
    LensRunSettings,
    RefutationMeasureSettings,
    RefutationSearchSettings,
    SteeringConfig,
)
from leelalab.cli.common import (
    add_command,
    add_device,
    add_group,
    add_net,
    add_no_progress,
    add_output,
    add_overwrite,
    network_from_dataset,
    note,
    positive_int,
    print_table,
)
from leelalab.engines import CACHE_FILE
from leelalab.errors import LeelaLabError
from leelalab.probing.concept_settings import ConceptConfig
from leelalab.probing.lens_settings import TunedLensConfig
from leelalab.runs.experiment import add_settings_options, settings_from_args

DEGENERATE = "degenerate: predicts one class"


def _load(name: str, device: str) -> Any:
    from leelalab.inference.networks import load_network

    return load_network(name, device=device)


def _fmt(estimate: dict[str, Any] | None, digits: int = 3) -> str:
    if estimate is None or estimate.get("value") is None:
        return "-"
    value, low, high = estimate["value"], estimate["low"], estimate["high"]
    if low is None or high is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _run_options(args: argparse.Namespace) -> dict[str, bool]:
    """``progress`` and ``overwrite`` of every run, from ``--no-progress`` and ``--overwrite``."""
    return {"progress": not args.no_progress, "overwrite": args.overwrite}


def _add_directory(parser: argparse.ArgumentParser, help: str, dest: str = "directory") -> None:
    """The positional input directory, shown as ``DIR`` in every command."""
    parser.add_argument(dest, metavar="DIR", help=help)


# lens -------------------------------------------------------------------------------------


def cmd_lens_train(args: argparse.Namespace) -> int:
    from leelalab.probing.lens import fit_tuned_lens

    settings = settings_from_args(TunedLensConfig, args)
    network = _load(args.net, args.device)
    report = fit_tuned_lens(network, args.output, settings, **_run_options(args))
    held = report["held_out"]
    print(
        f"held-out self-play positions: {report['held_out_positions']} of "
        f"{report['held_out_games']} games (trained on {report['train_positions']} of "
        f"{report['train_games']} others; {report['held_out_dropped_as_in_training']} held-out "
        "positions dropped as they occur in training games)"
    )
    rows = [["layer", "policy KL logit", "policy KL tuned", "W/D/L KL logit", "W/D/L KL tuned"]]
    for i, layer in enumerate(held["logit_lens"]["layers"]):
        rows.append(
            [
                _layer_word(layer),
                f"{held['logit_lens']['policy_kl'][i]:.3f}",
                f"{held['tuned_lens']['policy_kl'][i]:.3f}",
                f"{held['logit_lens']['wdl_kl'][i]:.3f}",
                f"{held['tuned_lens']['wdl_kl'][i]:.3f}",
            ]
        )
    print_table(rows)
    note(f"wrote {args.output}/lens.safetensors, lens.json, positions.jsonl, run.json")
    return 0


def _layer_word(layer: int) -> str:
    """A lens layer as the README and the figures name it: ``in`` for -1 (after the input
    convolution or embedding; the stored files keep -1), else the block index."""
    return "in" if layer == -1 else str(layer)


def cmd_lens_run(args: argparse.Namespace) -> int:
    from leelalab.analyses.lens_analysis import LensSummary, check_dataset_network
    from leelalab.analyses.lens_analysis import run_lens_analysis as run

    settings = settings_from_args(LensRunSettings, args)
    network = network_from_dataset(args)
    check_dataset_network(Path(args.directory), network)  # before --overwrite removes anything
    path = run(
        network,
        args.directory,
        args.output,
        settings,
        tuned_lens=args.tuned_lens,
        **_run_options(args),
    )
    for kind, summary in LensSummary.load(args.output).kinds().items():
        print(f"{kind} lens: rates with 95% Wilson intervals; emergence = first top-1 layer")
        rows = [["group", "n", "final top-1", "found then lost", "forgotten", "emergence layer"]]
        for name, group in summary["groups"].items():
            rows.append(
                [
                    name,
                    str(group["n"]),
                    _fmt(group["final_top1"]),
                    _fmt(group["found_then_lost"]),
                    _fmt(group["forgotten"]),
                    _fmt(group["emergence_layer_mean"], 2),
                ]
            )
        print_table(rows)
    note(f"wrote {path}, summary.json and run.json")
    return 0


# refutations ------------------------------------------------------------------------------


def cmd_refutations_find(args: argparse.Namespace) -> int:
    from leelalab.analyses.refutation import RefutationSearch, find_refutations

    settings = settings_from_args(RefutationSearchSettings, args)
    path = find_refutations(
        args.directory,
        args.output,
        settings,
        stockfish=args.stockfish,
        **_run_options(args),
    )
    summary = RefutationSearch.load(args.output)
    rows = [["depth", "refutations", "matched pairs", "local controls", "statuses"]]
    for k, entry in summary.depths.items():
        statuses = ", ".join(f"{name} {count}" for name, count in sorted(entry["status"].items()))
        rows.append(
            [
                k,
                str(entry["refutations"]),
                str(entry["pairs"]),
                str(entry["local_controls"]),
                statuses,
            ]
        )
    print(f"{summary.puzzles} puzzles")
    print_table(rows)
    note(f"wrote {path}, summary.json, run.json and {CACHE_FILE}")
    return 0


def _measured_networks(args: argparse.Namespace, dataset: Path) -> dict[str, Any]:
    """``--strong``/``--weak``, else the networks the filter run recorded."""
    from leelalab.puzzles.dataset import dataset_network

    networks = {}
    for label in ("strong", "weak"):
        name = getattr(args, label)
        if name is None and (dataset / "settings.json").is_file():
            name = dataset_network(dataset, label)
        if name is None:
            raise LeelaLabError(f"no --{label} network given and none recorded in {dataset}")
        networks[label] = _load(name, args.device)
    return networks


def cmd_refutations_measure(args: argparse.Namespace) -> int:
    from leelalab.analyses.refutation import measure_refutations, search_settings_of

    settings = settings_from_args(RefutationMeasureSettings, args)
    run = search_settings_of(args.run_dir)
    networks = _measured_networks(args, Path(run["dataset"]))
    summary = measure_refutations(args.run_dir, networks, settings)
    print("1st-move log-odds drop (clean − edited), mean [95% bootstrap CI]; paired pairs only")
    rows = [["network", "depth", "pairs", "refutation", "control", "refutation − control"]]
    for label, entry in summary["networks"].items():
        for k, depth in entry["depths"].items():
            paired = depth["paired"]
            rows.append(
                [
                    label,
                    k,
                    str(paired["n"]),
                    _fmt(paired["refutation"], 2),
                    _fmt(paired["control"], 2),
                    _fmt(paired["refutation_minus_control"], 2),
                ]
            )
    print_table(rows)
    note(f"wrote {args.run_dir}/measure.h5 and measure.json")
    return 0


# future board -----------------------------------------------------------------------------


def _arrival_cell(entry: dict[str, Any]) -> str:
    """Arrival accuracy, or the word for a probe that collapsed to one class."""
    if entry.get("degenerate_seeds"):
        seeds = len(entry["scores"]["accuracy"]["per_seed"])
        return DEGENERATE + ("" if entry["degenerate_seeds"] == seeds else " (some seeds)")
    mean = entry["scores"]["arrival_accuracy"]["mean"]
    return "-" if mean is None else f"{mean:.3f}"


def cmd_future_board(args: argparse.Namespace) -> int:
    from leelalab.probing.concepts import train_concept_probes

    config = settings_from_args(ConceptConfig, args)
    summary = train_concept_probes(
        args.store,
        args.output,
        config,
        dataset=args.dataset,
        input_format=args.input_format,
        hooks=args.hooks,
        **_run_options(args),
    )
    print("future board: accuracy on squares that change by ply k (arrivals), mean over seeds")
    horizons = [f"board_ply{k}" for k in config.horizons if k > 0]
    rows = [["hook"] + [f"ply {name[9:]}" for name in horizons]]
    degenerate = False
    for result in summary["results"]:
        cells = [_arrival_cell(result["targets"][name]) for name in horizons]
        degenerate |= any(cell.startswith(DEGENERATE) for cell in cells)
        rows.append([result["hook"]] + cells)
    print_table(rows)
    if degenerate:
        print(
            f"{DEGENERATE}: the probe collapsed to a constant (too few epochs or puzzles?); "
            "its accuracy says nothing about the activations"
        )
    note(f"wrote {args.output}/results.json, config.json and run.json")
    return 0


# steering ---------------------------------------------------------------------------------


def cmd_steer(args: argparse.Namespace) -> int:
    from leelalab.analyses.steering import SteeringSummary, run_steering

    config = settings_from_args(SteeringConfig, args)
    network = network_from_dataset(args)
    path = run_steering(
        network,
        args.directory,
        args.probes,
        args.output,
        config,
        chunk_size=args.chunk_size,
        **_run_options(args),
    )
    summary = SteeringSummary.load(args.output)
    print(
        f"{summary.puzzles} held-out puzzles, {summary.targets} targets s′; success = the "
        "top 1st move becomes consistent with s′ (mean [95% CI])"
    )
    rows = [["layer", "scale", "probe direction", "random directions", "probe reads s′"]]
    for row in summary.rows:
        rows.append(
            [
                str(row["layer"]),
                f"{row['scale']:g}",
                _fmt(row["probe_success"]),
                _fmt(row["random_success"]),
                _fmt(row["probe_predicts_target"]),
            ]
        )
    print_table(rows)
    note(f"wrote {path}, summary.json and run.json")
    return 0


# plots ------------------------------------------------------------------------------------


def check_figures(directory: str | Path, names: Sequence[str], *, overwrite: bool) -> None:
    """Refuse, before drawing, to replace an existing figure (``NAME.pdf``/``.png`` in
    ``directory``) without ``--overwrite``: the README's commands write into committed
    folders."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise LeelaLabError(f"{directory} is a file; --output names a figure directory")
    existing = [
        directory / f"{name}{suffix}"
        for name in names
        for suffix in (".pdf", ".png")
        if (directory / f"{name}{suffix}").exists()
    ]
    if existing and not overwrite:
        raise LeelaLabError(f"{existing[0]} exists; pass --overwrite to replace it")


def _plotted(args: argparse.Namespace, results: Any, figures: Sequence[str]) -> tuple[Any, dict]:
    """A plot's input, loaded (its results and run record; one line when either is missing,
    truncated or of another kind), after its output was checked."""
    from leelalab.runs.records import read_run_record

    loaded = results.load(args.run_dir)
    record = read_run_record(args.run_dir, hint=results.HINT)
    check_figures(args.output, figures, overwrite=args.overwrite)
    return loaded, record


def _recorded_network(record: dict[str, Any]) -> str | None:
    network = record.get("network")
    return network if isinstance(network, str) else None


def cmd_plot_lens(args: argparse.Namespace) -> int:
    from leelalab.analyses.lens_analysis import LensSummary
    from leelalab.plots.inside import plot_lens

    summary, record = _plotted(args, LensSummary, ("lens_layers", "lens_emergence"))
    for path in plot_lens(summary, args.output, network=_recorded_network(record)):
        note(f"wrote {path}")
    return 0


def cmd_plot_refutations(args: argparse.Namespace) -> int:
    from leelalab.analyses.refutation import RefutationMeasure, search_settings_of
    from leelalab.plots.inside import plot_refutations

    search_settings_of(args.run_dir)
    measure, record = _plotted(args, RefutationMeasure, ("refutation_depth",))
    settings = record.get("refutation_settings")
    limit = settings.get("limit", "") if isinstance(settings, dict) else ""
    stratum = record.get("stratum", "")
    for path in plot_refutations(measure, args.output, stratum=stratum, limit=limit):
        note(f"wrote {path}")
    return 0


def cmd_plot_future_board(args: argparse.Namespace) -> int:
    from leelalab.plots.inside import plot_future_board
    from leelalab.probing.concepts import ConceptResults

    results, _ = _plotted(args, ConceptResults, ("future_board",))
    random_init = None if args.random_init is None else ConceptResults.load(args.random_init)
    for path in plot_future_board(results, args.output, random_init=random_init):
        note(f"wrote {path}")
    return 0


def cmd_plot_steering(args: argparse.Namespace) -> int:
    from leelalab.analyses.steering import SteeringSummary
    from leelalab.plots.inside import plot_steering

    summary, record = _plotted(args, SteeringSummary, ("steering",))
    for path in plot_steering(summary, args.output, network=_recorded_network(record)):
        note(f"wrote {path}")
    return 0


# options ----------------------------------------------------------------------------------


def _register_lens(commands: Any) -> None:
    _, lens = add_group(commands, "lens", "logit lens and tuned lens", "lens_command")
    train = add_command(
        lens,
        "train",
        "train a tuned lens (one affine map per layer) on the network's own self-play",
    )
    add_net(train)
    add_output(train, "lens directory (lens.safetensors, lens.json, positions, run.json)")
    add_settings_options(train, TunedLensConfig, exclude=("games_in_parallel", "max_plies"))
    add_overwrite(train)
    add_device(train)
    add_no_progress(train)
    train.set_defaults(run=cmd_lens_train)

    run = add_command(
        lens,
        "run",
        "per puzzle and layer: the lens's rank of the solution, top move, KL to the output",
    )
    _add_directory(run, "a filter run (leelalab puzzles filter)")
    add_net(run, default=None, help="network (default: the dataset's strong network)")
    run.add_argument("--tuned-lens", help="a tuned lens directory (leelalab lens train)")
    add_output(run, "results directory (lens.h5, summary.json, run.json)")
    add_settings_options(run, LensRunSettings)
    add_overwrite(run)
    add_device(run)
    add_no_progress(run)
    run.set_defaults(run=cmd_lens_run)


def _register_refutations(commands: Any) -> None:
    _, refutations = add_group(
        commands, "refutations", "edits that break a puzzle's line at ply k", "refutations_command"
    )
    find = add_command(
        refutations,
        "find",
        "search Stockfish-confirmed depth-k refutations and matched controls",
    )
    _add_directory(find, "a filter run (leelalab puzzles filter)")
    add_output(find, "results directory (refutations.h5, summary.json, run.json, cache)")
    find.add_argument(
        "--stockfish", help="Stockfish binary (default: $LEELALAB_STOCKFISH, PATH, /usr/games)"
    )
    add_settings_options(find, RefutationSearchSettings)
    add_overwrite(find)
    add_no_progress(find)
    find.set_defaults(run=cmd_refutations_find)

    measure = add_command(
        refutations,
        "measure",
        "the strong and weak networks' 1st-move log-odds drop per depth",
    )
    _add_directory(measure, "a `leelalab refutations find` directory", dest="run_dir")
    measure.add_argument(
        "--strong", "--net", dest="strong", help="strong network (default: the filter run's)"
    )
    measure.add_argument("--weak", help="weak network (default: the filter run's)")
    add_settings_options(measure, RefutationMeasureSettings)
    add_device(measure)
    measure.set_defaults(run=cmd_refutations_measure)


def _register_future_board(commands: Any) -> None:
    board = add_command(
        commands,
        "future-board",
        "probe the board k plies ahead and static concepts at every layer of a store",
    )
    board.add_argument("store", metavar="STORE", help="an activation store (activations cache)")
    add_output(board, "probe results directory (results.json, config.json, run.json)")
    board.add_argument("--dataset", help="the store's dataset (default: recorded in the store)")
    board.add_argument(
        "--input-format", type=int, default=1, help="the network's input format (square frame)"
    )
    board.add_argument(
        "--hooks",
        nargs="+",
        help="hook names or globs such as 'blocks.*.hook_resid_post' (default: all in the store)",
    )
    add_settings_options(
        board, ConceptConfig, exclude=("batch_size", "test_fraction", "memory_budget_mb")
    )
    add_overwrite(board)
    add_no_progress(board)
    board.set_defaults(run=cmd_future_board)


def _register_steer(commands: Any) -> None:
    steer = add_command(
        commands,
        "steer",
        "steer the 1st-move square along a bilinear probe's '3rd-move target = s′' direction",
    )
    _add_directory(steer, "the filter run the probe was trained on")
    steer.add_argument(
        "--probes", required=True, help="bilinear move3_target probe directory (probe train)"
    )
    add_net(steer, default=None, help="network (default: the dataset's strong network)")
    add_output(steer, "results directory (steering.h5, summary.json, run.json)")
    add_settings_options(steer, SteeringConfig)
    steer.add_argument("--chunk-size", type=positive_int, default=16, help="puzzles per chunk")
    add_overwrite(steer)
    add_device(steer)
    add_no_progress(steer)
    steer.set_defaults(run=cmd_steer)


def _register_plots(plot_commands: Any) -> None:
    plots = (
        ("lens", "lens KL and top-1 by layer; layer of emergence", "a `leelalab lens run`"),
        (
            "refutations",
            "1st-move log-odds drop vs refutation depth",
            "a measured `leelalab refutations find`",
        ),
        ("future-board", "layer × horizon heatmaps and concepts", "a `leelalab future-board`"),
        ("steering", "steering success vs random directions", "a `leelalab steer`"),
    )
    runs = {
        "lens": cmd_plot_lens,
        "refutations": cmd_plot_refutations,
        "future-board": cmd_plot_future_board,
        "steering": cmd_plot_steering,
    }
    for name, help, source in plots:
        plot = add_command(plot_commands, name, help)
        _add_directory(plot, f"{source} directory", dest="run_dir")
        if name == "future-board":
            plot.add_argument("--random-init", help="the same on the random-init network's store")
        add_output(plot, "figure directory (PDF + PNG)")
        plot.add_argument(
            "--overwrite", action="store_true", help="replace figures that exist already"
        )
        plot.set_defaults(run=runs[name])


def register(commands: Any, plot_commands: Any) -> None:
    """Add ``lens``, ``refutations``, ``future-board``, ``steer`` and their plots."""
    _register_lens(commands)
    _register_refutations(commands)
    _register_future_board(commands)
    _register_steer(commands)
    _register_plots(plot_commands)
