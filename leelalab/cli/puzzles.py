"""The puzzle pipeline's commands: ``puzzles filter|corrupt|show|export`` and ``distill``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from leelalab.cli.common import (
    DEFAULT_NETWORK,
    add_command,
    add_device,
    add_directory,
    add_executor,
    add_group,
    add_net,
    add_no_progress,
    add_output,
    add_overwrite,
    add_overwrite_file,
    add_run_options,
    add_strong_weak,
    check_figure_output,
    check_output_file,
    executor_from,
    make_parent,
    note,
    note_resumed,
    print_table,
)
from leelalab.errors import LeelaLabError

DATASET_HELP = "a dataset directory (leelalab puzzles filter)"
NETWORK_SUFFIXES = (".pb.gz",)
"""What ``train`` and ``distill`` write: a gzipped lc0 network, named as lc0 expects."""


def _dataset_settings(directory: str | Path) -> dict[str, Any]:
    from leelalab.puzzles.dataset import dataset_settings

    return dataset_settings(directory)


def cmd_puzzles_filter(args: argparse.Namespace) -> int:
    from leelalab.inference.networks import default_weak_network, load_network
    from leelalab.puzzles.filter import filter_puzzles
    from leelalab.puzzles.reader import shipped_puzzles_path
    from leelalab.puzzles.settings import FilterSettings
    from leelalab.runs.experiment import settings_from_args

    settings = settings_from_args(FilterSettings, args)  # out of range: one line, first
    executor = executor_from(args)
    strong = load_network(args.strong, device=args.device)
    weak = load_network(args.weak or default_weak_network(args.strong), device=args.device)
    run = filter_puzzles(
        strong,
        weak,
        Path(args.input) if args.input else shipped_puzzles_path(),
        args.output,
        settings,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        executor=executor,
    )
    if run.already_complete:
        note(f"{run.output} already holds this run, complete; nothing to compute")
    elif run.chunks_resumed:
        note_resumed(run.output, run.chunks_resumed, run.chunks, "chunks")
    print(run.report)
    rows = [["stage", "puzzles"]] + [[name, str(count)] for name, count in run.counts.items()]
    print_table(rows, sys.stdout, align="lr")
    note(f"wrote {run.output / 'dataset.jsonl'} and run.json in {run.seconds:.1f} s")
    return 0


def cmd_puzzles_corrupt(args: argparse.Namespace) -> int:
    from leelalab.inference.networks import default_weak_network, load_network
    from leelalab.puzzles.dataset import dataset_network
    from leelalab.puzzles.filter import corrupt_dataset, resumable_chunks
    from leelalab.puzzles.settings import CorruptSettings
    from leelalab.runs.experiment import settings_from_args

    options = settings_from_args(CorruptSettings, args)
    _dataset_settings(args.directory)  # a directory of another kind: one line
    executor = executor_from(args)
    strong_name = args.strong or dataset_network(args.directory, "strong")
    strong = load_network(strong_name, device=args.device)
    weak = load_network(
        args.weak or dataset_network(args.directory, "weak") or default_weak_network(strong_name),
        device=args.device,
    )
    done = 0 if args.overwrite else resumable_chunks(args.directory)
    if done:
        note_resumed(f"the corruption search in {args.directory}", done, None, "chunks")
    counts = corrupt_dataset(
        args.directory,
        strong,
        weak,
        settings=options,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        executor=executor,
    )
    print(f"{counts['corrupted']} of {counts['selected']} selected puzzles have a corruption")
    return 0


def cmd_puzzles_show(args: argparse.Namespace) -> int:
    if args.id is None:
        return _list_puzzles(args.directory)
    if args.output is None:
        raise LeelaLabError("puzzles show --id needs --output (the figure to write)")
    import chess

    from leelalab.inference.networks import load_network
    from leelalab.models.evaluation import evaluate
    from leelalab.plots.boards import network_name, puzzle_figure, save_figure
    from leelalab.puzzles.dataset import dataset_network, iter_dataset
    from leelalab.puzzles.filter import find_record, line_boards
    from leelalab.puzzles.reader import Puzzle

    output = check_figure_output(args.output, overwrite=args.overwrite)
    settings = _dataset_settings(args.directory)
    record = find_record(args.directory, args.id)
    name = args.net or dataset_network(args.directory, "strong", remedy="pass --net")
    network = load_network(name, device=args.device)
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
    for path in save_figure(figure, make_parent(output)):
        note(f"wrote {path}")
    return 0


def _list_puzzles(directory: str) -> int:
    """``puzzles show DIR`` without ``--id``: the selected puzzles, to pick an id from."""
    from leelalab.puzzles.dataset import iter_dataset

    _dataset_settings(directory)  # a directory of another kind: one line
    searched = (Path(directory) / "corruptions.jsonl").is_file()  # else: not searched yet
    rows = [["id", "rating", "moves", "corrupted twin"]]
    for item in iter_dataset(directory, selected_only=True):
        corrupted = "yes" if item.corruption is not None else "no" if searched else "-"
        rows.append([item.id, str(item.puzzle.rating), str(item.n_moves), corrupted])
    if len(rows) == 1:
        note(f"{directory} has no selected puzzles")
        return 0
    print_table(rows, sys.stdout, align="lrrl")
    note(f"{len(rows) - 1} selected puzzles; draw one with --id ID --output FIGURE.pdf")
    return 0


def cmd_puzzles_export(args: argparse.Namespace) -> int:
    from leelalab.puzzles.filter import export_dataset

    output = check_output_file(args.output, overwrite=args.overwrite)
    count = export_dataset(args.directory, output)
    note(f"wrote {count} puzzles to {output}")
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from leelalab.inference.networks import load_network
    from leelalab.runs.experiment import settings_from_args
    from leelalab.training.distill import distill
    from leelalab.training.settings import DistillSettings

    output = check_output_file(args.output, overwrite=args.overwrite, suffixes=NETWORK_SUFFIXES)
    config = settings_from_args(DistillSettings, args)
    teacher = load_network(args.net, device=args.device)
    report = distill(teacher, make_parent(output), config, progress=not args.no_progress)
    note(f"wrote {output} (and {output}.run.json)")
    print(
        f"held-out agreement with the teacher: top-1 {report.top1_agreement:.1%}, "
        f"KL {report.policy_kl:.3f}, W/D/L MAE {report.wdl_mae:.3f}"
    )
    return 0


def register(commands: Any) -> None:
    """Add ``puzzles filter|corrupt|show|export`` and ``distill``."""
    _, puzzle_commands = add_group(commands, "puzzles", "the Lichess puzzle pipeline", "puzzles")
    _register_filter(puzzle_commands)
    _register_corrupt(puzzle_commands)
    _register_show_and_export(puzzle_commands)
    _register_distill(commands)


def _register_filter(puzzle_commands: Any) -> None:
    from leelalab.puzzles.settings import FilterSettings
    from leelalab.runs.experiment import add_settings_options

    filtering = add_command(
        puzzle_commands,
        "filter",
        "evaluate puzzles with a strong and a weak network and filter them",
    )
    add_strong_weak(
        filtering,
        strong_default=DEFAULT_NETWORK,
        strong_help="the strong network (the one under study)",
        weak_help="the weak network (default for maia-1900: the shipped weak-maia-1900)",
    )
    filtering.add_argument(
        "--input", help="Lichess puzzle CSV or .csv.zst (default: the shipped sample)"
    )
    add_run_options(filtering, "output directory (resumable: rerun the same command to continue)")
    add_settings_options(filtering, FilterSettings)
    add_executor(filtering)
    filtering.set_defaults(run=cmd_puzzles_filter)


def _register_corrupt(puzzle_commands: Any) -> None:
    from leelalab.puzzles.settings import CorruptSettings
    from leelalab.runs.experiment import add_settings_options

    corrupt = add_command(
        puzzle_commands, "corrupt", "find a corrupted twin for every selected puzzle"
    )
    add_directory(corrupt, DATASET_HELP)
    add_strong_weak(
        corrupt,
        strong_default=None,
        strong_help="strong network (default: the filter's)",
        weak_help="weak network (default: the filter's)",
    )
    corrupt.add_argument(
        "--stockfish",
        nargs="?",
        const="stockfish",
        default=None,
        metavar="PATH",
        help="keep only corruptions Stockfish confirms (PATH, or found on PATH / in /usr/games)",
    )
    add_overwrite(corrupt)
    add_settings_options(corrupt, CorruptSettings, exclude=("stockfish",))
    add_device(corrupt)
    add_no_progress(corrupt)
    add_executor(corrupt)
    corrupt.set_defaults(run=cmd_puzzles_corrupt)


def _register_show_and_export(puzzle_commands: Any) -> None:
    show = add_command(
        puzzle_commands, "show", "draw a puzzle as in the paper's Figure 2 (PDF and PNG)"
    )
    add_directory(show, DATASET_HELP)
    show.add_argument(
        "--id", help="Lichess puzzle id (default: list the selected puzzles' ids and stop)"
    )
    add_output(
        show,
        "the figure file (STEM.pdf; STEM.png is written beside it; needed with --id)",
        required=False,
    )
    add_overwrite_file(show)
    add_net(show, default=None, help="network for the policy bars (default: the strong one)")
    add_device(show)
    show.set_defaults(run=cmd_puzzles_show)

    export = add_command(puzzle_commands, "export", "export a filtered dataset as JSONL")
    add_directory(export, DATASET_HELP)
    add_output(export, "the JSONL file to write (a file)", positional=True)
    add_overwrite_file(export)
    export.set_defaults(run=cmd_puzzles_export)


def _register_distill(commands: Any) -> None:
    from leelalab.runs.experiment import add_settings_options
    from leelalab.training.settings import DistillSettings

    distill = add_command(
        commands, "distill", "distil a small weak ResNet from a teacher's sampled self-play"
    )
    add_net(distill, aliases=("--teacher",), help="the teacher network")
    add_run_options(
        distill,
        "the network file to write (.pb.gz; OUTPUT.run.json is written beside it)",
        file=True,
    )
    add_settings_options(
        distill,
        DistillSettings,
        exclude=("games_in_parallel", "max_plies", "batch_size", "learning_rate"),
    )
    distill.set_defaults(run=cmd_distill)
