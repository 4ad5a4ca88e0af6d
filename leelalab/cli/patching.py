"""CLI commands for activation patching and attention analyses (``leelalab patch``,
``leelalab heads``, ``leelalab plot patching``): thin wrappers over
:mod:`leelalab.patching.residual`, :mod:`leelalab.patching.heads` and
:mod:`leelalab.plots.patching`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from leelalab.errors import LeelaLabError


def _network(args: argparse.Namespace) -> Any:
    """``--net``, or else the strong network the dataset was filtered with."""
    from leelalab.inference.networks import load_network

    name = args.net
    if name is None:
        settings = Path(args.directory) / "settings.json"
        try:
            name = json.loads(settings.read_text(encoding="utf-8"))["strong"]["source"]
        except (OSError, KeyError, ValueError):
            raise LeelaLabError(
                f"{args.directory}: no --net given and no filter settings.json to take the "
                "strong network from"
            ) from None
    return load_network(name, device=args.device)


def _print_rows(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for number, row in enumerate(rows):
        print(
            "  ".join(
                cell.rjust(w) if i else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if number == 0:
            print("  ".join("-" * w for w in widths))


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
    )
    results = PatchingResults.load(path)
    curves = results.group_table(args.metric, args.reduce, args.subset)
    count = int(results.subsets()[args.subset].sum())
    print(
        f"{count} puzzles ({args.subset}); {args.metric} effect "
        f"({args.reduce} over each group's squares), mean ± 2 SEM per layer"
    )
    rows = [["group"] + [f"L{layer}" for layer in results.layers]]
    for name, curve in curves.items():
        rows.append(
            [f"{name} (n={curve.count})"]
            + [f"{m:.2f}±{e:.2f}" for m, e in zip(curve.mean, curve.two_sem, strict=True)]
        )
    _print_rows(rows)
    print(f"wrote {path} and run.json")
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
    )
    arrays, attrs = read_h5(path)
    ranking = rank_heads(arrays["log_odds"], json.loads(attrs["layers"]), top=args.top)
    _print_ranking(ranking, "head-output patching, log-odds effect")
    print(f"wrote {path} and run.json")
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
    print(f"wrote {path} and run.json")
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
    )
    _print_ranking(ranking, "3rd→1st target entry ablation (log-odds reduction)")
    print(f"wrote {path}, ranking.json and run.json")
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
    print(f"wrote {path}, heads.json and run.json")
    return 0


def cmd_plot_patching(args: argparse.Namespace) -> int:
    from leelalab.plots.patching import plot_results_directory

    count = 0
    for directory in args.results:
        for path in plot_results_directory(
            directory, args.out, metric=args.metric, reduce=args.reduce, puzzles=args.puzzle
        ):
            print(f"wrote {path}", file=sys.stderr)
            count += 1
    return 0 if count else 1


def _common(parser: argparse.ArgumentParser, *, chunk: int) -> None:
    parser.add_argument("directory", help="a dataset directory (puzzles filter + corrupt)")
    parser.add_argument(
        "--net", help="network (default: the strong network the dataset was filtered with)"
    )
    parser.add_argument("--output", required=True, help="results directory (resumable)")
    parser.add_argument("--limit", type=int, help="at most this many selected puzzles")
    parser.add_argument("--chunk-size", type=int, default=chunk, help="puzzles per saved chunk")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-progress", action="store_true")


def register(commands: Any, plot_commands: Any) -> None:
    """Add ``patch``, ``heads`` and ``plot patching`` to the ``leelalab`` parser."""
    patch = commands.add_parser("patch", help="activation patching on a corrupted dataset")
    patch_commands = patch.add_subparsers(dest="patch_command", required=True)

    residual = patch_commands.add_parser(
        "residual", help="patch the residual stream at every (layer, square)"
    )
    _common(residual, chunk=8)
    residual.add_argument("--layers", type=int, nargs="+", help="body layers (default: all)")
    residual.add_argument("--direction", choices=("noising", "denoising"), default="noising")
    residual.add_argument("--max-rows", type=int, default=512, help="patched rows per forward")
    residual.add_argument(
        "--metric", choices=("log_odds", "wl", "kl", "normalized"), default="log_odds"
    )
    residual.add_argument("--reduce", choices=("max", "mean"), default="max")
    residual.add_argument(
        "--subset",
        choices=(
            "all",
            "different targets",
            "same targets",
            "mate",
            "non-mate",
            "3 moves",
            "5+ moves",
        ),
        default="all",
        help="puzzle subset of the printed table (the figures cover every subset)",
    )
    residual.set_defaults(run=cmd_patch_residual)

    heads = patch_commands.add_parser("heads", help="patch every attention head's output")
    _common(heads, chunk=8)
    heads.add_argument("--direction", choices=("noising", "denoising"), default="noising")
    heads.add_argument("--top", type=int, default=10)
    heads.set_defaults(run=cmd_patch_heads)

    analyses = commands.add_parser("heads", help="attention-head analyses (attention nets)")
    head_commands = analyses.add_subparsers(dest="heads_command", required=True)
    single = head_commands.add_parser(
        "single-entry", help="zero one head's 3rd→1st target attention entry vs other entries"
    )
    _common(single, chunk=32)
    single.add_argument("--layer", type=int, required=True)
    single.add_argument("--head", type=int, required=True)
    single.add_argument("--random-samples", type=int, default=8)
    single.add_argument("--seed", type=int, default=0)
    single.set_defaults(run=cmd_heads_single_entry)

    search = head_commands.add_parser(
        "search", help="the 3rd→1st target entry ablation in every head, ranked"
    )
    _common(search, chunk=16)
    search.add_argument("--top", type=int, default=10)
    search.set_defaults(run=cmd_heads_search)

    piece = head_commands.add_parser(
        "piece-movement",
        help="detect piece-movement heads and ablate their flow out of the 3rd target",
    )
    _common(piece, chunk=32)
    piece.add_argument("--threshold", type=float, default=0.25, help="minimum excess attention")
    piece.add_argument("--scoring-positions", type=int, default=512)
    piece.add_argument("--min-moves", type=int, default=5)
    piece.add_argument("--seed", type=int, default=0)
    piece.set_defaults(run=cmd_heads_piece_movement)

    plot = plot_commands.add_parser("patching", help="figures of patching / head results")
    plot.add_argument("results", nargs="+", help="results directories")
    plot.add_argument("--out", required=True, help="figure directory (PDF + PNG)")
    plot.add_argument(
        "--metric", choices=("log_odds", "wl", "kl", "normalized"), default="log_odds"
    )
    plot.add_argument("--reduce", choices=("max", "mean"), default="max")
    plot.add_argument("--puzzle", nargs="*", default=[], help="puzzle ids for board heatmaps")
    plot.set_defaults(run=cmd_plot_patching)
