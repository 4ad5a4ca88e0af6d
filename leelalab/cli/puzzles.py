"""The puzzle pipeline's commands: ``puzzles filter|corrupt|show|export`` and ``distill``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from leelalab.cli.common import (
    add_batch_size,
    add_command,
    add_device,
    add_executor,
    add_group,
    add_history,
    add_limit,
    add_net,
    add_no_progress,
    add_output,
    add_overwrite,
    add_seed,
    executor_from,
    note,
    positive_int,
    print_table,
)
from leelalab.errors import LeelaLabError


def _dataset_settings(directory: str | Path) -> dict[str, Any]:
    from leelalab.puzzles.dataset import dataset_settings

    return dataset_settings(directory)


def cmd_puzzles_filter(args: argparse.Namespace) -> int:
    from leelalab.inference.networks import default_weak_network, load_network
    from leelalab.puzzles.filter import Thresholds, filter_puzzles
    from leelalab.puzzles.reader import shipped_puzzles_path

    strong = load_network(args.strong, device=args.device)
    weak = load_network(args.weak or default_weak_network(args.strong), device=args.device)
    thresholds = Thresholds(
        hard=args.hard, correct=args.correct, forcing=args.forcing, min_pv_plies=args.min_pv_plies
    )
    run = filter_puzzles(
        strong,
        weak,
        Path(args.input) if args.input else shipped_puzzles_path(),
        args.output,
        thresholds=thresholds,
        strong_history=args.strong_history,
        weak_history=args.weak_history,
        limit=args.limit,
        sample=args.sample,
        seed=args.seed,
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        executor=executor_from(args),
    )
    if run.already_complete:
        note(f"{run.output} already holds this run, complete; nothing to compute")
    print(run.report)
    rows = [["stage", "puzzles"]] + [[name, str(count)] for name, count in run.counts.items()]
    print_table(rows, sys.stdout, align="lr")
    note(f"wrote {run.output / 'dataset.jsonl'} and run.json in {run.seconds:.1f} s")
    return 0


def cmd_puzzles_corrupt(args: argparse.Namespace) -> int:
    from leelalab.inference.networks import default_weak_network, load_network
    from leelalab.puzzles.filter import corrupt_dataset

    settings = _dataset_settings(args.directory)
    strong_name = args.strong or settings["strong"]["source"]
    strong = load_network(strong_name, device=args.device)
    weak = load_network(
        args.weak or settings["weak"]["source"] or default_weak_network(strong_name),
        device=args.device,
    )
    counts = corrupt_dataset(
        args.directory,
        strong,
        weak,
        stockfish=args.stockfish,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        chunk_size=args.chunk_size,
        executor=executor_from(args),
    )
    print(f"{counts['corrupted']} of {counts['selected']} selected puzzles have a corruption")
    return 0


def cmd_puzzles_show(args: argparse.Namespace) -> int:
    import chess

    from leelalab.inference.networks import load_network
    from leelalab.models.evaluation import evaluate
    from leelalab.plots.boards import network_name, puzzle_figure, save_figure
    from leelalab.puzzles.dataset import iter_dataset
    from leelalab.puzzles.filter import find_record, line_boards
    from leelalab.puzzles.reader import Puzzle

    settings = _dataset_settings(args.directory)
    record = find_record(args.directory, args.id)
    network = load_network(args.net or settings["strong"]["source"], device=args.device)
    puzzle = Puzzle(record["id"], record["fen"], tuple(record["moves"]))
    boards = line_boards(puzzle)[:3]
    evaluations = evaluate(network, boards, history=settings["strong"]["history"])
    # The corrupted twin, when `puzzles corrupt` gave the puzzle one, is drawn beside it.
    corruption = next(
        (
            item.corruption
            for item in iter_dataset(args.directory, selected_only=False)
            if item.id == puzzle.id
        ),
        None,
    )
    corrupted_policy = None
    if corruption is not None:
        twin = chess.Board(corruption["fen"])
        (twin_evaluation,) = evaluate(network, [twin], history=settings["strong"]["history"])
        corrupted_policy = twin_evaluation.policy
    figure = puzzle_figure(
        puzzle.fen,
        puzzle.moves,
        [e.policy for e in evaluations],
        title=f"Puzzle {puzzle.id}",
        network=network_name(network.source),
        corruption=corruption,
        corrupted_policy=corrupted_policy,
    )
    for path in save_figure(figure, args.output):
        note(f"wrote {path}")
    return 0


def cmd_puzzles_export(args: argparse.Namespace) -> int:
    from leelalab.puzzles.filter import export_dataset

    if Path(args.output).exists() and not args.overwrite:
        raise LeelaLabError(f"{args.output} exists; pass --overwrite to replace it")
    count = export_dataset(args.directory, args.output)
    note(f"wrote {count} puzzles to {args.output}")
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from leelalab.inference.networks import load_network
    from leelalab.training.distill import DistillConfig, distill

    if Path(args.output).exists() and not args.overwrite:
        raise LeelaLabError(f"{args.output} exists; pass --overwrite to replace it")
    config = DistillConfig(
        positions=args.positions,
        blocks=args.blocks,
        filters=args.filters,
        epochs=args.epochs,
        seed=args.seed,
    )
    teacher = load_network(args.net, device=args.device)
    report = distill(teacher, args.output, config, progress=not args.no_progress)
    note(f"wrote {args.output} (and {args.output}.run.json)")
    print(
        f"held-out agreement with the teacher: top-1 {report.top1_agreement:.1%}, "
        f"KL {report.policy_kl:.3f}, W/D/L MAE {report.wdl_mae:.3f}"
    )
    return 0


def register(commands: Any) -> None:
    """Add ``puzzles filter|corrupt|show|export`` and ``distill``."""
    _, puzzle_commands = add_group(commands, "puzzles", "the Lichess puzzle pipeline", "puzzles")

    filtering = add_command(
        puzzle_commands,
        "filter",
        "evaluate puzzles with a strong and a weak network and filter them",
    )
    filtering.add_argument(
        "--strong",
        "--net",
        dest="strong",
        default="maia-1900",
        help="the strong network (the one under study)",
    )
    filtering.add_argument(
        "--weak", help="the weak network (default for maia-1900: the shipped weak-maia-1900)"
    )
    filtering.add_argument(
        "--input", help="Lichess puzzle CSV or .csv.zst (default: the shipped sample)"
    )
    add_output(filtering, "output directory (resumable: rerun the same command to continue)")
    add_overwrite(filtering)
    add_limit(filtering, "only the first N valid puzzles")
    filtering.add_argument(
        "--sample", type=int, help="a seeded uniform random sample of N puzzles (see --seed)"
    )
    add_seed(filtering, "seed of --sample")
    filtering.add_argument(
        "--hard", type=float, default=0.05, help="hard: weak P(1st move) below this"
    )
    filtering.add_argument(
        "--correct",
        type=float,
        default=0.5,
        help="correct: strong P(every own move of the line) above this",
    )
    filtering.add_argument(
        "--forcing", type=float, default=0.7, help="forcing: weak P(opponent's reply) above this"
    )
    filtering.add_argument(
        "--min-pv-plies", type=int, default=3, help="lines need at least this many plies"
    )
    add_history(filtering, "--strong-history", "history planes for the strong network")
    add_history(filtering, "--weak-history", "history planes for the weak network")
    filtering.add_argument(
        "--chunk-size", type=int, default=1024, help="puzzles per resumable chunk"
    )
    add_batch_size(filtering, 256)
    add_device(filtering)
    add_no_progress(filtering)
    add_executor(filtering)
    filtering.set_defaults(run=cmd_puzzles_filter)

    corrupt = add_command(
        puzzle_commands, "corrupt", "find a corrupted twin for every selected puzzle"
    )
    corrupt.add_argument("directory", help="a dataset directory (leelalab puzzles filter)")
    corrupt.add_argument(
        "--strong", "--net", dest="strong", help="strong network (default: the filter's)"
    )
    corrupt.add_argument("--weak", help="weak network (default: the filter's)")
    corrupt.add_argument(
        "--stockfish",
        nargs="?",
        const=True,
        default=None,
        metavar="PATH",
        help="keep only corruptions Stockfish confirms (PATH, or found on PATH / in /usr/games)",
    )
    add_overwrite(corrupt)
    corrupt.add_argument(
        "--chunk-size", type=positive_int, default=8, help="puzzles per resumable chunk"
    )
    add_device(corrupt)
    add_no_progress(corrupt)
    add_executor(corrupt)
    corrupt.set_defaults(run=cmd_puzzles_corrupt)

    show = add_command(
        puzzle_commands, "show", "draw a puzzle as in the paper's Figure 2 (PDF and PNG)"
    )
    show.add_argument("directory", help="a dataset directory (leelalab puzzles filter)")
    show.add_argument("--id", required=True, help="Lichess puzzle id")
    add_output(show, "figure path (.pdf; the .png is written beside it)")
    add_net(show, default=None, help="network for the policy bars (default: the strong one)")
    add_device(show)
    show.set_defaults(run=cmd_puzzles_show)

    export = add_command(puzzle_commands, "export", "export a filtered dataset as JSONL")
    export.add_argument("directory", help="a dataset directory (leelalab puzzles filter)")
    add_output(export, "the JSONL file to write", positional=True)
    export.add_argument(
        "--overwrite", action="store_true", help="replace the output file if it exists"
    )
    export.set_defaults(run=cmd_puzzles_export)

    distill = add_command(
        commands, "distill", "distil a small weak ResNet from a teacher's sampled self-play"
    )
    add_net(distill, aliases=("--teacher",), help="the teacher network")
    add_output(distill, "output .pb.gz (its run.json is written beside it)")
    distill.add_argument(
        "--overwrite", action="store_true", help="replace the output file if it exists"
    )
    distill.add_argument(
        "--positions", type=int, default=40_000, help="self-play positions (a tenth held out)"
    )
    distill.add_argument("--blocks", type=int, default=2, help="residual blocks of the student")
    distill.add_argument("--filters", type=int, default=16, help="channels of the student")
    distill.add_argument("--epochs", type=int, default=8, help="passes over the positions")
    add_seed(distill, "seed of self-play sampling and training")
    add_device(distill)
    add_no_progress(distill)
    distill.set_defaults(run=cmd_distill)
