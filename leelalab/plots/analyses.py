"""Figures of the search-versus-pattern-recognition analyses (PDF + PNG, no LaTeX).

- :func:`prediction_panel` — the four predictions, one panel each, per stratum with 95% CIs;
- :func:`strata_patching_curves` — patching effect per layer, per square group and stratum;
- :func:`coupling_bars` — value says winning along the line, and the 2×2 odds ratios;
- :func:`accuracy_curves` — puzzle accuracy by line length (or rating) per node budget;
- :func:`search_gain_figure` — accuracy(512) − accuracy(1) per line length, and whole-run
  accuracy against the node budget (where weak + MCTS meets strong alone);
- :func:`theme_scatter` — residualised accuracy per theme against its frequency;
- :func:`move_lift_figure` — P(solver move k right | 1st right) − P(move k right) against k;
- :func:`stratum_budget_figure` — accuracy against the node budget per stratum, per network.

Strata keep one colour everywhere (:data:`STRATUM_COLORS`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from leelalab.analyses.coupling import POINTS, CouplingTable
from leelalab.analyses.predictions import (
    WEAK_PHI,
    MoveLift,
    Prediction,
    PuzzleTable,
)
from leelalab.analyses.search import (
    DEPTH_BINS,
    POLICY,
    RATING_EDGES,
    BudgetResults,
    depth_label,
    rating_label,
)
from leelalab.analyses.strata import STRATA
from leelalab.analyses.themes import ThemeAnalysis
from leelalab.plots.boards import PAPER_STYLE, _pyplot
from leelalab.stats import Estimate

if TYPE_CHECKING:
    from leelalab.patching.residual import PatchingResults

STRATUM_COLORS = {
    "paper": "#e69f00",
    "unfiltered": "#0072b2",
    "weak-solved": "#009e73",
    "structural": "#999999",
}
STRATUM_LABELS = {
    "paper": "paper's selection",
    "unfiltered": "unfiltered (strong's 1st move right)",
    "weak-solved": "weak-solved (weak's 1st move right too)",
    "structural": "all puzzles with ≥ 2 solver moves",
}
NETWORK_COLORS = {"strong": "#0072b2", "weak": "#d55e00"}


def _error(estimate: Estimate) -> tuple[float, float]:
    if math.isnan(estimate.low):
        return (0.0, 0.0)
    return (estimate.value - estimate.low, estimate.high - estimate.value)


def _estimate_curve(axis: Any, xs: Any, estimates: Sequence[Estimate], **style: Any) -> None:
    """Point estimates joined by a line, with their intervals as error bars."""
    style = {"marker": "o", "ms": 3, "capsize": 2, **style}
    axis.errorbar(
        xs,
        [e.value for e in estimates],
        yerr=np.array([_error(e) for e in estimates]).T,
        **style,
    )


SHORT_LABELS = {
    "paper": "paper",
    "unfiltered": "unfil-\ntered",
    "weak-solved": "weak-\nsolved",
    "structural": "all",
}
PANEL_LABELS = {
    "1": "3rd-move target patching effect\n(log-odds, mean over layers)",
    "2": "weak network's mean P(1st move)",
    "3": "strong network's mean P(solver move)\nalong the line",
    "4a": "P(a later solver move wrong | 1st right)",
    "4b": "φ(1st right, every later move right)",
}


def _bars(axis: Any, estimates: dict[str, Estimate], names: Sequence[str]) -> None:
    """One bar per stratum with its 95% CI; n goes into the tick label under the bar, where
    it cannot collide with the error bar's cap."""
    ticks = []
    for position, name in enumerate(names):
        estimate = estimates.get(name)
        if estimate is None or math.isnan(estimate.value):
            axis.text(position, 0, "n/a", ha="center", va="bottom", fontsize=7)
            ticks.append(SHORT_LABELS[name])
            continue
        low, high = _error(estimate)
        axis.bar(
            position,
            estimate.value,
            color=STRATUM_COLORS[name],
            yerr=[[low], [high]],
            capsize=3,
        )
        ticks.append(f"{SHORT_LABELS[name]}\nn={estimate.n:,}")
    axis.set_xticks(range(len(names)))
    axis.set_xticklabels(ticks, fontsize=6)


def prediction_panel(predictions: Sequence[Prediction], *, title: str) -> Any:
    """One panel per prediction (1 = 3rd-move target effect, 2, 3, 4a, 4b), bars per
    stratum with 95% CIs; the verdict in each panel's title."""
    from matplotlib.patches import Patch

    plt = _pyplot()
    by_key = {p.key: p for p in predictions}
    keys = [k for k in ("1", "2", "3", "4a", "4b") if k in by_key]
    with plt.rc_context(PAPER_STYLE):
        figure, axes = plt.subplots(1, len(keys), figsize=(2.0 * len(keys), 3.0))
        axes = np.atleast_1d(axes)
        for axis, key in zip(axes, keys, strict=True):
            prediction = by_key[key]
            names = ["structural"] if key == "4b" else list(STRATA)
            _bars(axis, prediction.values, names)
            if key == "2":
                axis.axhline(0.05, color="black", lw=0.8, ls="--", label="0.05 (paper's filter)")
                axis.legend(fontsize=6, loc="upper left")
            if key == "4b":
                axis.axhline(WEAK_PHI, color="black", lw=0.8, ls="--", label="φ = 0.3 (weak below)")
                axis.axhline(0, color="black", lw=0.5)
                axis.set_ylim(-0.1, 0.45)
                axis.set_xlim(-0.8, 0.8)
                axis.legend(fontsize=6, loc="upper left")
            axis.set_title(f"({key}) {prediction.verdict}", fontsize=8)
            axis.set_ylabel(PANEL_LABELS[key], fontsize=7)
        handles = [Patch(color=STRATUM_COLORS[n], label=STRATUM_LABELS[n]) for n in SETS_ORDER]
        figure.legend(handles=handles, loc="lower center", ncol=4, fontsize=7, frameon=False)
        figure.suptitle(f"{title}; bars: estimate with 95% CI", fontsize=8)
        figure.tight_layout(rect=(0, 0.07, 1, 1))
    return figure


SETS_ORDER = ("paper", "unfiltered", "weak-solved", "structural")


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def strata_patching_curves(
    results: PatchingResults,
    table: PuzzleTable,
    *,
    title: str,
    groups: Sequence[str] = (),
    sample: Collection[str] | None = None,
) -> Any:
    """Mean ± 95% CI (bootstrap) per layer of each square group's effect, per stratum.
    ``sample``: the unfiltered sample's puzzle ids written beside strata-patching results
    (:func:`~leelalab.analyses.predictions.unfiltered_sample`); the unfiltered and
    weak-solved strata are then drawn from it, as in prediction 1."""
    from leelalab.plots.patching import GROUP_COLORS, GROUP_LABELS
    from leelalab.puzzles.dataset import SQUARE_GROUPS
    from leelalab.stats import mean_ci

    plt = _pyplot()
    groups = list(groups) or ["target_1", "target_3", "corrupted", "other"]
    effects = results.effects("log_odds")
    position = {pid: i for i, pid in enumerate(table.ids)}
    rows = np.array([position.get(str(pid), -1) for pid in results.arrays["puzzle_ids"]])
    layers = results.layers
    # The unfiltered (and weak-solved) strata by their random sample, as in prediction 1.
    sampled = None if sample is None else {str(pid) for pid in sample}
    in_sample = np.array([str(pid) in (sampled or ()) for pid in results.arrays["puzzle_ids"]])
    handles: dict[str, Any] = {}
    with plt.rc_context(PAPER_STYLE):
        figure, axes = plt.subplots(1, len(STRATA), figsize=(7.0, 2.7), sharey=True)
        empty = []
        for axis, stratum in zip(axes, STRATA, strict=True):
            member = (rows >= 0) & table.strata[stratum][np.maximum(rows, 0)]
            if sampled is not None and stratum != "paper":
                member &= in_sample
            for group in groups:
                squares = results.groups == SQUARE_GROUPS.index(group)
                present = member & squares.any(axis=1)
                if not present.any():
                    continue
                values = np.where(squares[:, None, :], effects, np.nan)[present]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    per_layer = np.nanmax(values, axis=2)
                estimates = [mean_ci(per_layer[:, j], resamples=500) for j in range(len(layers))]
                mean = np.array([e.value for e in estimates])
                low = np.array([e.low for e in estimates])
                high = np.array([e.high for e in estimates])
                color = GROUP_COLORS[group]
                (handles[group],) = axis.plot(layers, mean, color=color, label=GROUP_LABELS[group])
                axis.fill_between(layers, low, high, color=color, alpha=0.2, lw=0)
            count = int(member.sum())
            axis.set_title(f"{stratum} stratum (n={count} puzzles)", fontsize=7)
            axis.set_xlabel("layer")
            axis.set_xticks(list(layers))
            # Half a layer of margin when there is one layer: a zero-width axis is singular.
            margin = 0.5 if min(layers) == max(layers) else 0.0
            axis.set_xlim(min(layers) - margin, max(layers) + margin)
            axis.axhline(0, color="black", lw=0.5)
            if count == 0:
                empty.append(axis)
                axis.text(
                    0.5,
                    0.5,
                    "no puzzles (n = 0)",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="0.4",
                    transform=axis.transAxes,
                )
        axes[0].set_ylabel("log-odds reduction\n(max over group's squares)")
        # One legend for the figure, whichever panels have curves: a legend on an empty panel
        # would have no entries (and matplotlib warns).
        order = [group for group in groups if group in handles]
        if order:
            figure.legend(
                [handles[group] for group in order],
                [GROUP_LABELS[group] for group in order],
                loc="lower center",
                ncol=len(order),
                fontsize=6,
                frameon=False,
            )
        figure.suptitle(f"{title}; mean and 95% bootstrap CI over puzzles", fontsize=8)
        figure.tight_layout(rect=(0, 0.08, 1, 1))
    return figure


ODDS_RATIO_RANGE = (0.1, 100.0)
"""The coupling figure's odds-ratio axis: wider intervals (a cell with a handful of puzzles
reaches the thousands) are clipped and end in an arrow."""
ODDS_RATIO_TICKS = (0.1, 0.3, 1, 3, 10, 30, 100)


def coupling_bars(tables: Sequence[CouplingTable], *, title: str, threshold: float = 0.0) -> Any:
    """Left: fraction with value W − L > threshold at root / after the 1st move / after the
    line per set. Right: odds ratios of the 2×2 tables (log scale)."""
    plt = _pyplot()
    labels = {"root": "root", "first": "after 1st move", "end": "after the line"}
    with plt.rc_context(PAPER_STYLE):
        figure, (left, right) = plt.subplots(
            1, 2, figsize=(7.0, 2.8), gridspec_kw={"width_ratios": [1.1, 1]}
        )
        width = 0.8 / len(tables)
        for offset, table in enumerate(tables):
            xs = np.arange(len(POINTS)) + (offset - (len(tables) - 1) / 2) * width
            estimates = [table.winning[p] for p in POINTS]
            errors = np.array([_error(e) for e in estimates]).T
            left.bar(
                xs,
                [e.value for e in estimates],
                width,
                yerr=errors,
                capsize=2,
                color=STRATUM_COLORS[table.name],
                label=f"{STRATUM_LABELS[table.name]} (n={table.n})",
            )
        left.set_xticks(range(len(POINTS)))
        left.set_xticklabels([labels[p] for p in POINTS])
        left.set_ylabel(f"fraction with value W − L > {threshold:g}")
        left.set_ylim(0, 1)
        figure.legend(
            *left.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=6, frameon=False
        )
        rows = [("policy right × value winning (after 1st)", lambda t: t.policy_value)]
        rows += [
            (f"value × Stockfish winning ({labels[p]})", lambda t, p=p: t.stockfish[p])
            for p in POINTS
        ]
        low_clip, high_clip = ODDS_RATIO_RANGE
        clipped = False
        for offset, table in enumerate(tables):
            ys = np.arange(len(rows)) + (offset - (len(tables) - 1) / 2) * width
            color = STRATUM_COLORS[table.name]
            for y, (_, getter) in zip(ys, rows, strict=True):
                entry = getter(table)
                estimate = entry["odds_ratio"]
                if math.isnan(estimate.value) or math.isnan(estimate.low):
                    right.plot([1], [y], marker="x", color=color, ms=4)
                    continue
                value = min(max(estimate.value, low_clip), high_clip)
                low = min(max(estimate.low, low_clip), high_clip)
                high = min(max(estimate.high, low_clip), high_clip)
                right.errorbar(
                    [value],
                    [y],
                    xerr=[[value - low], [high - value]],
                    fmt="o",
                    ms=3,
                    color=color,
                    capsize=2,
                )
                # An interval past the axis ends in an arrow at the edge instead of a cap.
                for end, edge, marker in (
                    (estimate.high, high_clip, ">"),
                    (estimate.low, low_clip, "<"),
                ):
                    if (end > edge) if marker == ">" else (end < edge):
                        clipped = True
                        right.plot([edge], [y], marker=marker, ms=4, color=color, clip_on=False)
        right.axvline(1, color="black", lw=0.6, ls="--")
        right.set_xscale("log")
        right.set_xlim(low_clip, high_clip)
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

        right.xaxis.set_major_locator(FixedLocator(ODDS_RATIO_TICKS))
        right.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        right.xaxis.set_minor_formatter(NullFormatter())
        right.tick_params(axis="x", labelsize=6)
        right.set_yticks(range(len(rows)))
        right.set_yticklabels([_wrap(name, 28) for name, _ in rows], fontsize=6)
        note = f"; ▸ ◂ = interval clipped at {low_clip:g} / {high_clip:g}" if clipped else ""
        right.set_xlabel(
            f"odds ratio (95% CI; × = undefined{note})\nStockfish rows: its sample", fontsize=7
        )
        figure.suptitle(title, fontsize=8)
        figure.tight_layout(rect=(0, 0.12, 1, 1))
    return figure


BUDGET_COLORS = ("#000000", "#0072b2", "#009e73", "#d55e00", "#cc79a7")
"""Node budgets in order: Okabe–Ito colours (colour-blind safe) with at least 3:1 contrast on
white (no yellow, orange or sky blue); markers repeat the order for more budgets."""
BUDGET_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def _budget_label(budget: int | str) -> str:
    if budget == POLICY:
        return "network alone (PyTorch)"
    if budget == 1:
        return "lc0 1 node (= network alone)"
    return f"lc0 {budget} nodes"


def accuracy_curves(results: BudgetResults, *, by: str = "depth", title: str) -> Any:
    """Accuracy (Wilson 95% CI) per bin, one line per node budget, one panel per network."""
    plt = _pyplot()
    rows = results.accuracy_by(by)
    bins = (
        [depth_label(d) for d in DEPTH_BINS]
        if by == "depth"
        else [rating_label(b) for b in range(len(RATING_EDGES) + 1)]
    )
    budgets = list(results.nodes)
    with plt.rc_context(PAPER_STYLE):
        figure, axes = plt.subplots(
            1, len(results.networks), figsize=(3.4 * len(results.networks), 2.7), sharey=True
        )
        axes = np.atleast_1d(axes)
        for axis, network in zip(axes, results.networks, strict=True):
            for index, budget in enumerate(budgets):
                points = [r for r in rows if r["network"] == network and r["budget"] == budget]
                xs = [bins.index(r["bin"]) for r in points]
                _estimate_curve(
                    axis,
                    np.array(xs) + (index - len(budgets) / 2) * 0.04,
                    [r["accuracy"] for r in points],
                    color=BUDGET_COLORS[index % len(BUDGET_COLORS)],
                    marker=BUDGET_MARKERS[index % len(BUDGET_MARKERS)],
                    lw=1,
                    label=_budget_label(budget),
                )
            counts = {r["bin"]: r["accuracy"].n for r in rows if r["network"] == network}
            axis.set_xticks(range(len(bins)))
            axis.set_xticklabels([f"{b}\nn={counts.get(b, 0)}" for b in bins])
            axis.set_xlabel("line length (solver moves)" if by == "depth" else "puzzle rating")
            axis.set_title(f"{network} network", fontsize=8)
            # A little room above 1, so points and caps at accuracy 1.0 are not cut off.
            axis.set_ylim(-0.02, 1.05)
        axes[0].set_ylabel("puzzle accuracy (Lichess rule)")
        figure.legend(
            *axes[0].get_legend_handles_labels(),
            loc="lower center",
            ncol=len(budgets),
            fontsize=6,
            frameon=False,
        )
        figure.suptitle(title, fontsize=8)
        figure.tight_layout(rect=(0, 0.06, 1, 1))
    return figure


def search_gain_figure(results: BudgetResults, *, title: str) -> Any:
    """Left: search gain per line length per network. Right: whole-run (reweighted)
    accuracy against the node budget, with the strong network alone as a reference."""
    plt = _pyplot()
    depth = results.depth
    high = results.nodes[-1]
    with plt.rc_context(PAPER_STYLE):
        figure, (left, right) = plt.subplots(1, 2, figsize=(7.0, 2.7))
        for offset, network in enumerate(results.networks):
            gains = [results.search_gain(network, high=high, mask=depth == d) for d in DEPTH_BINS]
            xs = np.arange(len(DEPTH_BINS)) + (offset - 0.5) * 0.1
            _estimate_curve(left, xs, gains, color=NETWORK_COLORS.get(network), label=network)
        counts = [int((depth == d).sum()) for d in DEPTH_BINS]
        left.set_xticks(range(len(DEPTH_BINS)))
        left.set_xticklabels(
            [f"{depth_label(d)}\nn={c}" for d, c in zip(DEPTH_BINS, counts, strict=True)]
        )
        left.set_xlabel("line length (solver moves)")
        left.set_ylabel(f"search gain: acc({high} nodes) − acc(1 node)")
        left.axhline(0, color="black", lw=0.5)
        left.legend(fontsize=6)
        for network in results.networks:
            _estimate_curve(
                right,
                results.nodes,
                [results.weighted_accuracy(network, n) for n in results.nodes],
                color=NETWORK_COLORS.get(network),
                label=f"{network} + lc0 MCTS",
            )
        if "strong" in results.networks:
            reference = results.weighted_accuracy("strong", 1)
            right.axhline(
                reference.value,
                color=NETWORK_COLORS["strong"],
                ls="--",
                lw=0.8,
                label="strong alone (1 node)",
            )
            right.axhspan(reference.low, reference.high, color=NETWORK_COLORS["strong"], alpha=0.1)
        right.set_xscale("log", base=2)
        right.set_xticks(results.nodes)
        right.set_xticklabels([str(n) for n in results.nodes])
        right.set_xlabel("lc0 nodes per move")
        right.set_ylabel("accuracy, reweighted to all puzzles")
        right.set_ylim(0, 1)
        right.legend(fontsize=6)
        figure.suptitle(f"{title} (n={results.size} sampled puzzles)", fontsize=8)
        figure.tight_layout()
    return figure


def move_lift_figure(lifts: Sequence[MoveLift], *, title: str) -> Any:
    """Left: P(solver move k right), given the 1st right (solid) and overall (dashed), per
    network with 95% Wilson intervals. Right: their difference (the lift) with 95% bootstrap
    intervals; 0 means the 1st move's correctness says nothing about move k."""
    plt = _pyplot()
    networks = list(dict.fromkeys(lift.network for lift in lifts))
    with plt.rc_context(PAPER_STYLE):
        figure, (left, right) = plt.subplots(1, 2, figsize=(7.0, 2.8), sharex=True)
        for offset, network in enumerate(networks):
            rows = [lift for lift in lifts if lift.network == network]
            ks = np.array([lift.k for lift in rows], dtype=float) + (offset - 0.5) * 0.12
            color = NETWORK_COLORS.get(network)
            for key, style, label in (
                ("conditional", "-", "given the 1st move right"),
                ("marginal", "--", "all lines"),
            ):
                _estimate_curve(
                    left,
                    ks,
                    [getattr(lift, key) for lift in rows],
                    marker="o" if key == "conditional" else "s",
                    mfc=color if key == "conditional" else "white",
                    ls=style,
                    color=color,
                    label=f"{network}: {label}",
                )
            _estimate_curve(right, ks, [lift.lift for lift in rows], color=color, label=network)
        strong_rows = [lift for lift in lifts if lift.network == networks[0]]
        ticks = [lift.k for lift in strong_rows]
        for axis in (left, right):
            axis.set_xticks(ticks)
            # Both networks are scored on the same lines, so one n per k.
            axis.set_xticklabels([f"{lift.k}\nn={lift.marginal.n}" for lift in strong_rows])
            axis.set_xlabel("solver move k (lines with ≥ k solver moves)")
        left.set_ylabel("P(solver move k right)")
        left.set_ylim(0, 1)
        left.legend(fontsize=6)
        right.axhline(0, color="black", lw=0.5)
        right.set_ylabel("P(k right | 1st right) − P(k right)")
        right.legend(fontsize=6, title="network", title_fontsize=6)
        figure.suptitle(f"{title}; teacher-forced top-1, 95% CIs", fontsize=8)
        figure.tight_layout()
    return figure


def stratum_budget_figure(
    runs: dict[str, BudgetResults], *, title: str, whole: BudgetResults | None = None
) -> Any:
    """One panel per network: puzzle accuracy (reweighted to each stratum, 95% Wilson
    interval at the sample's effective size) against lc0's node budget, one curve per stratum
    run (``analyze search --stratum``), and the whole run's curve in grey when ``whole`` is
    given. The panels share the y-axis."""
    plt = _pyplot()
    first = next(iter(runs.values()))
    networks = first.networks
    with plt.rc_context(PAPER_STYLE):
        figure, axes = plt.subplots(1, len(networks), figsize=(3.4 * len(networks), 2.9))
        axes = np.atleast_1d(axes)
        curves = dict(runs)
        if whole is not None:
            curves = {"structural": whole, **curves}
        for axis, network in zip(axes, networks, strict=True):
            for offset, (stratum, results) in enumerate(curves.items()):
                xs = np.array(results.nodes, dtype=float) * 2 ** ((offset - 1.5) * 0.04)
                label = (
                    f"all puzzles (n={results.size} sampled)"
                    if stratum == "structural"
                    else f"{STRATUM_LABELS.get(stratum, stratum)} (n={results.size})"
                )
                _estimate_curve(
                    axis,
                    xs,
                    [results.weighted_accuracy(network, n) for n in results.nodes],
                    color=STRATUM_COLORS.get(stratum),
                    label=label,
                )
            axis.set_xscale("log", base=2)
            axis.set_xticks(first.nodes)
            axis.set_xticklabels([str(n) for n in first.nodes])
            axis.set_xlabel("lc0 nodes per move")
            axis.set_title(f"{network} network + lc0 MCTS", fontsize=8)
            axis.set_ylim(-0.02, 1.02)
        axes[0].set_ylabel("puzzle accuracy (reweighted to the stratum)")
        for axis in axes[1:]:
            axis.sharey(axes[0])
        handles, labels = axes[-1].get_legend_handles_labels()
        # Below the panels: inside, the legend would cover the weak network's low curves.
        figure.legend(handles, labels, fontsize=6, loc="lower center", ncol=2, frameon=False)
        figure.suptitle(f"{title}; 95% CIs", fontsize=8)
        figure.tight_layout(rect=(0, 0.14, 1, 1))
    return figure


def theme_scatter(analyses: Sequence[ThemeAnalysis], *, title: str) -> Any:
    """Residualised accuracy per theme (95% CI) against log10 frequency, per network, with
    the weighted least-squares line."""
    plt = _pyplot()
    with plt.rc_context(PAPER_STYLE):
        figure, axes = plt.subplots(1, len(analyses), figsize=(4.2 * len(analyses), 4.4))
        axes = np.atleast_1d(axes)
        labels: list[list[Any]] = []
        for axis, analysis in zip(axes, analyses, strict=True):
            xs = np.log10([row.frequency for row in analysis.rows])
            ys = np.array([row.residual.value for row in analysis.rows])
            errors = np.array([_error(row.residual) for row in analysis.rows]).T
            color = NETWORK_COLORS.get(analysis.network, "black")
            axis.errorbar(xs, ys, yerr=errors, fmt="o", ms=3, capsize=1.5, color=color, lw=0.7)
            labels.append(
                [
                    axis.annotate(
                        row.theme,
                        (x, y),
                        fontsize=4.5,
                        xytext=(2, 2),
                        textcoords="offset points",
                        va="bottom",
                        arrowprops={"arrowstyle": "-", "lw": 0.3, "color": "0.6", "shrinkA": 0},
                    )
                    for x, y, row in zip(xs, ys, analysis.rows, strict=True)
                ]
            )
            weights = np.array([row.n for row in analysis.rows], dtype=float)
            if len(xs) >= 2:
                xm, ym = np.average(xs, weights=weights), np.average(ys, weights=weights)
                slope = analysis.slope.value
                grid = np.linspace(xs.min(), xs.max(), 10)
                axis.plot(grid, ym + slope * (grid - xm), color="black", lw=0.8)
            axis.axhline(0, color="black", lw=0.4, ls=":")
            axis.set_xlabel(f"log10 theme frequency ({analysis.frequency_source})")
            axis.set_ylabel("accuracy − expected from rating and length\n(mean, 95% CI)")
            axis.set_title(
                f"{analysis.network} network alone: {len(analysis.rows)} themes, "
                f"n={analysis.n} puzzles\nweighted LS slope (line) {analysis.slope.value:+.3f} "
                f"[{analysis.slope.low:+.3f}, {analysis.slope.high:+.3f}] per decade",
                fontsize=7,
            )
        figure.suptitle(title, fontsize=8)
        figure.tight_layout()
        # After the layout: labels are moved in offset points, which keep their size on saving.
        for texts in labels:
            separate_labels(figure, texts)
    return figure


def separate_labels(figure: Any, texts: Sequence[Any], *, tries: int = 60) -> None:
    """Move point labels (annotations in offset points) until no two overlap and none covers
    a labelled point: each label, in order of its point's height, tries the spots right and
    left of the point, then ever further above and below it; a thin leader line keeps it
    tied to its point."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    renderer = figure.canvas.get_renderer()
    scale = 72.0 / figure.dpi  # display pixels to points

    def extent(text: Any) -> Any:  # the text alone, not its leader line
        text.update_positions(renderer)  # the annotation's text moves only when asked
        return Text.get_window_extent(text, renderer)

    # Each label's own point is an obstacle too, so that no label covers a marker.
    radius = 2.5 / scale
    placed: list[Any] = []
    for text in texts:
        x, y = text.axes.transData.transform(text.xy)
        placed.append(Bbox.from_extents(x - radius, y - radius, x + radius, y + radius))
    for text in sorted(texts, key=lambda t: t.xy[1]):
        box = extent(text)
        step = box.height * scale * 1.1
        candidates = [(3.0, 2.0, "left"), (-3.0, 2.0, "right")]
        for k in range(1, tries):
            for sign in (1, -1):
                candidates += [(3.0, 2.0 + sign * k * step, "left")]
                candidates += [(-3.0, 2.0 + sign * k * step, "right")]
        for dx, dy, align in candidates:
            text.set_ha(align)
            text.xyann = (dx, dy)
            box = extent(text)
            frame = text.axes.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1  # off the tick labels
            if inside and not any(box.overlaps(other) for other in placed):
                break
        placed.append(box)
