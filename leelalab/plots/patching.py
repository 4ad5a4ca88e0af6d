"""Figures of patching and attention results, for papers (PDF + PNG, no LaTeX).

- :func:`board_heatmaps` — one puzzle's patching effect over the board at chosen layers
  (the look-ahead paper's Fig. 3, left);
- :func:`group_curves` — effect vs layer per square group with ±2 SEM bands (Fig. 3, right);
- :func:`head_grid` — the layers × heads grid of head patching or head search (Fig. 4);
- :func:`percentile_plot` — percentile curves with confidence bands (Figs. 5 and 7);
- :func:`plot_results_directory` — every figure a results directory supports.

Colours keep one meaning everywhere (:data:`GROUP_COLORS`, shared with
:data:`leelalab.plots.boards.COLORS`): 1st-move target blue, 3rd-move target orange, corrupted
purple, other grey.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import chess
import numpy as np

from leelalab.errors import LeelaLabError
from leelalab.plots.boards import COLORS, PAPER_STYLE, _pyplot, draw_board, save_figure
from leelalab.puzzles.dataset import SQUARE_GROUPS

GROUP_COLORS = {
    "corrupted": COLORS["corrupted"],
    "target_1": COLORS["first_target"],
    "target_3": COLORS["third_target"],
    "target_2": "#56b4e9",  # sky blue
    "target_later_player": "#d55e00",  # vermilion
    "target_later_opponent": "#009e73",  # green
    "source": "#000000",
    "other": "#999999",
}
GROUP_LABELS = {
    "corrupted": "corrupted square(s)",
    "target_1": "1st move target",
    "target_2": "2nd move target (opponent)",
    "target_3": "3rd move target",
    "target_later_player": "later targets (player)",
    "target_later_opponent": "later targets (opponent)",
    "source": "move sources",
    "other": "other squares",
}
METRIC_LABELS = {
    "log_odds": "log-odds reduction",
    "wl": "W − L reduction",
    "kl": "policy KL(base ‖ patched)",
    "normalized": "fraction of the corruption's effect",
}


def board_heatmaps(
    results: Any,
    puzzle: int | str,
    *,
    layers: Sequence[int] | None = None,
    metric: str = "log_odds",
    fen: str | None = None,
    width: float = 7.0,
) -> Any:
    """Heatmaps of one puzzle's effect over the real board at ``layers``.

    Args:
        results: a :class:`~leelalab.patching.residual.PatchingResults`.
        puzzle: index or puzzle id.
        fen: the clean position to draw pieces from (optional).
    """
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    ids = list(results.arrays["puzzle_ids"])
    index = ids.index(puzzle) if isinstance(puzzle, str) else int(puzzle)
    if not 0 <= index < len(ids):
        raise LeelaLabError(f"puzzle index {index} out of range ({len(ids)} puzzles)")
    effects = results.effects(metric)[index]  # (layers, 64)
    all_layers = list(results.layers)
    if layers is None:
        picks = np.linspace(0, len(all_layers) - 1, min(4, len(all_layers))).round().astype(int)
        layers = [all_layers[i] for i in dict.fromkeys(picks.tolist())]
    layers = list(layers)
    missing = [layer for layer in layers if layer not in all_layers]
    if missing:
        raise LeelaLabError(f"layers {missing} are not in the results (have {all_layers})")
    groups = results.groups[index]
    board = chess.Board(fen) if fen else chess.Board(None)
    highlights = {}
    for name in ("corrupted", "target_1", "target_3"):
        for square in np.nonzero(groups == SQUARE_GROUPS.index(name))[0]:
            highlights[int(square)] = GROUP_COLORS[name]
    values = np.stack([effects[all_layers.index(layer)] for layer in layers])
    limit = float(np.abs(values).max()) or 1.0
    with plt.rc_context(PAPER_STYLE):
        figure, axes = plt.subplots(
            1, len(layers), figsize=(width, width / len(layers) * 1.25), squeeze=False
        )
        orientation = board.turn if fen else chess.WHITE
        for ax, layer, row in zip(axes[0], layers, values, strict=True):
            draw_board(ax, board, orientation=orientation)
            grid = np.zeros((8, 8))
            for square in range(64):
                file, rank = chess.square_file(square), chess.square_rank(square)
                if orientation == chess.BLACK:
                    file, rank = 7 - file, 7 - rank
                grid[rank, file] = row[square]
            image = ax.imshow(
                grid,
                extent=(0, 8, 0, 8),
                origin="lower",
                cmap="RdBu_r",
                vmin=-limit,
                vmax=limit,
                alpha=0.8,
                zorder=1.5,  # over the squares, under the pieces (text, zorder 3)
            )
            for square, color in highlights.items():
                file, rank = chess.square_file(square), chess.square_rank(square)
                if orientation == chess.BLACK:
                    file, rank = 7 - file, 7 - rank
                ax.add_patch(
                    Rectangle(
                        (file + 0.05, rank + 0.05), 0.9, 0.9, fill=False, ec=color, lw=2, zorder=4
                    )
                )
            ax.set_title(f"layer {layer}")
        bar = figure.colorbar(image, ax=list(axes[0]), shrink=0.8, pad=0.02)
        bar.set_label(METRIC_LABELS.get(metric, metric))
        figure.suptitle(
            f"puzzle {ids[index]}: patching effect per square\n"
            "outlines: 1st target blue, 3rd target orange, corrupted purple",
            y=1.0,
        )
    return figure


def group_curves(
    curves: Mapping[str, Any],
    layers: Sequence[int],
    *,
    metric: str = "log_odds",
    title: str = "",
    groups: Sequence[str] = ("corrupted", "target_1", "target_3", "target_2", "other"),
    width: float = 5.0,
) -> Any:
    """Effect vs layer per square group, mean ± 2 SEM bands (``curves`` from
    :meth:`PatchingResults.group_table` / :func:`group_effects`)."""
    plt = _pyplot()
    with plt.rc_context(PAPER_STYLE):
        figure, ax = plt.subplots(figsize=(width, width * 0.5))
        for name in groups:
            if name not in curves:
                continue
            curve = curves[name]
            color = GROUP_COLORS[name]
            ax.plot(layers, curve.mean, color=color, lw=1.5, label=f"{GROUP_LABELS[name]}")
            ax.fill_between(
                layers,
                curve.mean - curve.two_sem,
                curve.mean + curve.two_sem,
                color=color,
                alpha=0.2,
                lw=0,
            )
        ax.axhline(0, color="0.3", lw=0.5)
        ax.set_xlabel("layer")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.set_xticks(list(layers))
        ax.spines[["top", "right"]].set_visible(False)
        count = next(iter(curves.values())).count if curves else 0
        ax.set_title(title or f"{count} puzzles, mean ± 2 SEM")
        ax.legend(frameon=False, fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        figure.tight_layout()
    return figure


def head_grid(
    effects: np.ndarray,
    layers: Sequence[int],
    *,
    label: str = "log-odds reduction",
    title: str = "",
) -> Any:
    """Mean over puzzles of ``(puzzles, layers, heads)`` effects as a heads × layers heatmap."""
    plt = _pyplot()
    mean = effects.mean(axis=0)  # (layers, heads)
    with plt.rc_context(PAPER_STYLE):
        figure, ax = plt.subplots(figsize=(1.2 + 0.22 * len(layers), 1.0 + 0.16 * mean.shape[1]))
        image = ax.imshow(mean.T, origin="lower", aspect="auto", cmap="YlOrBr")
        ax.set_xticks(range(len(layers)), [str(layer) for layer in layers])
        ax.set_yticks(range(mean.shape[1]))
        ax.set_xlabel("layer")
        ax.set_ylabel("head")
        best = np.unravel_index(mean.argmax(), mean.shape)
        from matplotlib.patches import Rectangle

        ax.add_patch(Rectangle((best[0] - 0.5, best[1] - 0.5), 1, 1, fill=False, ec="k", lw=1.2))
        ax.set_title(title or f"largest: L{layers[best[0]]}H{best[1]} ({mean.max():.3g})")
        bar = figure.colorbar(image, ax=ax)
        bar.set_label(label)
        figure.tight_layout()
    return figure


PERCENTILES = tuple(range(0, 101))


def percentile_plot(
    series: Mapping[str, np.ndarray],
    *,
    colors: Mapping[str, str] | None = None,
    zoom_from: float = 94.0,
    ylabel: str = "log-odds reduction",
    title: str = "",
    width: float = 5.0,
) -> Any:
    """Percentile curves of per-puzzle effects with 95% order-statistic bands, plus a zoom
    on the top percentiles (the paper's Fig. 5/7 layout)."""
    from leelalab.patching.heads import percentile_curve

    plt = _pyplot()
    palette = ["#e69f00", "#0072b2", "#999999", "#cc79a7", "#009e73"]
    with plt.rc_context(PAPER_STYLE):
        figure, (ax, zoom) = plt.subplots(
            1, 2, figsize=(width, width * 0.42), gridspec_kw={"width_ratios": [2, 1]}
        )
        zoomed: list[float] = []
        for number, (name, values) in enumerate(series.items()):
            values = np.asarray(values, dtype=float).ravel()
            if values.size == 0:
                continue
            centre, lower, upper = percentile_curve(values, PERCENTILES)
            inside = np.asarray(PERCENTILES) >= zoom_from
            zoomed.extend([float(lower[inside].min()), float(upper[inside].max())])
            color = (colors or {}).get(name, palette[number % len(palette)])
            for axis in (ax, zoom):
                axis.plot(
                    PERCENTILES, centre, color=color, lw=1.3, label=f"{name} (n={values.size})"
                )
                axis.fill_between(PERCENTILES, lower, upper, color=color, alpha=0.2, lw=0)
        for axis in (ax, zoom):
            axis.axhline(0, color="0.3", lw=0.5)
            axis.spines[["top", "right"]].set_visible(False)
            axis.set_xlabel("percentile")
        zoom.set_xlim(zoom_from, 100)
        if zoomed:
            low, high = min(zoomed), max(zoomed)
            margin = 0.05 * (high - low or 1.0)
            zoom.set_ylim(min(low, 0.0) - margin, high + margin)
        ax.set_ylabel(ylabel)
        ax.legend(frameon=False, fontsize=6)
        zoom.set_title(f"top {100 - zoom_from:.0f}%")
        if title:
            ax.set_title(title)
        figure.tight_layout()
    return figure


def _layers_attr(attrs: Mapping[str, Any]) -> list[int]:
    import json

    return [int(x) for x in json.loads(attrs["layers"])]


def plot_results_directory(
    directory: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    metric: str = "log_odds",
    reduce: str = "max",
    puzzles: Sequence[str] = (),
) -> list[Path]:
    """Every figure the results in ``directory`` support; returns the written files."""
    from leelalab.patching import heads
    from leelalab.patching.residual import RESULTS_FILE, PatchingResults, rank_statistics
    from leelalab.runs.results import read_h5

    directory, out = Path(directory), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    written: list[Path] = []

    def save(figure: Any, name: str) -> None:
        written.extend(save_figure(figure, out / name))
        plt.close(figure)

    if (directory / RESULTS_FILE).is_file():
        results = PatchingResults.load(directory)
        for subset, mask in results.subsets().items():
            if not mask.any():
                continue
            curves = results.group_table(metric, reduce, subset)
            slug = subset.replace(" ", "_").replace("+", "plus")
            save(
                group_curves(
                    curves,
                    results.layers,
                    metric=metric,
                    title=f"{subset}: {int(mask.sum())} puzzles, {reduce} over group, ± 2 SEM",
                ),
                f"groups_{metric}_{slug}",
            )
        ranks = rank_statistics(results.effects(metric), results.groups)
        figure, ax = plt.subplots(figsize=(3.4, 2.4))
        ax.plot(results.layers, ranks["top1"], color=GROUP_COLORS["target_3"], marker="o")
        ax.set_xlabel("layer")
        ax.set_ylabel("3rd target = top non-corrupted square")
        ax.set_ylim(0, 1)
        save(figure, f"rank_target3_{metric}")
        ids = list(results.arrays["puzzle_ids"])
        chosen = list(puzzles) or ids[:1]
        for puzzle in chosen:
            fen = _clean_fen(results, directory, puzzle)
            save(
                board_heatmaps(results, puzzle, metric=metric, fen=fen), f"board_{puzzle}_{metric}"
            )
    if (directory / heads.HEAD_PATCHING_FILE).is_file():
        arrays, attrs = read_h5(directory / heads.HEAD_PATCHING_FILE)
        key = metric if metric in arrays else "log_odds"
        save(head_grid(arrays[key], _layers_attr(attrs)), f"head_patching_{key}")
    if (directory / heads.HEAD_SEARCH_FILE).is_file():
        arrays, attrs = read_h5(directory / heads.HEAD_SEARCH_FILE)
        save(
            head_grid(
                arrays["effects"],
                _layers_attr(attrs),
                label="3rd→1st entry ablation",
            ),
            "head_search",
        )
    if (directory / heads.SINGLE_ENTRY_FILE).is_file():
        arrays, attrs = read_h5(directory / heads.SINGLE_ENTRY_FILE)
        name = f"L{attrs['layer']}H{attrs['head']}"
        save(
            percentile_plot(
                {
                    f"{name}: 3rd→1st target entry": arrays["target"],
                    f"{name}: one random other entry": arrays["random_entries"],
                    f"{name}: all other entries": arrays["all_other"],
                }
            ),
            f"single_entry_{name}",
        )
    if (directory / heads.PIECE_MOVEMENT_FILE).is_file():
        arrays, _ = read_h5(directory / heads.PIECE_MOVEMENT_FILE)
        save(
            percentile_plot(
                {
                    "piece-movement heads, key = 3rd target": arrays["main"],
                    "other piece types' heads": arrays["other_piece_heads"],
                    "random key square": arrays["random_square"],
                }
            ),
            "piece_movement",
        )
    if not written:
        raise LeelaLabError(f"{directory}: no patching or head-analysis results to plot")
    return written


def _clean_fen(results: Any, directory: Path, puzzle: str) -> str | None:
    """The clean position of ``puzzle`` from the dataset the results came from, if found."""
    import json

    from leelalab.puzzles.dataset import load_dataset

    try:
        settings = json.loads((directory / "settings.json").read_text(encoding="utf-8"))
        for item in load_dataset(settings["dataset"], selected_only=False):
            if item.id == puzzle:
                return item.clean_board.fen()
    except (OSError, KeyError, LeelaLabError, ValueError):
        return None
    return None
