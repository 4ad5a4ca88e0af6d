"""CLI commands for activation patching and attention analyses (``leelalab patch``,
``leelalab heads``, ``leelalab plot patching``): thin wrappers over
:mod:`leelalab.patching.residual`, :mod:`leelalab.patching.heads` and
:mod:`leelalab.plots.patching`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from leelalab.cli.common import (
    add_command,
    add_device,
    add_executor,
    add_group,
    add_net,
    add_no_progress,
    add_output,
    add_overwrite,
    executor_from,
    network_from_dataset,
    note,
    print_table,
)
from leelalab.cli.figures import add_figure_overwrite, write_figures
from leelalab.runs.experiment import Settings, add_settings_options, settings_from_args

T = TypeVar("T")


def _run_on_dataset(
    args: argparse.Namespace, run: Callable[..., T], settings: type[Settings], **extra: Any
) -> T:
    """``run(network, DIR, --output, settings, …)``: the settings from the options first
    (out-of-range values are one line before the network loads), then the network."""
    chosen = settings_from_args(settings, args)
    return run(
        network_from_dataset(args),
        args.directory,
        args.output,
        chosen,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        **extra,
    )


def cmd_patch_residual(args: argparse.Namespace) -> int:
    from leelalab.patching.residual import PatchingResults, run_residual_patching
    from leelalab.patching.settings import ResidualPatchingSettings

    path = _run_on_dataset(
        args, run_residual_patching, ResidualPatchingSettings, executor=executor_from(args)
    )
    results = PatchingResults.load(path)
    subset = SUBSETS[args.subset]
    curves = results.group_table(args.metric, args.reduce, subset)
    count = int(results.subsets()[subset].sum())
    print(
        f"{count} puzzles ({subset}); {args.metric} effect "
        f"({args.reduce} over each group's squares), mean ± 2 SEM per layer"
    )
    rows = [["group"] + [f"L{layer}" for layer in results.layers]]
    for name, curve in curves.items():
        rows.append(
            [f"{name} (n={curve.count})"]
            + [f"{m:.2f}±{e:.2f}" for m, e in zip(curve.mean, curve.two_sem, strict=True)]
        )
    print_table(rows)
    note(f"wrote {path} and run.json")
    return 0


def cmd_patch_heads(args: argparse.Namespace) -> int:
    from leelalab.patching.heads import (
        HEAD_PATCHING_FORMAT,
        HeadResults,
        rank_heads,
        run_head_patching,
    )
    from leelalab.patching.settings import HeadPatchingSettings

    path = _run_on_dataset(args, run_head_patching, HeadPatchingSettings)
    results = HeadResults.load(path, HEAD_PATCHING_FORMAT)
    ranking = rank_heads(results.arrays["log_odds"], results.layers, top=args.top)
    _print_ranking(ranking, "head-output patching, log-odds effect")
    note(f"wrote {path} and run.json")
    return 0


def _print_ranking(ranking: list[dict[str, float]], what: str) -> None:
    print(f"top heads by {what}, mean ± 2 SEM over puzzles")
    rows = [["head", "effect"]] + [
        [f"L{int(r['layer'])}H{int(r['head'])}", f"{r['mean']:.3f} ± {r['two_sem']:.3f}"]
        for r in ranking
    ]
    print_table(rows)


def _percentile_rows(
    arrays: dict[str, Any], columns: list[str], ablations: list[tuple[str, str]]
) -> list[list[str]]:
    """One row per ablation with values: its name, count, mean and the given percentiles
    (``columns`` after the name: ``puzzles``, ``mean``, ``median``, ``95th pct``, …)."""
    import numpy as np

    percentiles = {"median": 50, "95th pct": 95, "99th pct": 99}
    rows = [["ablation", *columns]]
    for name, key in ablations:
        # With no piece-movement head (or no eligible puzzle) nothing was ablated.
        values = np.asarray(arrays.get(key, [])).ravel()
        if not values.size:
            continue
        cells = []
        for column in columns:
            if column == "puzzles":
                cells.append(str(values.size))
            elif column == "mean":
                cells.append(f"{values.mean():.3f}")
            else:
                cells.append(f"{np.percentile(values, percentiles[column]):.3f}")
        rows.append([name, *cells])
    return rows


def cmd_heads_single_entry(args: argparse.Namespace) -> int:
    from leelalab.patching.heads import SINGLE_ENTRY_FORMAT, HeadResults, run_single_entry
    from leelalab.patching.settings import SingleEntrySettings

    path = _run_on_dataset(args, run_single_entry, SingleEntrySettings)
    arrays = HeadResults.load(path, SINGLE_ENTRY_FORMAT).arrays
    rows = _percentile_rows(
        arrays,
        ["mean", "median", "95th pct", "99th pct"],
        [
            ("3rd→1st target entry", "target"),
            ("one random other entry", "random_entries"),
            ("all other entries", "all_other"),
        ],
    )
    print(f"L{args.layer}H{args.head}: log-odds reduction over {len(arrays['target'])} puzzles")
    print_table(rows)
    note(f"wrote {path} and run.json")
    return 0


def cmd_heads_search(args: argparse.Namespace) -> int:
    from leelalab.patching.heads import run_head_search
    from leelalab.patching.settings import HeadSearchSettings

    path, ranking = _run_on_dataset(args, run_head_search, HeadSearchSettings)
    _print_ranking(ranking, "3rd→1st target entry ablation (log-odds reduction)")
    note(f"wrote {path}, ranking.json and run.json")
    return 0


def cmd_heads_piece_movement(args: argparse.Namespace) -> int:
    from leelalab.patching.heads import (
        PIECE_MOVEMENT_FORMAT,
        PIECE_TYPES,
        HeadResults,
        run_piece_movement,
    )
    from leelalab.patching.settings import PieceMovementSettings

    path, found = _run_on_dataset(args, run_piece_movement, PieceMovementSettings)
    print(f"piece-movement heads (excess attention ≥ {args.threshold}):")
    for piece in PIECE_TYPES:
        heads = found.heads(piece)
        listed = ", ".join(f"L{layer}H{head} ({score:.2f})" for layer, head, score in heads[:12])
        print(f"  {piece:6s} {len(heads):3d}  {listed}")
    arrays = HeadResults.load(path, PIECE_MOVEMENT_FORMAT).arrays
    rows = _percentile_rows(
        arrays,
        ["puzzles", "mean", "95th pct"],
        [
            ("own piece type's heads, key = 3rd target", "main"),
            ("other piece types' heads", "other_piece_heads"),
            ("random key square", "random_square"),
        ],
    )
    print_table(rows)
    note(f"wrote {path}, heads.json and run.json")
    return 0


def cmd_plot_patching(args: argparse.Namespace) -> int:
    from leelalab.patching.runs import load_patching_run
    from leelalab.plots.patching import plot_patching_run

    # Every input is read before the figure folder is touched.
    runs = [load_patching_run(directory, puzzles=args.puzzle) for directory in args.results]

    def draw(folder: Path) -> list[Path]:
        written: list[Path] = []
        for run in runs:
            written += plot_patching_run(
                run, folder, metric=args.metric, reduce=args.reduce, puzzles=args.puzzle
            )
        return written

    figures = write_figures(args.output, args.overwrite, draw)
    for path in figures:
        note(f"wrote {path}")
    return 0 if figures else 1


# CLI spellings of the puzzle subsets (no spaces) -> the names results use.
SUBSETS = {
    "all": "all",
    "different-targets": "different targets",
    "same-targets": "same targets",
    "mate": "mate",
    "non-mate": "non-mate",
    "3-moves": "3 moves",
    "5plus-moves": "5+ moves",
}


def _subset(text: str) -> str:
    key = text.strip().replace(" ", "-").replace("5+", "5plus")
    if key not in SUBSETS:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(SUBSETS)})"
        )
    return key


def _common(parser: argparse.ArgumentParser, settings: type[Settings]) -> None:
    """The dataset, network and output of every patching/head command, then the options
    of its settings class (help and defaults from the settings fields)."""
    parser.add_argument(
        "directory", metavar="DIR", help="a dataset directory (puzzles filter + corrupt)"
    )
    add_net(
        parser,
        default=None,
        help="network (default: the strong network the dataset was filtered with)",
    )
    add_output(parser, "results directory (resumable: rerun the same command to continue)")
    add_overwrite(parser)
    add_settings_options(parser, settings)
    add_device(parser)
    add_no_progress(parser)


METRICS = ("log_odds", "wl", "kl", "normalized")
METRIC_HELP = (
    "log_odds: log-odds of the clean top move; wl: W - L; kl: KL(base || patched); "
    "normalized: log-odds effect / clean-corrupted gap"
)


def _add_metric_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metric", choices=METRICS, default="log_odds", help=METRIC_HELP)
    parser.add_argument(
        "--reduce",
        choices=("max", "mean"),
        default="max",
        help="how a square group's effect is taken from its squares' effects",
    )


def _add_top(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--top", type=int, default=10, help="heads listed in the printed ranking")


def register(commands: Any, plot_commands: Any) -> None:
    """Add ``patch``, ``heads`` and ``plot patching`` to the ``leelalab`` parser."""
    from leelalab.patching import settings

    _, patch_commands = add_group(
        commands, "patch", "activation patching on a corrupted dataset", "patch_command"
    )
    residual = add_command(
        patch_commands, "residual", "patch the residual stream at every (layer, square)"
    )
    _common(residual, settings.ResidualPatchingSettings)
    add_executor(residual)
    _add_metric_options(residual)
    residual.add_argument(
        "--subset",
        type=_subset,
        default="all",
        metavar="{" + ",".join(SUBSETS) + "}",
        help="puzzle subset of the printed table (the figures cover every subset)",
    )
    residual.set_defaults(run=cmd_patch_residual)

    heads = add_command(patch_commands, "heads", "patch every attention head's output")
    _common(heads, settings.HeadPatchingSettings)
    _add_top(heads)
    heads.set_defaults(run=cmd_patch_heads)

    _, head_commands = add_group(
        commands, "heads", "attention-head analyses (attention networks)", "heads_command"
    )
    for name, help, settings_class, run in (
        (
            "single-entry",
            "zero one head's 3rd→1st target attention entry vs other entries",
            settings.SingleEntrySettings,
            cmd_heads_single_entry,
        ),
        (
            "search",
            "the 3rd→1st target entry ablation in every head, ranked",
            settings.HeadSearchSettings,
            cmd_heads_search,
        ),
        (
            "piece-movement",
            "detect piece-movement heads and ablate their flow out of the 3rd target",
            settings.PieceMovementSettings,
            cmd_heads_piece_movement,
        ),
    ):
        command = add_command(head_commands, name, help)
        _common(command, settings_class)
        command.set_defaults(run=run)

    plot = add_command(plot_commands, "patching", "figures of patching / head results")
    plot.add_argument(
        "results", metavar="DIR", nargs="+", help="results directories (patch / heads commands)"
    )
    add_output(plot, "figure directory (PDF + PNG)")
    add_figure_overwrite(plot)
    _add_metric_options(plot)
    plot.add_argument(
        "--puzzle", nargs="*", default=[], help="puzzle ids to draw as board heatmaps"
    )
    plot.set_defaults(run=cmd_plot_patching)
