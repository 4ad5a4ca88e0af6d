"""Figures of the inside-the-network analyses: lens curves and layer of emergence, the
refutation-depth curve, layer × horizon future-board heatmaps, steering bars."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from leelalab.plots.boards import PAPER_STYLE, _pyplot, save_figure

if TYPE_CHECKING:
    from leelalab.analyses.lens_analysis import LensSummary
    from leelalab.analyses.refutation import RefutationMeasure
    from leelalab.analyses.steering import SteeringSummary
    from leelalab.probing.concepts import ConceptResults

BLUE, ORANGE, GREEN, GREY, PURPLE, RED = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#999999",
    "#cc79a7",
    "#d55e00",
)
REFUTATION_COLORS = {"strong": BLUE, "weak": ORANGE}
"""The refutation figure's networks: the same colour in both of its panels."""
GROUP_COLORS = {
    "paper": RED,
    "unfiltered": BLUE,
    "weak-solved": GREEN,
    "strong-missed": PURPLE,
    "structural": GREY,
}


def _interval(estimates: list[dict[str, Any] | None]) -> tuple[np.ndarray, np.ndarray]:
    """Values and asymmetric error bars (2, n) of a list of ``Estimate.to_json`` dicts."""
    value = np.array([np.nan if e is None or e["value"] is None else e["value"] for e in estimates])
    low = np.array([np.nan if e is None or e["low"] is None else e["low"] for e in estimates])
    high = np.array([np.nan if e is None or e["high"] is None else e["high"] for e in estimates])
    return value, np.vstack([value - low, high - value])


def _network_name(network: str | None) -> str:
    """The name a figure shows for a network source as its run record holds it."""
    return Path(str(network or "")).name.replace(".pb.gz", "") or "network"


# lens -------------------------------------------------------------------------------------


def lens_figures(summary: LensSummary, *, network: str | None = None) -> dict[str, Any]:
    """``lens_layers`` (KL to the output and solution top-1 by layer) and ``lens_emergence``
    (layer of emergence vs line length; found-then-lost and forgotten rates per group).
    ``network``: the run's network as its run record names it (the titles show its name)."""
    layers = summary.layers
    labels = ["in" if layer == -1 else str(layer) for layer in layers]
    name = _network_name(network)
    lenses = summary.kinds()
    kinds = list(lenses)
    plt = _pyplot()
    figures = {}
    with plt.rc_context(PAPER_STYLE):
        figure, (kl_ax, top_ax) = plt.subplots(1, 2, figsize=(8.0, 2.8))
        x = np.arange(len(layers))
        # The lens is told by line style in both panels (solid logit, dashed tuned): on the
        # right, colours are puzzle groups, so they cannot also mean the lens here.
        for kind, style in zip(kinds, ("-", "--"), strict=False):
            groups = lenses[kind]["groups"]
            value, error = _interval(groups["all"]["kl_by_layer"])
            kl_ax.errorbar(
                x + (0.08 if style == "--" else 0),
                value,
                yerr=error,
                color="black",
                ls=style,
                marker="o" if style == "-" else "s",
                mfc="black" if style == "-" else "white",
                ms=3,
                capsize=2,
                label=f"{kind} lens (n={groups['all']['n']})",
            )
        kl_ax.set_xticks(x, labels)
        kl_ax.set_xlabel("layer (in = after the input layer)")
        kl_ax.set_ylabel("KL(output ‖ lens), nats")
        kl_ax.set_title("lens policy vs the network's policy (all puzzles)")
        kl_ax.legend(frameon=False, fontsize=6)
        shown = ("paper", "unfiltered", "weak-solved", "strong-missed")
        for kind, style in zip(kinds, ("-", "--"), strict=False):
            groups = lenses[kind]["groups"]
            for group in shown:
                value, error = _interval(groups[group]["top1_by_layer"])
                top_ax.errorbar(
                    x + (0.08 if style == "--" else 0),
                    value,
                    yerr=error,
                    color=GROUP_COLORS[group],
                    ls=style,
                    marker="o" if style == "-" else "s",
                    ms=2.5,
                    capsize=1.5,
                    lw=1,
                )
        groups = lenses[kinds[0]]["groups"]
        for group in shown:
            top_ax.plot(
                [], [], color=GROUP_COLORS[group], label=f"{group} (n={groups[group]['n']})"
            )
        for kind, style in zip(kinds, ("-", "--"), strict=False):
            top_ax.plot([], [], color="black", ls=style, label=f"{kind} lens")
        top_ax.set_xticks(x, labels)
        top_ax.set_ylim(-0.02, 1.02)
        top_ax.set_xlabel("layer")
        top_ax.set_ylabel("solution is the lens's top move")
        top_ax.set_title("1st move of the solution, top-1 by layer")
        top_ax.legend(frameon=False, fontsize=5.5, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        for ax in (kl_ax, top_ax):
            ax.spines[["top", "right"]].set_visible(False)
        figure.suptitle(f"{name}: logit and tuned lens, 95% CIs", fontsize=8)
        figure.tight_layout()
        figures["lens_layers"] = figure

        figure, (em_ax, rate_ax) = plt.subplots(1, 2, figsize=(8.0, 2.8))
        for offset, (kind, color) in enumerate(zip(kinds, (BLUE, ORANGE), strict=False)):
            by_length = lenses[kind]["unfiltered_by_line_length"]
            bins = [b for b in by_length if by_length[b]["n"] > 0]
            value, error = _interval([by_length[b]["emergence_layer_mean"] for b in bins])
            em_ax.errorbar(
                np.arange(len(bins)) + 0.08 * offset,
                value,
                yerr=error,
                color=color,
                marker="o",
                ms=3,
                capsize=2,
                label=f"{kind} lens",
            )
            em_ax.set_xticks(np.arange(len(bins)), [f"{b}\n(n={by_length[b]['n']})" for b in bins])
        em_ax.set_xlabel("plies after the opponent's move")
        em_ax.set_ylabel("first layer with the solution top-1")
        em_ax.set_title("layer of emergence vs line length (unfiltered)")
        em_ax.set_yticks(range(min(layers), max(layers) + 1))
        em_ax.set_yticklabels(labels)
        em_ax.legend(frameon=False, fontsize=6)
        groups_shown = ["paper", "unfiltered", "weak-solved", "strong-missed"]
        width = 0.2
        bars = [("found_then_lost", "found then lost"), ("forgotten", "forgotten (lost at end)")]
        for k, kind in enumerate(kinds):
            groups = lenses[kind]["groups"]
            for j, (key, text) in enumerate(bars):
                value, error = _interval([groups[g][key] for g in groups_shown])
                position = np.arange(len(groups_shown)) + (2 * k + j - 1.5) * width
                rate_ax.bar(
                    position,
                    value,
                    width,
                    yerr=error,
                    capsize=1.5,
                    color=(BLUE, ORANGE)[k],
                    alpha=1.0 if j == 0 else 0.45,
                    label=f"{text}, {kind} lens",
                )
        rate_ax.set_xticks(
            np.arange(len(groups_shown)),
            [
                f"{g.replace('-', '-' + chr(10))}\n(n={lenses[kinds[0]]['groups'][g]['n']})"
                for g in groups_shown
            ],
            fontsize=6.5,
        )
        rate_ax.set_ylabel("share of puzzles")
        rate_ax.set_title("solutions found at a layer, then lost")
        rate_ax.legend(frameon=False, fontsize=5.5, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        for ax in (em_ax, rate_ax):
            ax.spines[["top", "right"]].set_visible(False)
        figure.suptitle(f"{name}: layer dynamics of the 1st move, 95% CIs", fontsize=8)
        figure.tight_layout()
        figures["lens_emergence"] = figure
    return figures


def plot_lens(
    summary: LensSummary, out: str | os.PathLike[str], *, network: str | None = None
) -> list[Path]:
    return _save(lens_figures(summary, network=network), out)


# refutations ------------------------------------------------------------------------------


def refutation_figure(measure: RefutationMeasure, *, stratum: str = "", limit: str = "") -> Any:
    """1st-move log-odds drop vs refutation depth: refutation, control and their paired
    difference for each measured network. ``stratum`` and ``limit`` (Stockfish's) are the
    search's, as its run record holds them (for the title)."""
    plt = _pyplot()
    depths = [int(k) for k in measure.depths]
    from matplotlib.lines import Line2D

    with plt.rc_context(PAPER_STYLE):
        figure, (drop_ax, diff_ax) = plt.subplots(1, 2, figsize=(7.2, 2.8), sharex=True)
        # One colour = one network in both panels; on the left, the line style and the
        # marker's fill tell refutations (solid, filled) from controls (dashed, open).
        roles = {"refutation": ("-", "full"), "control": ("--", "none")}
        for number, (label, entry) in enumerate(measure.networks.items()):
            color = REFUTATION_COLORS.get(label, (GREEN, PURPLE)[number % 2])
            marker = {"strong": "o", "weak": "s"}.get(label, "^")
            name = _network_name(entry.get("network"))
            paired = [entry["depths"][str(k)]["paired"] for k in depths]
            counts = ", ".join(f"k={k}: {p['n']}" for k, p in zip(depths, paired, strict=True))
            for role, (ls, fill) in roles.items():
                value, error = _interval([p[role] for p in paired])
                drop_ax.errorbar(
                    depths,
                    value,
                    yerr=error,
                    color=color,
                    ls=ls,
                    marker=marker,
                    fillstyle=fill,
                    mfc=color if fill == "full" else "white",
                    ms=3.5,
                    capsize=2,
                    label=f"{label} ({name}): {role}s",
                )
            value, error = _interval([p["refutation_minus_control"] for p in paired])
            diff_ax.errorbar(
                depths,
                value,
                yerr=error,
                color=color,
                marker=marker,
                ms=3.5,
                capsize=2,
                label=f"{label} ({name}); pairs {counts}",
            )
        handles, texts = drop_ax.get_legend_handles_labels()
        for role, (ls, fill) in roles.items():
            handles.append(Line2D([], [], color="black", ls=ls, marker="o", fillstyle=fill, ms=3.5))
            texts.append(f"{'solid, filled' if fill == 'full' else 'dashed, open'}: {role}s")
        drop_ax.legend(handles, texts, frameon=False, fontsize=5.5)
        diff_ax.legend(frameon=False, fontsize=5.5)
        for ax in (drop_ax, diff_ax):
            ax.axhline(0, color="black", lw=0.6)
            ax.set_xticks(depths)
            ax.set_xlabel("ply k at which the line fails (1 = the 1st move)")
            ax.spines[["top", "right"]].set_visible(False)
        drop_ax.set_ylabel("1st-move log-odds drop (clean − edited)")
        drop_ax.set_title("refutations vs matched controls")
        diff_ax.set_ylabel("refutation − control (paired)")
        diff_ax.set_title("sensitivity to refutations at depth k")
        figure.suptitle(
            f"refutation depth: {measure.puzzles} {stratum} puzzles, "
            f"Stockfish {limit}; mean ± 95% bootstrap CI",
            fontsize=8,
        )
        figure.tight_layout()
    return figure


def plot_refutations(
    measure: RefutationMeasure,
    out: str | os.PathLike[str],
    *,
    stratum: str = "",
    limit: str = "",
) -> list[Path]:
    figure = refutation_figure(measure, stratum=stratum, limit=limit)
    return _save({"refutation_depth": figure}, out)


# future board -----------------------------------------------------------------------------


def _layer_label(hook: str) -> str:
    if hook.startswith("blocks."):
        return hook.split(".")[1]
    return "in"


def arrival_scale_top(grids: list[np.ndarray]) -> float:
    """The top of the arrival-accuracy colour scale: the largest value rounded up to the next
    0.05 (at least 0.05), so that values of a few hundredths are not all one dark colour on a
    0–1 scale; 1 at most."""
    finite = [float(np.nanmax(g)) for g in grids if np.isfinite(g).any()]
    top = max(finite, default=1.0)
    return round(min(1.0, max(0.05, float(np.ceil(round(top / 0.05, 9))) * 0.05)), 2)


def future_board_figure(results: ConceptResults, random_init: ConceptResults | None = None) -> Any:
    """Heatmaps (horizon × layer) of arrival accuracy for the trained network, the control
    task and the random-init network, and static-concept curves by layer."""
    random = random_init
    horizons = [k for k in results.config["horizons"] if k > 0]
    layers = [_layer_label(r["hook"]) for r in results.results]
    panels = [("trained network", results, "arrival_accuracy", "scores")]
    panels.append(("control task (targets permuted)", results, "arrival_accuracy", "control"))
    if random is not None:
        panels.append(("random-init network", random, "arrival_accuracy", "scores"))
    plt = _pyplot()
    name = Path(str(results.network or "")).name.replace(".pb.gz", "")
    with plt.rc_context(PAPER_STYLE):
        figure = plt.figure(figsize=(2.1 * len(panels) + 3.4, 2.9), constrained_layout=True)
        grid = figure.add_gridspec(1, len(panels) + 2, width_ratios=[1] * len(panels) + [0.06, 1.5])
        axes = [figure.add_subplot(grid[0, i]) for i in range(len(panels))]
        colorbar_ax = figure.add_subplot(grid[0, len(panels)])
        concept_ax = figure.add_subplot(grid[0, len(panels) + 1])
        grids = []
        for _, source, metric, key in panels:
            grid = np.full((len(horizons), len(layers)), np.nan)
            for j, layer in enumerate(source.results):
                for i, k in enumerate(horizons):
                    entry = layer["targets"].get(f"board_ply{k}", {}).get(key)
                    value = entry.get(metric, {}).get("mean") if entry else None
                    grid[i, j] = np.nan if value is None else value
            grids.append(grid)
        top = arrival_scale_top(grids)
        image = None
        for ax, (title, *_), grid in zip(axes, panels, grids, strict=False):
            image = ax.imshow(grid, vmin=0, vmax=top, cmap="viridis", aspect="auto", origin="lower")
            for i in range(grid.shape[0]):
                for j in range(grid.shape[1]):
                    if np.isfinite(grid[i, j]):
                        ax.text(
                            j,
                            i,
                            f"{grid[i, j]:.2f}",
                            ha="center",
                            va="center",
                            fontsize=5,
                            color="white" if grid[i, j] < 0.6 * top else "black",
                        )
            ax.set_xticks(range(len(layers)), layers)
            ax.set_yticks(range(len(horizons)), [str(k) for k in horizons])
            ax.set_xlabel("layer")
            ax.set_title(title, fontsize=7)
        axes[0].set_ylabel("plies ahead k")
        if image is not None:
            bar = figure.colorbar(image, cax=colorbar_ax)
            bar.set_label(
                f"accuracy on arriving pieces\n(colour scale 0 to {top:g}, fitted to the data)",
                fontsize=6,
            )
        ax = concept_ax
        concepts = [
            ("attacked_by_me", "balanced_accuracy", "attacked by side to move (bal. acc.)", BLUE),
            ("attacked_by_them", "balanced_accuracy", "attacked by opponent (bal. acc.)", GREEN),
            ("material", "r2", "material balance (R²)", ORANGE),
            ("in_check", "balanced_accuracy", "in check (bal. acc.)", PURPLE),
            ("gives_check", "balanced_accuracy", "1st move gives check (bal. acc.)", RED),
        ]
        x = np.arange(len(layers))
        seeds = len(results.config["seeds"])
        for target, metric, text, color in concepts:
            for source, ls in ((results, "-"), (random, "--")):
                if source is None or target not in source.results[0]["targets"]:
                    continue
                mean = [r["targets"][target]["scores"][metric]["mean"] for r in source.results]
                std = [r["targets"][target]["scores"][metric]["std"] for r in source.results]
                # One seed has no spread: no error bars rather than bars of zero width.
                std = None if seeds == 1 else [np.nan if v is None else v for v in std]
                ax.errorbar(
                    x,
                    [np.nan if m is None else m for m in mean],
                    yerr=std,
                    color=color,
                    ls=ls,
                    lw=1,
                    ms=2,
                    marker="o",
                    capsize=1.5,
                    label=text if ls == "-" else None,
                )
        if random is not None:
            ax.plot([], [], color="black", ls="--", label="dashed: random-init network")
        ax.set_xticks(x, layers)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("layer")
        ax.set_title("static concepts (covariates)", fontsize=7)
        ax.set_ylabel("held-out score")
        ax.legend(frameon=False, fontsize=5, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.spines[["top", "right"]].set_visible(False)
        spread = "1 seed, no spread" if seeds == 1 else f"mean of {seeds} seeds, bars ± std"
        figure.suptitle(
            f"{name}: future board after k plies (13 classes per square), {results.puzzles} "
            f"puzzles, 30% held out, {spread}",
            fontsize=7,
        )
    return figure


def plot_future_board(
    results: ConceptResults,
    out: str | os.PathLike[str],
    *,
    random_init: ConceptResults | None = None,
) -> list[Path]:
    return _save({"future_board": future_board_figure(results, random_init)}, out)


# steering ---------------------------------------------------------------------------------


def steering_figure(summary: SteeringSummary, *, network: str | None = None) -> Any:
    """Per scale, bars by layer: success of the probe direction vs random directions of the
    same norm (95% bootstrap CIs over puzzles), with the probe's own hit rate as dots.
    ``network``: the run's network as its run record names it (the title shows its name)."""
    scales = summary.config["scales"]
    layers = summary.config["layers"]
    plt = _pyplot()
    with plt.rc_context(PAPER_STYLE):
        figure, axes = plt.subplots(
            1, len(scales), figsize=(1.9 * len(scales) + 0.4, 2.6), sharey=True
        )
        axes = np.atleast_1d(axes)
        width = 0.38
        for ax, scale in zip(axes, scales, strict=True):
            rows = [r for r in summary.rows if r["scale"] == scale]
            rows.sort(key=lambda r: layers.index(r["layer"]))
            x = np.arange(len(rows))
            for offset, key, color, text in (
                (-width / 2, "probe_success", BLUE, "probe direction"),
                (width / 2, "random_success", GREY, "random directions, same norm"),
            ):
                value, error = _interval([r[key] for r in rows])
                ax.bar(x + offset, value, width, yerr=error, capsize=1.5, color=color, label=text)
            value, _ = _interval([r["probe_predicts_target"] for r in rows])
            ax.plot(x, value, "k.", ms=4, label="probe reads s′ after steering")
            ax.set_xticks(x, [str(r["layer"]) for r in rows])
            ax.set_xlabel("layer steered")
            ax.set_title(f"norm = {scale:g} × mean residual norm", fontsize=6.5)
            ax.set_ylim(0, 1.02)
            ax.spines[["top", "right"]].set_visible(False)
        axes[0].set_ylabel("top 1st move consistent with s′")
        # Under the panels: inside, the legend covered the dots at 1.0.
        figure.legend(
            *axes[0].get_legend_handles_labels(),
            frameon=False,
            fontsize=6,
            loc="lower center",
            ncol=3,
        )
        name = _network_name(network)
        figure.suptitle(
            f"{name}: steering the 1st-move square towards '3rd-move target = s′' — "
            f"{summary.puzzles} held-out puzzles, {summary.targets} targets; "
            "mean ± 95% CI",
            fontsize=7,
        )
        figure.tight_layout(rect=(0, 0.08, 1, 1))
    return figure


def plot_steering(
    summary: SteeringSummary, out: str | os.PathLike[str], *, network: str | None = None
) -> list[Path]:
    return _save({"steering": steering_figure(summary, network=network)}, out)


def _save(figures: dict[str, Any], out: str | os.PathLike[str]) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    plt = _pyplot()
    for name, figure in figures.items():
        paths += save_figure(figure, out / name)
        plt.close(figure)
    return paths
