"""Figures of anomaly-detection runs: AUROC by layer, score histograms, and the
"distillation versus MAD" coverage–risk curves.

Needs the ``viz`` extra: ``pip install "leelalab[viz]"``.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from leelalab.anomaly.features import layer_order, short_layer
from leelalab.anomaly.results import AnomalyResults, AnomalyRun, AnomalyScores
from leelalab.errors import LeelaLabError
from leelalab.plots.boards import PAPER_STYLE, _pyplot, save_figure

# One colour per detector across every figure (Okabe–Ito, then greys).
DETECTOR_COLORS = {
    "weak-kl": "#e69f00",
    "weak-dq": "#f0c060",
    "student-kl": "#009e73",
    "student-dq": "#7fcfb9",
    "mahalanobis": "#0072b2",
    "relative-mahalanobis": "#56b4e9",
    "que": "#cc79a7",
    "spectral": "#d55e00",
    "isolation-forest": "#7f7f7f",
    "lof": "#b0b0b0",
    "logit-lens": "#000000",
    "probe": "#9467bd",
}
HEADLINE = (
    "weak-kl",
    "student-kl",
    "mahalanobis",
    "que",
    "spectral",
    "isolation-forest",
    "logit-lens",
    "probe",
)
TASK_TITLES = {
    "backdoor": "backdoor (triggered vs clean)",
    "mechanism": "mechanism (deep vs shallow best move)",
    "ood": "OOD control (Chess960 / random vs natural)",
}


def _network_name(results: AnomalyResults) -> str:
    return Path(str(results.network)).name.removesuffix(".pb.gz")


def _title(results: AnomalyResults) -> str:
    test = results.test
    return (
        f"{TASK_TITLES.get(results.task, results.task)}\n{_network_name(results)}; "
        f"test n={test['positions']} ({test['anomalous']} anomalous)"
    )


def _tick(hook: str) -> str:
    label = short_layer(hook)
    return label.removeprefix("block ").replace(" head", "\nhead")


def auroc_figure(results: AnomalyResults, *, width: float = 6.2) -> Any:
    """AUROC (bootstrap 95% CI) per layer for every detector; output-level detectors at
    "output"; the supervised probe dashed; chance at 0.5."""
    plt = _pyplot()
    detectors = results.detectors
    hooks: list[str] = []
    for entry in detectors.values():
        for layer in entry["layers"]:
            if layer != "output" and layer not in hooks:
                hooks.append(layer)
    hooks.sort(key=layer_order)
    positions = {hook: i for i, hook in enumerate(hooks)}
    positions["output"] = len(hooks)
    with plt.rc_context(PAPER_STYLE):
        figure, ax = plt.subplots(figsize=(width, width * 0.5))
        offsets = np.linspace(-0.25, 0.25, max(len(detectors), 1))
        for offset, (name, entry) in zip(offsets, detectors.items(), strict=True):
            layers = sorted(
                (layer for layer in entry["layers"] if layer in positions), key=positions.get
            )
            x = np.array([positions[layer] for layer in layers]) + offset
            values = [entry["layers"][layer]["auroc"] for layer in layers]
            y = np.array([v["value"] for v in values])
            error = np.array([[v["value"] - v["low"], v["high"] - v["value"]] for v in values]).T
            ax.errorbar(
                x, y, yerr=error, color=DETECTOR_COLORS.get(name, "#444444"), marker="o", ms=2.5,
                lw=1.0, capsize=1.5, ls="--" if entry["supervised"] else "-",
                label=name + (" (supervised skyline)" if entry["supervised"] else ""),
            )  # fmt: skip
        ax.axhline(0.5, color="black", lw=0.6, ls=":", label="chance")
        labels = [_tick(h) for h in hooks] + ["output"]
        ax.set_xticks(range(len(hooks) + 1), labels)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("AUROC (95% bootstrap CI)")
        ax.set_xlabel(
            "residual stream after block (input: after the input layer); heads' hidden layers"
        )
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_title(_title(results))
        ax.legend(frameon=False, fontsize=5.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        figure.tight_layout()
    return figure


def histogram_figure(results: AnomalyResults, scores: AnomalyScores) -> Any:
    """Per detector, histograms of the layer-mean standardised score, normal vs anomalous."""
    plt = _pyplot()
    labels = scores.labels
    names = [name for name in results.detectors if name in scores.scores]
    columns = 4
    rows = int(np.ceil(len(names) / columns))
    with plt.rc_context(PAPER_STYLE):
        figure, axes = plt.subplots(rows, columns, figsize=(7.0, 1.45 * rows + 0.5), squeeze=False)
        for ax, name in zip(axes.flat, names, strict=False):
            values = scores.scores[name]
            low, high = np.quantile(values, [0.005, 0.995])
            bins = np.linspace(low, high if high > low else low + 1, 31)
            for mask, label, color in (
                (~labels, "normal", "#0072b2"),
                (labels, "anomalous", "#d55e00"),
            ):
                ax.hist(
                    np.clip(values[mask], bins[0], bins[-1]), bins=bins, density=True, alpha=0.55,
                    color=color, label=f"{label} (n={int(mask.sum())})",
                )  # fmt: skip
            auroc = results.detectors[name]["aggregate"]["mean"]["auroc"]["value"]
            ax.set_title(f"{name}  AUROC {auroc:.2f}", fontsize=6.5)
            ax.tick_params(labelsize=5.5)
            ax.spines[["top", "right"]].set_visible(False)
        for ax in list(axes.flat)[len(names) :]:
            ax.axis("off")
        axes.flat[0].legend(frameon=False, fontsize=5.5)
        figure.supxlabel(
            "score (standardised on trusted, mean over layers; shown within its 0.5-99.5% range)",
            fontsize=7,
        )
        figure.suptitle(_title(results).replace("\n", " — "), fontsize=7.5)
        figure.tight_layout()
    return figure


def coverage_risk_figure(
    runs: Sequence[AnomalyResults], *, detectors: Sequence[str] = HEADLINE
) -> Any:
    """The headline: per task, selective risk of "answer with M unless the detector flags"
    against coverage, with "always M" and "always m" (weak, student) as points at coverage
    1 (95% Wilson CIs) and the oracle abstention as a lower bound."""
    plt = _pyplot()
    with plt.rc_context(PAPER_STYLE):
        # With fewer than three panels the legend goes to the right in one column: under one
        # narrow panel, four columns of it made the saved image wide and the plot tiny.
        side = len(runs) < 3
        legend_width = 1.9 if side else 0.0
        width = 2.5 * len(runs) + 0.4 + legend_width
        figure, axes = plt.subplots(1, len(runs), figsize=(width, 3.3), squeeze=False, sharex=True)
        for ax, results in zip(axes[0], runs, strict=True):
            section = results.coverage_risk
            if not section:
                ax.text(0.5, 0.5, "no harm labels\n(run with --depth)", ha="center", va="center")
                continue
            oracle = section["oracle"]
            ax.plot(
                oracle["coverage"],
                oracle["risk"],
                color="#999999",
                lw=0.8,
                ls=":",
                label="oracle abstention",
            )
            for name in detectors:
                if name not in section["curves"]:
                    continue
                curve = section["curves"][name]
                supervised = results.detectors[name]["supervised"]
                ax.plot(
                    curve["coverage"], curve["risk"], color=DETECTOR_COLORS.get(name, "#444444"),
                    lw=1.0, ls="--" if supervised else "-",
                    label=f"M, abstain by {name}" + (" (supervised)" if supervised else ""),
                )  # fmt: skip
            for offset, (answerer, marker, color, label) in enumerate(
                (("network", "*", "black", "always M"),
                 ("weak", "s", DETECTOR_COLORS["weak-kl"], "always m = weak"),
                 ("student", "D", DETECTOR_COLORS["student-kl"], "always m = student"))
            ):  # fmt: skip
                estimate = section["always"][answerer]
                value = estimate["value"]
                ax.errorbar(
                    [1.0 + 0.012 * offset], [value],
                    yerr=[[value - estimate["low"]], [estimate["high"] - value]],
                    color=color, marker=marker, ms=4, capsize=2, ls="none", label=label,
                )  # fmt: skip
            ax.set_xlim(0.5, 1.04)
            ax.set_ylim(bottom=0)
            ax.set_xlabel("coverage (share answered)")
            ax.spines[["top", "right"]].set_visible(False)
            test = results.test
            ax.set_title(
                f"{TASK_TITLES.get(results.task, results.task)}\nM = "
                f"{_network_name(results)}; n={test['positions']}, {test['anomalous']} anomalous",
                fontsize=6.5,
            )
        axes[0][0].set_ylabel("risk: blunders among answered")
        handles, labels = axes[0][0].get_legend_handles_labels()
        harm = runs[0].coverage_risk or {}
        text = (
            "Distillation versus MAD: answer with M unless the detector flags (layer-mean score), "
            f"or always answer with m. Harm: {harm.get('harm', '')}"
        )
        # About 18 characters of 6.5-point text per inch (150 for the three-task figure).
        figure.suptitle(
            "\n".join(textwrap.wrap(text, int(18 * width) if side else 150)), fontsize=6.5
        )
        if side:
            right = 1 - legend_width / width
            figure.legend(handles, labels, loc="center left", ncol=1, frameon=False, fontsize=6,
                          bbox_to_anchor=(right, 0.45))  # fmt: skip
            figure.tight_layout(rect=(0, 0, right, 1))  # it leaves room for the suptitle
        else:
            figure.legend(handles, labels, loc="lower center", ncol=4, frameon=False, fontsize=6,
                          bbox_to_anchor=(0.5, -0.02))  # fmt: skip
            figure.tight_layout(rect=(0, 0.16, 1, 0.93))
    return figure


def plot_anomaly_runs(runs: Sequence[AnomalyRun], out: str | os.PathLike[str]) -> list[Path]:
    """Every figure for the given (loaded) runs: per run AUROC-by-layer and histograms,
    and one coverage–risk figure over all runs."""
    if not runs:
        raise LeelaLabError("give at least one anomaly run directory")
    plt = _pyplot()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for run in runs:
        stem = f"{run.results.task}_{run.name}"
        for figure, name in (
            (auroc_figure(run.results), "auroc"),
            (histogram_figure(run.results, run.scores), "histograms"),
        ):
            paths += save_figure(figure, out / f"anomaly_{name}_{stem}")
            plt.close(figure)
    figure = coverage_risk_figure([run.results for run in runs])
    paths += save_figure(figure, out / "anomaly_coverage_risk")
    plt.close(figure)
    return paths


__all__ = [
    "auroc_figure",
    "coverage_risk_figure",
    "histogram_figure",
    "plot_anomaly_runs",
]
