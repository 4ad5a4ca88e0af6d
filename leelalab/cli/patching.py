"""CLI commands for activation patching and attention analyses (``leelalab patch``,
``leelalab heads``, ``leelalab plot patching``): thin wrappers over
:mod:`leelalab.patching.residual`, :mod:`leelalab.patching.heads` and
:mod:`leelalab.plots.patching`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from leelalab.cli.common import (
    add_command,
    add_device,
    add_executor,
    add_group,
    add_limit,
    add_net,
    add_no_progress,
    add_output,
    add_overwrite,
    add_seed,
    executor_from,
    network_from_dataset,
    note,
    print_table,
)


def _network(args: argparse.Namespace) -> Any:
    return network_from_dataset(args)


def _print_rows(rows: list[list[str]]) -> None:
    print_table(rows)


def cmd_patch_residual(args: argparse.Namespace) -> int:
    from leelalab.patching.residual import PatchingResults, run_residual_patching

    network = _network(args)
    path = run_residual_patching(
        network,
        args.directory,
        args.output,
        layers=args.layers,
        direction=args.direction,
        limit=args.limit,
        chunk_size=args.chunk_size,
        max_rows=args.max_rows,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        executor=executor_from(args),
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
    _print_rows(rows)
    note(f"wrote {path} and run.json")
    return 0


def cmd_patch_heads(args: argparse.Namespace) -> int:
    from leelalab.patching.heads import rank_heads, run_head_patching
    from leelalab.runs.results import read_h5

    network = _network(args)
    path = run_head_patching(
        network,
        args.directory,
        args.output,
        direction=args.direction,
        limit=args.limit,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    arrays, attrs = read_h5(path)
    ranking = rank_heads(arrays["log_odds"], json.loads(attrs["layers"]), top=args.top)
    _print_ranking(ranking, "head-output patching, log-odds effect")
    note(f"wrote {path} and run.json")
    return 0


def _print_ranking(ranking: list[dict[str, float]], what: str) -> None:
    print(f"top heads by {what}, mean ± 2 SEM over puzzles")
    rows = [["head", "effect"]] + [
        [f"L{int(r['layer'])}H{int(r['head'])}", f"{r['mean']:.3f} ± {r['two_sem']:.3f}"]
        for r in ranking
    ]
    _print_rows(rows)


def cmd_heads_single_entry(args: argparse.Namespace) -> int:
    import numpy as np

    from leelalab.patching.heads import run_single_entry
    from leelalab.runs.results import read_h5

    network = _network(args)
    path = run_single_entry(
        network,
        args.directory,
        args.output,
        layer=args.layer,
        head=args.head,
        random_samples=args.random_samples,
        seed=args.seed,
        limit=args.limit,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    arrays, _ = read_h5(path)
    rows = [["ablation", "mean", "median", "95th pct", "99th pct"]]
    for name, key in (
        ("3rd→1st target entry", "target"),
        ("one random other entry", "random_entries"),
        ("all other entries", "all_other"),
    ):
        values = np.asarray(arrays[key]).ravel()
        rows.append(
            [name] + [f"{v:.3f}" for v in (values.mean(), *np.percentile(values, [50, 95, 99]))]
        )
    print(f"L{args.layer}H{args.head}: log-odds reduction over {len(arrays['target'])} puzzles")
    _print_rows(rows)
    note(f"wrote {path} and run.json")
    return 0


def cmd_heads_search(args: argparse.Namespace) -> int:
    from leelalab.patching.heads import run_head_search

    network = _network(args)
    path, ranking = run_head_search(
        network,
        args.directory,
        args.output,
        limit=args.limit,
        top=args.top,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    _print_ranking(ranking, "3rd→1st target entry ablation (log-odds reduction)")
    note(f"wrote {path}, ranking.json and run.json")
    return 0


def cmd_heads_piece_movement(args: argparse.Namespace) -> int:
    import numpy as np

    from leelalab.patching.heads import PIECE_TYPES, run_piece_movement
    from leelalab.runs.results import read_h5

    network = _network(args)
    path, found = run_piece_movement(
        network,
        args.directory,
        args.output,
        threshold=args.threshold,
        scoring_positions=args.scoring_positions,
        min_moves=args.min_moves,
        seed=args.seed,
        limit=args.limit,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    print(f"piece-movement heads (excess attention ≥ {args.threshold}):")
    for piece in PIECE_TYPES:
        heads = found.heads(piece)
        listed = ", ".join(f"L{layer}H{head} ({score:.2f})" for layer, head, score in heads[:12])
        print(f"  {piece:6s} {len(heads):3d}  {listed}")
    arrays, _ = read_h5(path)
    rows = [["ablation", "puzzles", "mean", "95th pct"]]
    for name, key in (
        ("own piece type's heads, key = 3rd target", "main"),
        ("other piece types' heads", "other_piece_heads"),
        ("random key square", "random_square"),
    ):
        # With no piece-movement head (or no eligible puzzle) nothing was ablated.
        values = np.asarray(arrays.get(key, [])).ravel()
        if values.size:
            rows.append(
                [name, str(values.size), f"{values.mean():.3f}", f"{np.percentile(values, 95):.3f}"]
            )
    _print_rows(rows)
    note(f"wrote {path}, heads.json and run.json")
    return 0


def cmd_plot_patching(args: argparse.Namespace) -> int:
    from leelalab.plots.patching import plot_results_directory

    count = 0
    for directory in args.results:
        for path in plot_results_directory(
            directory, args.output, metric=args.metric, reduce=args.reduce, puzzles=args.puzzle
        ):
            note(f"wrote {path}")
            count += 1
    return 0 if count else 1


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


def _common(parser: argparse.ArgumentParser, *, chunk: int) -> None:
    parser.add_argument("directory", help="a dataset directory (puzzles filter + corrupt)")
    add_net(
        parser,
        default=None,
        help="network (default: the strong network the dataset was filtered with)",
    )
    add_output(parser, "results directory (resumable: rerun the same command to continue)")
    add_overwrite(parser)
    add_limit(parser, "at most this many selected puzzles (default: all)")
    parser.add_argument("--chunk-size", type=int, default=chunk, help="puzzles per saved chunk")
    add_device(parser)
    add_no_progress(parser)


METRICS = ("log_odds", "wl", "kl", "normalized")
METRIC_HELP = (
    "log_odds: log-odds of the clean top move; wl: W - L; kl: KL(base || patched); "
    "normalized: log-odds effect / clean-corrupted gap"
)


def register(commands: Any, plot_commands: Any) -> None:
    """Add ``patch``, ``heads`` and ``plot patching`` to the ``leelalab`` parser."""
    _, patch_commands = add_group(
        commands, "patch", "activation patching on a corrupted dataset", "patch_command"
    )

    residual = add_command(
        patch_commands, "residual", "patch the residual stream at every (layer, square)"
    )
    _common(residual, chunk=8)
    add_executor(residual)
    residual.add_argument(
        "--layers", type=int, nargs="+", help="body layers to patch (default: all)"
    )
    residual.add_argument(
        "--direction",
        choices=("noising", "denoising"),
        default="noising",
        help="noising: clean run, corrupted activations patched in (the paper); denoising: "
        "the reverse",
    )
    residual.add_argument(
        "--max-rows", type=int, default=512, help="patched rows per forward (memory vs speed)"
    )
    residual.add_argument("--metric", choices=METRICS, default="log_odds", help=METRIC_HELP)
    residual.add_argument(
        "--reduce",
        choices=("max", "mean"),
        default="max",
        help="how a square group's effect is taken from its squares' effects",
    )
    residual.add_argument(
        "--subset",
        type=_subset,
        default="all",
        metavar="{" + ",".join(SUBSETS) + "}",
        help="puzzle subset of the printed table (the figures cover every subset)",
    )
    residual.set_defaults(run=cmd_patch_residual)

    heads = add_command(patch_commands, "heads", "patch every attention head's output")
    _common(heads, chunk=8)
    heads.add_argument(
        "--direction",
        choices=("noising", "denoising"),
        default="noising",
        help="noising: clean run, corrupted head outputs patched in; denoising: the reverse",
    )
    heads.add_argument("--top", type=int, default=10, help="heads listed in the printed ranking")
    heads.set_defaults(run=cmd_patch_heads)

    _, head_commands = add_group(
        commands, "heads", "attention-head analyses (attention networks)", "heads_command"
    )
    single = add_command(
        head_commands,
        "single-entry",
        "zero one head's 3rd→1st target attention entry vs other entries",
    )
    _common(single, chunk=32)
    single.add_argument("--layer", type=int, required=True, help="the head's layer")
    single.add_argument("--head", type=int, required=True, help="the head's index in its layer")
    single.add_argument(
        "--random-samples",
        type=int,
        default=8,
        help="random other entries zeroed per puzzle, for comparison",
    )
    add_seed(single, "seed of the random entries")
    single.set_defaults(run=cmd_heads_single_entry)

    search = add_command(
        head_commands, "search", "the 3rd→1st target entry ablation in every head, ranked"
    )
    _common(search, chunk=16)
    search.add_argument("--top", type=int, default=10, help="heads listed in the printed ranking")
    search.set_defaults(run=cmd_heads_search)

    piece = add_command(
        head_commands,
        "piece-movement",
        "detect piece-movement heads and ablate their flow out of the 3rd target",
    )
    _common(piece, chunk=32)
    piece.add_argument(
        "--threshold",
        type=float,
        default=0.25,
        help="minimum excess attention (over uniform) on a piece type's move squares",
    )
    piece.add_argument(
        "--scoring-positions",
        type=int,
        default=512,
        help="positions used to score each head's piece-movement attention",
    )
    piece.add_argument(
        "--min-moves", type=int, default=5, help="only puzzles with at least this many moves"
    )
    add_seed(piece, "seed of the scoring positions and random squares")
    piece.set_defaults(run=cmd_heads_piece_movement)

    plot = add_command(plot_commands, "patching", "figures of patching / head results")
    plot.add_argument("results", nargs="+", help="results directories (patch / heads commands)")
    add_output(plot, "figure directory (PDF + PNG)")
    plot.add_argument("--metric", choices=METRICS, default="log_odds", help=METRIC_HELP)
    plot.add_argument(
        "--reduce",
        choices=("max", "mean"),
        default="max",
        help="how a square group's effect is taken from its squares' effects",
    )
    plot.add_argument(
        "--puzzle", nargs="*", default=[], help="puzzle ids to draw as board heatmaps"
    )
    plot.set_defaults(run=cmd_plot_patching)
