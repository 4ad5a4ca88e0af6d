"""Figures of patching and attention results, for papers (PDF + PNG, no LaTeX).

- :func:`board_heatmaps` — one puzzle's patching effect over the board at chosen layers
  (the look-ahead paper's Fig. 3, left);
- :func:`group_curves` — effect vs layer per square group with ±2 SEM bands (Fig. 3, right);
  :func:`subset_panels` — the same for every puzzle subset, one panel each, shared y-axis;
- :func:`rank_figure` — how often the 3rd-move target is the top non-corrupted square, with
  95% Wilson intervals and the chance level;
- :func:`head_grid` — the layers × heads grid of head patching or head search (Fig. 4);
- :func:`percentile_plot` — percentile curves with confidence bands (Figs. 5 and 7);
- :func:`plot_patching_run` — every figure a loaded run supports
  (:func:`~leelalab.patching.runs.load_patching_run` loads one).

Colours keep one meaning everywhere (:data:`GROUP_COLORS`, shared with
:data:`leelalab.plots.boards.COLORS`): 1st-move target blue, 3rd-move target orange, corrupted
purple, other grey. Signed effects use a diverging map centred at 0 (``TwoSlopeNorm``);
KL, which is never negative, a sequential map starting at 0. Titles name the network (a
short name from the results' recorded network source) and the patching direction.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import chess
import numpy as np

from leelalab.errors import LeelaLabError
from leelalab.plots.boards import (
    COLORS,
    MAGNITUDE_CMAP,
    PAPER_STYLE,
    SIGNED_CMAP,
    _pyplot,
    draw_board,
    network_name,
    outline_legend_handles,
    save_figure,
)
from leelalab.puzzles.dataset import SQUARE_GROUPS

if TYPE_CHECKING:  # the patching modules import torch; figures need only the loaded run
    from leelalab.patching.runs import PatchingRun

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
# Line styles repeat the colour code for readers (and printers) that cannot tell colours apart.
GROUP_STYLES = {
    "corrupted": "-",
    "target_1": "-",
    "target_3": "-",
    "target_2": "--",
    "target_later_player": "-.",
    "target_later_opponent": ":",
    "source": (0, (1, 1)),
    "other": "--",
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
NON_NEGATIVE_METRICS = ("kl",)
"""Metrics that cannot be negative: drawn on a sequential scale from 0."""


def metric_label(metric: str, direction: str = "noising") -> str:
    """The axis label of ``metric`` with its unit; "reduction" when noising (the clean run
    loses), "recovery" when denoising (the corrupted run gains). Log-odds are those of the
    clean run's top move."""
    change = "recovery" if direction == "denoising" else "reduction"
    labels = {
        "log_odds": f"log-odds {change} (nats)",
        "wl": f"W − L {change} (W − L in [−1, 1])",
        "kl": "policy KL(base ‖ patched) (nats)",
        "normalized": f"log-odds {change} / clean − corrupted gap",
    }
    return labels.get(metric, metric)


METRIC_LABELS = {metric: metric_label(metric) for metric in ("log_odds", "wl", "kl", "normalized")}
METRIC_NAMES = {
    "log_odds": "log-odds",
    "wl": "W − L",
    "kl": "KL",
    "normalized": "normalised log-odds",
}


def effect_scale(metric: str, values: np.ndarray, *, floor: float = 0.0) -> tuple[str, Any]:
    """``(colormap, norm)`` for ``values`` of ``metric``: sequential from 0 for non-negative
    metrics, diverging with a ``TwoSlopeNorm`` centred at 0 and symmetric limits otherwise.

    ``floor`` is the smallest limit the scale may have: without it, pure noise (a few
    thousandths of a nat) fills the whole colour range and looks saturated."""
    from matplotlib.colors import Normalize, TwoSlopeNorm

    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if metric in NON_NEGATIVE_METRICS:
        top = max(float(finite.max()) if finite.size else 0.0, floor)
        return MAGNITUDE_CMAP, Normalize(vmin=0.0, vmax=top if top > 0 else 1.0)
    limit = max(float(np.abs(finite).max()) if finite.size else 0.0, floor)
    limit = limit if limit > 0 else 1.0
    return SIGNED_CMAP, TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)


def _heading(network: str | None, direction: str | None) -> str:
    parts = [network_name(network)]
    if direction:
        parts.append(f"{direction} patching")
    return ", ".join(parts)


def board_heatmaps(
    results: Any,
    puzzle: int | str,
    *,
    layers: Sequence[int] | None = None,
    metric: str = "log_odds",
    fen: str | None = None,
    network: str | None = None,
    width: float = 7.0,
) -> Any:
    """Heatmaps of one puzzle's effect over the real board at ``layers``.

    Each square is coloured by the effect of patching the residual stream at that square
    after the layer; pieces are drawn half a square tall so the colour stays visible, and
    the corrupted, 1st-target and 3rd-target squares are outlined (legend under the boards).

    Args:
        results: a :class:`~leelalab.patching.residual.PatchingResults`.
        puzzle: index or puzzle id.
        fen: the clean position to draw pieces from (optional).
        network: the network's name or source for the title (default: the results').
    """
    plt = _pyplot()

    ids = list(results.arrays["puzzle_ids"])
    if isinstance(puzzle, str):
        if puzzle not in ids:
            raise LeelaLabError(f"puzzle {puzzle!r} is not in the results")
        index = ids.index(puzzle)
    else:
        index = int(puzzle)
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
    for name in ("target_3", "target_1", "corrupted"):
        for square in np.nonzero(groups == SQUARE_GROUPS.index(name))[0]:
            highlights[int(square)] = GROUP_COLORS[name]
    values = np.stack([effects[all_layers.index(layer)] for layer in layers])
    cmap, norm = effect_scale(metric, values)
    orientation = board.turn if fen else chess.WHITE
    with plt.rc_context(PAPER_STYLE):
        figure, axes = plt.subplots(
            1,
            len(layers),
            figsize=(width, width / len(layers) * 1.15 + 0.45),
            squeeze=False,
            layout="constrained",
        )
        for ax, layer, row in zip(axes[0], layers, values, strict=True):
            draw_board(
                ax,
                board,
                orientation=orientation,
                highlights=highlights,
                checkered=False,
                piece_scale=0.5,
            )
            grid = np.zeros((8, 8))
            for square in range(64):
                file, rank = chess.square_file(square), chess.square_rank(square)
                if orientation == chess.BLACK:
                    file, rank = 7 - file, 7 - rank
                grid[rank, file] = row[square]
            image = ax.imshow(
                grid, extent=(0, 8, 0, 8), origin="lower", cmap=cmap, norm=norm, zorder=1
            )
            for edge in range(9):  # thin square borders over the heatmap
                ax.axhline(edge, color="white", lw=0.3, zorder=2)
                ax.axvline(edge, color="white", lw=0.3, zorder=2)
            ax.set_title(f"after layer {layer}")
        bar = figure.colorbar(image, ax=list(axes[0]), shrink=0.8, pad=0.02)
        bar.set_label(metric_label(metric, results.direction), fontsize=6)
        bar.ax.tick_params(labelsize=6)
        present = [
            key
            for key, name in (
                ("corrupted", "corrupted"),
                ("first_target", "target_1"),
                ("third_target", "target_3"),
            )
            if (groups == SQUARE_GROUPS.index(name)).any()
        ]
        figure.legend(
            handles=outline_legend_handles(present),
            loc="outside lower center",
            ncol=3,
            frameon=False,
            fontsize=6,
        )
        # Two lines: one line ran past both edges of a 7-inch figure.
        pieces = "" if fen else " (position not found: pieces not drawn)"
        figure.suptitle(
            f"{_heading(network or results.network, results.direction)}: puzzle {ids[index]}\n"
            f"effect of patching each square{pieces}"
        )
    return figure


def _plot_groups(
    ax: Any,
    curves: Mapping[str, Any],
    layers: Sequence[int],
    groups: Sequence[str],
) -> list[tuple[Any, str, int]]:
    """Mean ± 2 SEM per group into ``ax``; returns ``(handle, group, n)`` for legends (groups
    with no puzzle get a handle and n = 0, so the legend still lists them)."""
    from matplotlib.lines import Line2D

    drawn = []
    for name in groups:
        color, style = GROUP_COLORS[name], GROUP_STYLES[name]
        if name not in curves:
            drawn.append((Line2D([], [], color=color, ls=style, lw=1.3), name, 0))
            continue
        curve = curves[name]
        (handle,) = ax.plot(layers, curve.mean, color=color, ls=style, lw=1.3)
        ax.fill_between(
            layers,
            curve.mean - curve.two_sem,
            curve.mean + curve.two_sem,
            color=color,
            alpha=0.18,
            lw=0,
        )
        drawn.append((handle, name, int(curve.count)))
    ax.axhline(0, color="0.3", lw=0.5)
    ax.set_xticks(list(layers))
    ax.spines[["top", "right"]].set_visible(False)
    return drawn


def _group_label(name: str, reduce: str) -> str:
    label = GROUP_LABELS[name]
    return f"{label} ({reduce})" if name == "other" else label


def _curve_limits(tables: Sequence[Mapping[str, Any]]) -> tuple[float, float]:
    """y-limits holding every band of every table (and 0), with a small margin."""
    low, high = 0.0, 0.0
    for curves in tables:
        for curve in curves.values():
            low = min(low, float(np.nanmin(curve.mean - curve.two_sem)))
            high = max(high, float(np.nanmax(curve.mean + curve.two_sem)))
    margin = 0.05 * ((high - low) or 1.0)
    return low - margin, high + margin


@dataclass(frozen=True)
class Measure:
    """What effect curves show: the metric, the patching direction, and how each group's
    squares are reduced to one number (``max`` or ``mean``)."""

    metric: str = "log_odds"
    direction: str = "noising"
    reduce: str = "max"


def group_curves(
    curves: Mapping[str, Any],
    layers: Sequence[int],
    *,
    measure: Measure = Measure(),
    title: str = "",
    groups: Sequence[str] = SQUARE_GROUPS,
    ylim: tuple[float, float] | None = None,
    width: float = 5.0,
) -> Any:
    """Effect vs layer per square group, mean ± 2 SEM bands (``curves`` from
    :meth:`PatchingResults.group_table` / :func:`group_effects`); every group of ``groups``
    is in the legend with its number of puzzles."""
    metric, direction, reduce = measure.metric, measure.direction, measure.reduce
    plt = _pyplot()
    with plt.rc_context(PAPER_STYLE):
        figure, ax = plt.subplots(figsize=(width, width * 0.6))
        drawn = _plot_groups(ax, curves, layers, groups)
        ax.set_xlabel("layer (residual stream after it)")
        ax.set_ylabel(metric_label(metric, direction))
        if ylim is not None:
            ax.set_ylim(*ylim)
        count = max((curve.count for curve in curves.values()), default=0)
        ax.set_title(title or f"{count} puzzles, mean ± 2 SEM")
        ax.legend(
            [handle for handle, _, _ in drawn],
            [f"{_group_label(name, reduce)} (n={n})" for _, name, n in drawn],
            frameon=False,
            fontsize=6,
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
        )
        figure.tight_layout()
    return figure


def subset_panels(
    tables: Mapping[str, Mapping[str, Any]],
    layers: Sequence[int],
    counts: Mapping[str, int],
    *,
    measure: Measure = Measure(),
    network: str | None = None,
    groups: Sequence[str] = SQUARE_GROUPS,
    columns: int = 4,
    width: float = 7.0,
) -> Any:
    """One panel of group curves per puzzle subset, all on one shared y-axis.

    Args:
        tables: subset name → group curves (:meth:`PatchingResults.group_table`).
        counts: subset name → number of puzzles in it.

    The key of groups (colour and line style) is shared; under each panel, every group's
    number of puzzles in that subset, in the group's colour and order.
    """
    metric, direction, reduce = measure.metric, measure.direction, measure.reduce
    plt = _pyplot()
    from matplotlib.lines import Line2D

    names = [name for name in tables if counts.get(name, 0) > 0]
    if not names:
        raise LeelaLabError("no puzzle subset has puzzles")
    cells = len(names) + 1  # one cell for the key
    rows = -(-cells // columns)
    low, high = _curve_limits([tables[name] for name in names])
    with plt.rc_context(PAPER_STYLE):
        figure, axes = plt.subplots(
            rows,
            columns,
            figsize=(width, 2.1 * rows + 0.6),
            sharey=True,
            squeeze=False,
            layout="constrained",
        )
        flat = list(axes.ravel())
        # Legends fill columns first: interleave so that the n's read in group order by rows.
        half = -(-len(groups) // 2)
        order = [i for pair in zip(range(half), range(half, 2 * half), strict=True) for i in pair]
        order = [i for i in order if i < len(groups)]
        for ax, name in zip(flat, names, strict=False):
            drawn = _plot_groups(ax, tables[name], layers, groups)
            ax.set_ylim(low, high)
            ax.set_title(f"{name}\n{counts[name]} puzzles", fontsize=7)
            ax.tick_params(labelleft=True, labelsize=6)
            ax.legend(
                [drawn[i][0] for i in order],
                [f"{drawn[i][2]}" for i in order],
                fontsize=5,
                ncol=half,
                frameon=False,
                handlelength=1.5,
                columnspacing=0.5,
                handletextpad=0.3,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.1),
                title="puzzles per group (n)",
                title_fontsize=5,
            )
        for ax in flat[len(names) :]:
            ax.axis("off")
        key = flat[len(names)]
        key.legend(
            [Line2D([], [], color=GROUP_COLORS[g], ls=GROUP_STYLES[g], lw=1.3) for g in groups],
            [_group_label(g, reduce) for g in groups],
            loc="center",
            frameon=False,
            fontsize=6,
            title=f"square group: mean over\npuzzles ± 2 SEM of the\n{reduce} over its squares",
            title_fontsize=6,
        )
        figure.supxlabel("layer (residual stream after it)", fontsize=7)
        figure.supylabel(metric_label(metric, direction), fontsize=7)
        figure.suptitle(
            f"{_heading(network, direction)}: effect per square group, by puzzle subset"
        )
    return figure


def rank_figure(
    effects: np.ndarray,
    groups: np.ndarray,
    layers: Sequence[int],
    *,
    group: str = "target_3",
    metric: str = "log_odds",
    direction: str = "noising",
    network: str | None = None,
    width: float = 3.6,
) -> Any:
    """How often ``group``'s best square is the most important non-corrupted square, per
    layer, with 95% Wilson intervals and the chance level.

    Chance is the fraction this would reach if the squares' effects were in random order:
    for each puzzle, the group's squares over its non-corrupted squares, averaged.
    """
    from leelalab.patching.residual import rank_statistics
    from leelalab.stats import proportion_ci

    plt = _pyplot()
    statistics = rank_statistics(effects, groups, group)
    count = int(statistics["count"])
    if count == 0:
        raise LeelaLabError(f"no puzzle has a {GROUP_LABELS[group]} square")
    member = groups == SQUARE_GROUPS.index(group)
    present = member.any(axis=1)
    corrupted = groups == SQUARE_GROUPS.index("corrupted")
    chance = float(np.mean(member[present].sum(axis=1) / (~corrupted[present]).sum(axis=1)))
    estimates = [
        proportion_ci(int(round(fraction * count)), count) for fraction in statistics["top1"]
    ]
    value = np.array([e.value for e in estimates])
    low = np.array([e.low for e in estimates])
    high = np.array([e.high for e in estimates])
    color = GROUP_COLORS[group]
    with plt.rc_context(PAPER_STYLE):
        figure, ax = plt.subplots(figsize=(width, width * 0.75))
        ax.plot(layers, value, color=color, marker="o", ms=3, lw=1.3, label="observed")
        ax.fill_between(layers, low, high, color=color, alpha=0.25, lw=0, label="95% Wilson CI")
        ax.axhline(chance, color="black", ls=":", lw=0.8, label=f"chance ({chance:.3f})")
        ax.set_xticks(list(layers))
        ax.set_xlabel("layer (residual stream after it)")
        ax.set_ylabel("fraction of puzzles")
        ax.set_ylim(0, min(1.0, max(float(high.max()), chance) * 1.25) or 1.0)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(frameon=False, fontsize=6, loc="upper right")
        ax.set_title(
            f"{_heading(network, direction)}\n"
            f"{GROUP_LABELS[group]} = top non-corrupted square\n"
            f"by {METRIC_NAMES.get(metric, metric)} effect; n = {count} puzzles",
            fontsize=7,
        )
        figure.tight_layout()
    return figure


HEAD_GRID_FLOOR = 0.05
"""The head grids' colour scale reaches at least ±0.05 (nats for log-odds): smaller effects
are noise on every network studied so far, and should look pale, not saturated."""
HEAD_GRID_MIN_N = 5
"""Below this many puzzles a cell's interval is not estimated ("too few")."""


def head_cell_intervals(effects: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (layer, head) cell of ``(puzzles, layers, heads)`` effects: the mean over puzzles,
    2 SEM, and whether the interval mean ± 2 SEM excludes 0 (all False below
    :data:`HEAD_GRID_MIN_N` puzzles, or where the effects do not vary: no interval)."""
    effects = np.asarray(effects, dtype=float)
    mean = effects.mean(axis=0)
    count = effects.shape[0]
    if count < HEAD_GRID_MIN_N:
        nan = np.full(mean.shape, np.nan)
        return mean, nan, np.zeros(mean.shape, dtype=bool)
    two_sem = 2 * effects.std(axis=0, ddof=1) / np.sqrt(count)
    significant = (two_sem > 0) & (np.abs(mean) > two_sem)
    return mean, two_sem, significant


def head_grid(
    effects: np.ndarray,
    layers: Sequence[int],
    *,
    metric: str = "log_odds",
    label: str = "",
    title: str = "",
    network: str | None = None,
    floor: float = HEAD_GRID_FLOOR,
) -> Any:
    """Mean over puzzles of ``(puzzles, layers, heads)`` effects as a heads × layers heatmap:
    diverging around 0 for signed metrics, sequential from 0 for KL, with limits of at least
    ``floor``. Cells whose interval (mean ± 2 SEM) includes 0 are hatched; the largest
    significant cell is boxed, or the legend says that no cell is significant."""
    plt = _pyplot()
    from matplotlib.patches import Patch, Rectangle

    mean, two_sem, significant = head_cell_intervals(effects)  # (layers, heads)
    count = int(np.asarray(effects).shape[0])
    cmap, norm = effect_scale(metric, mean, floor=floor)
    with plt.rc_context(PAPER_STYLE):
        figure, ax = plt.subplots(figsize=(1.9 + 0.24 * len(layers), 1.6 + 0.16 * mean.shape[1]))
        image = ax.imshow(mean.T, origin="lower", aspect="auto", cmap=cmap, norm=norm)
        ax.set_xticks(range(len(layers)), [str(layer) for layer in layers])
        ax.set_yticks(range(mean.shape[1]))
        ax.set_xlabel("layer")
        ax.set_ylabel("head")
        handles = []
        for layer, head in zip(*np.nonzero(~significant), strict=True):
            ax.add_patch(
                Rectangle(
                    (layer - 0.5, head - 0.5), 1, 1, fill=False, ec="0.65", lw=0, hatch="////"
                )
            )
        if count < HEAD_GRID_MIN_N:
            note = f"too few puzzles for intervals (n = {count} < {HEAD_GRID_MIN_N})"
        else:
            # ~5% of cells pass by chance: say how many were tested.
            note = f"hatched: mean ± 2 SEM includes 0 ({mean.size} cells, uncorrected)"
        handles.append(Patch(facecolor="white", edgecolor="0.65", hatch="////", label=note))
        if significant.any():
            scores = np.where(significant, np.abs(mean), -np.inf)
            best = np.unravel_index(scores.argmax(), scores.shape)
            handles.append(
                ax.add_patch(
                    Rectangle(
                        (best[0] - 0.5, best[1] - 0.5),
                        1,
                        1,
                        fill=False,
                        ec="k",
                        lw=1.2,
                        label=f"largest significant: L{layers[best[0]]}H{best[1]} "
                        f"({mean[best]:.3g} ± {two_sem[best]:.2g})",
                    )
                )
            )
        elif count >= HEAD_GRID_MIN_N:
            handles.append(Patch(fill=False, lw=0, label="no cell significant"))
        ax.legend(
            handles=handles,
            frameon=False,
            fontsize=6,
            loc="lower left",
            bbox_to_anchor=(0.0, 1.0),
            handlelength=1.0,
        )
        heading = f"{network_name(network)}: " if network else ""
        ax.set_title(
            title or f"{heading}mean over n = {count} puzzles",
            pad=8 + 9 * len(handles),
            fontsize=7,
        )
        bar = figure.colorbar(image, ax=ax)
        limit = norm.vmax
        unit = " nats" if metric in ("log_odds", "kl") else ""
        span = f"0 to {limit:.3g}" if metric in NON_NEGATIVE_METRICS else f"±{limit:.3g}"
        bar.set_label(
            f"{label or metric_label(metric)}\n(scale {span}{unit}, at least {floor:g})",
            fontsize=6,
        )
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
    from matplotlib.patches import Patch

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
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Patch(facecolor="0.5", alpha=0.3, lw=0))
        labels.append("95% CI (order statistics)")
        ax.legend(handles, labels, frameon=False, fontsize=6)
        zoom.set_title(f"top {100 - zoom_from:.0f}%")
        if title:
            ax.set_title(title)
        figure.tight_layout()
    return figure


def _layers_attr(attrs: Mapping[str, Any]) -> list[int]:
    return [int(x) for x in json.loads(attrs["layers"])]


def plot_patching_run(
    run: PatchingRun,
    out: str | os.PathLike[str],
    *,
    metric: str = "log_odds",
    reduce: str = "max",
    puzzles: Sequence[str] = (),
) -> list[Path]:
    """Every figure the loaded results of a run support; returns the written files.

    Residual patching gives ``groups_<metric>_subsets`` (every subset, one panel each, shared
    y-axis), ``groups_<metric>_<subset>`` per subset (all on the same y-range),
    ``rank_target3_<metric>`` and ``board_<puzzle>_<metric>`` (``puzzles``, default the first
    patched one; load the run with the same ``puzzles`` for their clean positions); head
    analyses give their grids and percentile plots. The network's name and the direction
    come from the run's recorded settings (or the results).
    """
    from leelalab.patching import heads

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    written: list[Path] = []
    settings = run.settings
    network = run.network

    def save(figure: Any, name: str) -> None:
        written.extend(save_figure(figure, out / name))
        plt.close(figure)

    if run.residual is not None:
        results = run.residual
        network = network or results.network
        direction = results.direction
        measure = Measure(metric, direction, reduce)
        heading = _heading(network, direction)
        masks = results.subsets()
        tables = {
            subset: results.group_table(metric, reduce, subset)
            for subset, mask in masks.items()
            if mask.any()
        }
        counts = {subset: int(masks[subset].sum()) for subset in tables}
        save(
            subset_panels(tables, results.layers, counts, measure=measure, network=network),
            f"groups_{metric}_subsets",
        )
        ylim = _curve_limits(list(tables.values()))
        for subset, curves in tables.items():
            slug = subset.replace(" ", "_").replace("+", "plus")
            save(
                group_curves(
                    curves,
                    results.layers,
                    measure=measure,
                    ylim=ylim,
                    title=f"{heading}\n{subset}: {counts[subset]} puzzles, mean ± 2 SEM of the "
                    f"{reduce} over each group's squares",
                ),
                f"groups_{metric}_{slug}",
            )
        if (results.groups == SQUARE_GROUPS.index("target_3")).any():
            save(
                rank_figure(
                    results.effects(metric),
                    results.groups,
                    results.layers,
                    metric=metric,
                    direction=direction,
                    network=network,
                ),
                f"rank_target3_{metric}",
            )
        ids = list(results.arrays["puzzle_ids"])
        chosen = list(puzzles) or ids[:1]
        for puzzle in chosen:
            fen = run.clean_fens.get(str(puzzle))
            save(
                board_heatmaps(results, puzzle, metric=metric, fen=fen, network=network),
                f"board_{puzzle}_{metric}",
            )
    head_patching = run.heads.get(heads.HEAD_PATCHING_FORMAT)
    if head_patching is not None:
        arrays, attrs = head_patching.arrays, head_patching.attrs
        key = metric if metric in arrays else "log_odds"
        direction = str(attrs.get("direction", settings.get("direction", "")))
        save(
            head_grid(
                arrays[key],
                _layers_attr(attrs),
                metric=key,
                label=metric_label(key, direction),
                title=f"{_heading(network or attrs.get('network'), direction)}: each head's "
                f"output\nmean over n = {arrays[key].shape[0]} puzzles",
            ),
            f"head_patching_{key}",
        )
    head_search = run.heads.get(heads.HEAD_SEARCH_FORMAT)
    if head_search is not None:
        arrays, attrs = head_search.arrays, head_search.attrs
        save(
            head_grid(
                arrays["effects"],
                _layers_attr(attrs),
                label="log-odds reduction (nats) from zeroing\nthe 3rd → 1st target entry",
                title=f"{network_name(network)}: single-entry ablation in every head\n"
                f"mean over n = {arrays['effects'].shape[0]} puzzles",
            ),
            "head_search",
        )
    single_entry = run.heads.get(heads.SINGLE_ENTRY_FORMAT)
    if single_entry is not None:
        arrays, attrs = single_entry.arrays, single_entry.attrs
        name = f"L{attrs['layer']}H{attrs['head']}"
        save(
            percentile_plot(
                {
                    f"{name}: 3rd→1st target entry": arrays["target"],
                    f"{name}: one random other entry": arrays["random_entries"],
                    f"{name}: all other entries": arrays["all_other"],
                },
                ylabel="log-odds reduction (nats)",
                title=f"{network_name(network)}: zeroing attention entries of {name}",
            ),
            f"single_entry_{name}",
        )
    piece_movement = run.heads.get(heads.PIECE_MOVEMENT_FORMAT)
    if piece_movement is not None:
        arrays = piece_movement.arrays
        save(
            percentile_plot(
                {
                    "piece-movement heads, key = 3rd target": arrays["main"],
                    "other piece types' heads": arrays["other_piece_heads"],
                    "random key square": arrays["random_square"],
                },
                ylabel="log-odds reduction (nats)",
                title=f"{network_name(network)}: cutting piece-movement heads' flow",
            ),
            "piece_movement",
        )
    if not written:
        raise LeelaLabError(f"{run.name}: no patching or head-analysis results to plot")
    return written
