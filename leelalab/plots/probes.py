"""Figures of probe results: accuracy vs layer, trained vs random-init vs control task.

One colour per run (results directory); its control task (labels permuted within puzzle
types) is the dashed line of the same colour, with the same marker. Legends name the network
(a short name from the recorded source) and whether it was randomly initialised.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from leelalab.errors import LeelaLabError
from leelalab.plots.boards import PAPER_STYLE, _pyplot, network_name

if TYPE_CHECKING:  # the probes module imports torch; a figure needs only the results
    from leelalab.probing.probes import ProbeResults

PALETTE = ["#0072b2", "#999999", "#e69f00", "#009e73", "#cc79a7", "#d55e00"]
MARKERS = ["o", "s", "^", "D", "v", "P"]


def run_label(results: ProbeResults) -> str:
    """``maia-1900`` or ``maia-1900, random init (seed 0)``: the network a probe read."""
    source = str(results.network or "")
    if " (random init" in source:  # older records append this to the path
        source = source.split(" (random init", 1)[0]
    name = network_name(source or None)
    seed = results.random_init
    return f"{name}, random init (seed {seed})" if seed is not None else f"{name}, trained"


def _layers(results: ProbeResults) -> list[int]:
    return [layer if layer is not None else index for index, layer in enumerate(results.layers)]


def _shared(values: Sequence[Any]) -> Any:
    return values[0] if all(value == values[0] for value in values) else None


def accuracy_figure(runs: Sequence[ProbeResults], *, width: float = 5.2, title: str = "") -> Any:
    """Test accuracy vs layer, mean ± std over seeds, one colour per results (probe run), each
    with its control task dashed, and the chance level (1/64). The x-axis holds every run's
    layers; the y-axis runs from 0 to just above the highest error bar."""
    plt = _pyplot()
    if not runs:
        raise LeelaLabError("give at least one probe results directory")
    configs = [run.config for run in runs]
    probe = _shared([config.get("probe") for config in configs])
    target = _shared([config.get("target") for config in configs])
    query = _shared([config.get("query") for config in configs])
    with plt.rc_context(PAPER_STYLE):
        figure, ax = plt.subplots(figsize=(width, width * 0.75))
        all_layers: set[int] = set()
        top = 1 / 64
        tests: set[int] = set()
        seeds: set[int] = set()
        for number, run in enumerate(runs):
            layers = _layers(run)
            all_layers.update(layers)
            rows = run.results
            tests.update(int(row["test_puzzles"]) for row in rows if "test_puzzles" in row)
            seeds.add(len(run.config.get("seeds", [])))
            color = PALETTE[number % len(PALETTE)]
            marker = MARKERS[number % len(MARKERS)]
            label = run_label(run)
            if probe is None:
                label += f" ({run.config.get('probe')})"
            if target is None or query is None:
                label += f", {run.config.get('target')} at {run.config.get('query')}"
            mean = np.array([row["accuracy_mean"] for row in rows], dtype=float)
            std = np.array([row["accuracy_std"] for row in rows], dtype=float)
            ax.errorbar(
                layers,
                mean,
                yerr=std,
                color=color,
                marker=marker,
                ms=3,
                lw=1.3,
                capsize=2,
                label=label,
            )
            top = max(top, float(np.nanmax(mean + std)))
            if rows and all(row.get("control_mean") is not None for row in rows):
                control = np.array([row["control_mean"] for row in rows], dtype=float)
                control_std = np.array([row["control_std"] for row in rows], dtype=float)
                ax.errorbar(
                    layers,
                    control,
                    yerr=control_std,
                    color=color,
                    marker=marker,
                    mfc="white",
                    ms=3,
                    ls="--",
                    lw=1,
                    capsize=2,
                    label=f"{label}: control task",
                )
                top = max(top, float(np.nanmax(control + control_std)))
        # Every probe picks one of 64 squares: the floor that the baselines are read against.
        ax.axhline(1 / 64, color="black", lw=0.6, ls=":", label="chance (1/64)")
        ax.set_xlabel("layer (residual stream after it)")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, min(1.0, top * 1.15))
        ticks = sorted(all_layers)
        ax.set_xticks(ticks, [str(tick) for tick in ticks])
        ax.spines[["top", "right"]].set_visible(False)
        what = f"{probe} probe" if probe else "probes"
        if target:
            what += f" for {target}" + (f", read at {query}" if query else "")
        n_test = f"{min(tests)}" if len(tests) == 1 else f"{min(tests)}–{max(tests)}"
        n_seeds = f"{seeds.pop()} seeds" if len(seeds) == 1 else "seeds"
        ax.set_title(
            title
            or f"{what}\n{n_test} test puzzles; mean ± std over {n_seeds}; "
            "control: labels permuted within puzzle types",
            fontsize=7,
        )
        handles, labels = ax.get_legend_handles_labels()
        chance = labels.index("chance (1/64)")  # last, after the runs
        handles.append(handles.pop(chance))
        labels.append(labels.pop(chance))
        ax.legend(
            handles,
            labels,
            frameon=False,
            fontsize=6,
            ncol=2,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.2),
        )
        figure.tight_layout()
    return figure


def plot_probe_results(runs: Sequence[ProbeResults], out: str | os.PathLike[str]) -> list[Path]:
    from leelalab.plots.boards import save_figure

    if not runs:
        raise LeelaLabError("give at least one probe results directory")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figure = accuracy_figure(runs)
    paths = save_figure(figure, out / "probe_accuracy")
    _pyplot().close(figure)
    return paths
