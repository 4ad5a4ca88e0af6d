"""CLI commands for looking inside the network (``leelalab lens``, ``leelalab refutations``,
``leelalab future-board``, ``leelalab steer`` and their ``leelalab plot`` figures): thin
wrappers over :mod:`leelalab.probing.lens`, :mod:`leelalab.analyses.lens_analysis`,
:mod:`leelalab.analyses.refutation`, :mod:`leelalab.probing.concepts`,
:mod:`leelalab.analyses.steering` and :mod:`leelalab.plots.inside`."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from leelalab.cli.common import (
    add_batch_size,
    add_command,
    add_device,
    add_group,
    add_limit,
    add_net,
    add_no_progress,
    add_output,
    add_overwrite,
    add_seed,
    network_from_dataset,
    note,
    positive_int,
    print_table,
)
from leelalab.errors import LeelaLabError

RUN_MARKERS = ("settings.json", "run.json", "results.json", "lens.json")


def _fresh_output(path: str, overwrite: bool) -> Path:
    """With ``--overwrite``, remove an earlier leelalab result directory at ``path``."""
    output = Path(path)
    if overwrite and output.exists():
        if not output.is_dir() or not any((output / m).exists() for m in RUN_MARKERS):
            raise LeelaLabError(
                f"{output} does not look like a leelalab result directory; not removing it"
            )
        shutil.rmtree(output)
    return output


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


# lens -------------------------------------------------------------------------------------


def cmd_lens_train(args: argparse.Namespace) -> int:
    from leelalab.probing.lens import TunedLensConfig, fit_tuned_lens

    network = _load(args.net, args.device)
    output = _fresh_output(args.output, args.overwrite)
    config = TunedLensConfig(
        positions=args.positions,
        held_out_fraction=args.held_out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        value_weight=args.value_weight,
        seed=args.seed,
    )
    report = fit_tuned_lens(network, output, config, progress=not args.no_progress)
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
                str(layer),
                f"{held['logit_lens']['policy_kl'][i]:.3f}",
                f"{held['tuned_lens']['policy_kl'][i]:.3f}",
                f"{held['logit_lens']['wdl_kl'][i]:.3f}",
                f"{held['tuned_lens']['wdl_kl'][i]:.3f}",
            ]
        )
    print_table(rows)
    note(f"wrote {output}/lens.safetensors, lens.json, positions.jsonl, run.json")
    return 0


def cmd_lens_run(args: argparse.Namespace) -> int:
    from leelalab.analyses.lens_analysis import check_dataset_network, run_lens_analysis

    network = network_from_dataset(args)
    check_dataset_network(Path(args.directory), network)  # before --overwrite removes anything
    output = _fresh_output(args.output, args.overwrite)
    path = run_lens_analysis(
        network,
        args.directory,
        output,
        tuned_lens=args.tuned_lens,
        limit=args.limit,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
    )
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    for kind in ("logit", "tuned"):
        if kind not in summary:
            continue
        print(f"{kind} lens: rates with 95% Wilson intervals; emergence = first top-1 layer")
        rows = [["group", "n", "final top-1", "found then lost", "forgotten", "emergence layer"]]
        for name, group in summary[kind]["groups"].items():
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
    from leelalab.analyses.refutation import find_refutations
    from leelalab.puzzles.refutations import RefutationSettings

    output = _fresh_output(args.output, args.overwrite)
    settings = RefutationSettings(
        win_cp=args.win_cp,
        fail_cp=args.fail_cp,
        same_cp=args.same_cp,
        max_candidates=args.max_candidates,
        nodes=args.nodes,
    )
    path = find_refutations(
        args.directory,
        output,
        stockfish=args.stockfish,
        depths=args.depths,
        stratum=args.stratum,
        min_moves=args.min_moves,
        sample=args.sample,
        seed=args.seed,
        settings=settings,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
    )
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    rows = [["depth", "refutations", "matched pairs", "local controls", "statuses"]]
    for k, entry in summary["depths"].items():
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
    print(f"{summary['puzzles']} puzzles")
    print_table(rows)
    note(f"wrote {path}, summary.json, run.json and stockfish_cache.jsonl")
    return 0


def cmd_refutations_measure(args: argparse.Namespace) -> int:
    from leelalab.analyses.refutation import measure_refutations, search_settings_of
    from leelalab.puzzles.dataset import dataset_network

    run = search_settings_of(args.run_dir)
    dataset = Path(run["dataset"])
    networks = {}
    for label in ("strong", "weak"):
        name = getattr(args, label)
        if name is None and (dataset / "settings.json").is_file():
            name = dataset_network(dataset, label)
        if name is None:
            raise LeelaLabError(f"no --{label} network given and none recorded in {dataset}")
        networks[label] = _load(name, args.device)
    summary = measure_refutations(
        args.run_dir, networks, batch_size=args.batch_size, seed=args.seed
    )
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


def cmd_future_board(args: argparse.Namespace) -> int:
    from leelalab.probing.concepts import ConceptConfig, train_concept_probes

    output = _fresh_output(args.output, args.overwrite)
    config = ConceptConfig(
        horizons=args.horizons,
        square_concepts=not args.no_square_concepts,
        board_concepts=not args.no_board_concepts,
        changed_weight=args.changed_weight,
        epochs=args.epochs,
        lr=args.lr,
        seeds=args.seeds,
        control=not args.no_control,
    )
    summary = train_concept_probes(
        args.store,
        output,
        config,
        dataset=args.dataset,
        input_format=args.input_format,
        hooks=args.hooks,
        progress=not args.no_progress,
    )
    print("future board: accuracy on squares that change by ply k (arrivals), mean over seeds")
    horizons = [f"board_ply{k}" for k in config.horizons if k > 0]
    rows = [["hook"] + [f"ply {name[9:]}" for name in horizons]]
    for result in summary["results"]:
        cells = []
        for name in horizons:
            scores = result["targets"][name]["scores"]["arrival_accuracy"]["mean"]
            cells.append("-" if scores is None else f"{scores:.3f}")
        rows.append([result["hook"]] + cells)
    print_table(rows)
    note(f"wrote {output}/results.json, config.json and run.json")
    return 0


# steering ---------------------------------------------------------------------------------


def cmd_steer(args: argparse.Namespace) -> int:
    from leelalab.analyses.steering import SteeringConfig, run_steering

    network = network_from_dataset(args)
    output = _fresh_output(args.output, args.overwrite)
    config = SteeringConfig(
        layers=args.layers,
        scales=args.scales,
        targets_per_puzzle=args.targets,
        random_directions=args.random_directions,
        limit=args.limit,
        seed=args.seed,
    )
    path = run_steering(
        network,
        args.directory,
        args.probes,
        output,
        config,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
    )
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    print(
        f"{summary['puzzles']} held-out puzzles, {summary['targets']} targets s′; success = the "
        "top 1st move becomes consistent with s′ (mean [95% CI])"
    )
    rows = [["layer", "scale", "probe direction", "random directions", "probe reads s′"]]
    for row in summary["rows"]:
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


def cmd_plot_lens(args: argparse.Namespace) -> int:
    from leelalab.plots.inside import plot_lens

    for path in plot_lens(args.run_dir, args.output):
        note(f"wrote {path}")
    return 0


def cmd_plot_refutations(args: argparse.Namespace) -> int:
    from leelalab.plots.inside import plot_refutations

    for path in plot_refutations(args.run_dir, args.output):
        note(f"wrote {path}")
    return 0


def cmd_plot_future_board(args: argparse.Namespace) -> int:
    from leelalab.plots.inside import plot_future_board

    for path in plot_future_board(args.results, args.output, random_init=args.random_init):
        note(f"wrote {path}")
    return 0


def cmd_plot_steering(args: argparse.Namespace) -> int:
    from leelalab.plots.inside import plot_steering

    for path in plot_steering(args.run_dir, args.output):
        note(f"wrote {path}")
    return 0


def register(commands: Any, plot_commands: Any) -> None:
    """Add ``lens``, ``refutations``, ``future-board``, ``steer`` and their plots."""
    _, lens = add_group(commands, "lens", "logit lens and tuned lens", "lens_command")
    train = add_command(
        lens,
        "train",
        "train a tuned lens (one affine map per layer) on the network's own self-play",
    )
    add_net(train)
    add_output(train, "lens directory (lens.safetensors, lens.json, positions, run.json)")
    train.add_argument("--positions", type=positive_int, default=24_000, help="self-play positions")
    train.add_argument("--held-out", type=float, default=0.1, help="fraction held out")
    train.add_argument("--epochs", type=positive_int, default=2, help="passes over the positions")
    add_batch_size(train, 128, "positions per training step")
    train.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    train.add_argument(
        "--value-weight", type=float, default=1.0, help="weight of the W/D/L KL vs the policy KL"
    )
    add_seed(train, "seed of self-play, split and training")
    add_overwrite(train)
    add_device(train)
    add_no_progress(train)
    train.set_defaults(run=cmd_lens_train)

    run = add_command(
        lens,
        "run",
        "per puzzle and layer: the lens's rank of the solution, top move, KL to the output",
    )
    run.add_argument("directory", help="a filter run (leelalab puzzles filter)")
    add_net(run, default=None, help="network (default: the dataset's strong network)")
    run.add_argument("--tuned-lens", help="a tuned lens directory (leelalab lens train)")
    add_output(run, "results directory (lens.h5, summary.json, run.json)")
    add_limit(run, "first N puzzles only")
    run.add_argument("--chunk-size", type=positive_int, default=256, help="puzzles per chunk")
    add_overwrite(run)
    add_device(run)
    add_no_progress(run)
    run.set_defaults(run=cmd_lens_run)

    _, refutations = add_group(
        commands, "refutations", "edits that break a puzzle's line at ply k", "refutations_command"
    )
    find = add_command(
        refutations,
        "find",
        "search Stockfish-confirmed depth-k refutations and matched controls",
    )
    find.add_argument("directory", help="a filter run (leelalab puzzles filter)")
    add_output(find, "results directory (refutations.h5, summary.json, run.json, cache)")
    find.add_argument(
        "--stockfish", help="Stockfish binary (default: stockfish on PATH, else /usr/games)"
    )
    find.add_argument(
        "--depths", type=positive_int, nargs="+", default=[1, 3, 5], help="odd plies k"
    )
    find.add_argument(
        "--stratum",
        default="unfiltered",
        choices=("paper", "unfiltered", "weak-solved", "all"),
        help="puzzles drawn from this stratum (all: every puzzle)",
    )
    find.add_argument("--min-moves", type=positive_int, default=5, help="plies the line needs")
    find.add_argument("--sample", type=positive_int, help="a seeded random sample of N puzzles")
    find.add_argument("--nodes", type=positive_int, default=10_000, help="Stockfish nodes")
    find.add_argument(
        "--max-candidates", type=positive_int, default=60, help="edits tried per puzzle and k"
    )
    find.add_argument("--win-cp", type=int, default=200, help="the clean line wins by this")
    find.add_argument("--fail-cp", type=int, default=50, help="a refuted ply leaves at most this")
    find.add_argument(
        "--same-cp", type=int, default=150, help="a control moves evaluations by at most this"
    )
    find.add_argument("--chunk-size", type=positive_int, default=8, help="puzzles per chunk")
    add_seed(find, "seed of the sample and of the order edits are tried in")
    add_overwrite(find)
    add_no_progress(find)
    find.set_defaults(run=cmd_refutations_find)

    measure = add_command(
        refutations,
        "measure",
        "the strong and weak networks' 1st-move log-odds drop per depth",
    )
    measure.add_argument("run_dir", metavar="RUN", help="a `leelalab refutations find` directory")
    measure.add_argument(
        "--strong", "--net", dest="strong", help="strong network (default: the filter run's)"
    )
    measure.add_argument("--weak", help="weak network (default: the filter run's)")
    add_batch_size(measure, 256)
    add_seed(measure, "seed of the bootstrap intervals")
    add_device(measure)
    measure.set_defaults(run=cmd_refutations_measure)

    board = add_command(
        commands,
        "future-board",
        "probe the board k plies ahead and static concepts at every layer of a store",
    )
    board.add_argument("store", help="an activation store (leelalab activations cache)")
    add_output(board, "probe results directory (results.json, config.json, run.json)")
    board.add_argument("--dataset", help="the store's dataset (default: recorded in the store)")
    board.add_argument(
        "--input-format", type=int, default=1, help="the network's input format (square frame)"
    )
    board.add_argument(
        "--horizons", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="plies k ahead"
    )
    board.add_argument("--hooks", nargs="+", help="hooks to probe (default: all in the store)")
    board.add_argument(
        "--no-square-concepts", action="store_true", help="skip attacked-square probes"
    )
    board.add_argument(
        "--no-board-concepts", action="store_true", help="skip material and check probes"
    )
    board.add_argument(
        "--changed-weight",
        type=float,
        default=10.0,
        help="loss weight of squares whose content changes by ply k (1: plain cross-entropy)",
    )
    board.add_argument("--epochs", type=positive_int, default=4, help="passes over the puzzles")
    board.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    board.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="split seeds")
    board.add_argument("--no-control", action="store_true", help="skip the control task")
    add_overwrite(board)
    add_no_progress(board)
    board.set_defaults(run=cmd_future_board)

    steer = add_command(
        commands,
        "steer",
        "steer the 1st-move square along a bilinear probe's '3rd-move target = s′' direction",
    )
    steer.add_argument("directory", help="the filter run the probe was trained on")
    steer.add_argument(
        "--probes", required=True, help="bilinear move3_target probe directory (probe train)"
    )
    add_net(steer, default=None, help="network (default: the dataset's strong network)")
    add_output(steer, "results directory (steering.h5, summary.json, run.json)")
    steer.add_argument("--layers", type=int, nargs="+", help="layers (default: every probe's)")
    steer.add_argument(
        "--scales",
        type=float,
        nargs="+",
        default=[0.5, 1.0, 2.0, 4.0],
        help="steering norms, in mean residual norms per square",
    )
    steer.add_argument("--targets", type=positive_int, default=2, help="targets s′ per puzzle")
    steer.add_argument(
        "--random-directions", type=positive_int, default=4, help="random baselines per target"
    )
    steer.add_argument("--limit", type=positive_int, default=300, help="held-out puzzles at most")
    steer.add_argument("--chunk-size", type=positive_int, default=16, help="puzzles per chunk")
    add_seed(steer, "seed of targets and random directions")
    add_overwrite(steer)
    add_device(steer)
    add_no_progress(steer)
    steer.set_defaults(run=cmd_steer)

    plot = add_command(plot_commands, "lens", "lens KL and top-1 by layer; layer of emergence")
    plot.add_argument("run_dir", metavar="RUN", help="a `leelalab lens run` directory")
    add_output(plot, "figure directory (PDF + PNG)")
    plot.set_defaults(run=cmd_plot_lens)
    plot = add_command(plot_commands, "refutations", "1st-move log-odds drop vs refutation depth")
    plot.add_argument(
        "run_dir", metavar="RUN", help="a measured `leelalab refutations find` directory"
    )
    add_output(plot, "figure directory (PDF + PNG)")
    plot.set_defaults(run=cmd_plot_refutations)
    plot = add_command(plot_commands, "future-board", "layer × horizon heatmaps and concepts")
    plot.add_argument("results", help="a `leelalab future-board` directory (trained network)")
    plot.add_argument("--random-init", help="the same on the random-init network's store")
    add_output(plot, "figure directory (PDF + PNG)")
    plot.set_defaults(run=cmd_plot_future_board)
    plot = add_command(plot_commands, "steering", "steering success vs random directions")
    plot.add_argument("run_dir", metavar="RUN", help="a `leelalab steer` directory")
    add_output(plot, "figure directory (PDF + PNG)")
    plot.set_defaults(run=cmd_plot_steering)
