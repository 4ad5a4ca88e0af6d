"""Figures of probe results: accuracy vs layer, trained vs random-init vs control."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from leelalab.errors import LeelaLabError
from leelalab.plots.boards import PAPER_STYLE, _pyplot

PALETTE = ["#0072b2", "#999999", "#e69f00", "#009e73", "#cc79a7"]


def load_results(directory: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(directory) / "results.json"
    if not path.is_file():
        raise LeelaLabError(f"{directory}: no results.json (run `leelalab probe train` first)")
    return json.loads(path.read_text(encoding="utf-8"))


def _label(results: dict[str, Any], directory: Path) -> str:
    config = results["config"]
    kind = "random-init network" if results.get("random_init") is not None else "trained network"
    return f"{kind} ({config['probe']}, {directory.name})"


def accuracy_figure(
    directories: Sequence[str | os.PathLike[str]], *, width: float = 4.2, title: str = ""
) -> Any:
    """Accuracy vs layer, mean ± std over seeds, one line per results directory; the
    control task of the first directory dashed."""
    plt = _pyplot()
    with plt.rc_context(PAPER_STYLE):
        figure, ax = plt.subplots(figsize=(width, width * 0.6))
        target = None
        for number, directory in enumerate(directories):
            results = load_results(directory)
            layers = [
                layer if layer is not None else index
                for index, layer in enumerate(results["layers"])
            ]
            rows = results["results"]
            mean = np.array([r["accuracy_mean"] for r in rows])
            std = np.array([r["accuracy_std"] for r in rows])
            color = PALETTE[number % len(PALETTE)]
            ax.errorbar(
                layers,
                mean,
                yerr=std,
                color=color,
                marker="o",
                ms=3,
                lw=1.3,
                capsize=2,
                label=_label(results, Path(directory)),
            )
            if number == 0 and rows[0].get("control_mean") is not None:
                control = np.array([r["control_mean"] for r in rows])
                control_std = np.array([r["control_std"] for r in rows])
                ax.errorbar(
                    layers,
                    control,
                    yerr=control_std,
                    color=color,
                    ls="--",
                    lw=1,
                    capsize=2,
                    label="control task (labels permuted within puzzle types)",
                )
            target = results["config"]["target"]
            query = results["config"].get("query")
        # Every probe picks one of 64 squares: the floor that the baselines are read against.
        ax.axhline(1 / 64, color="black", lw=0.6, ls=":", label="chance (1/64)")
        ax.set_xlabel("layer")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, 1)
        ax.set_xticks(layers)
        ax.spines[["top", "right"]].set_visible(False)
        what = f"{target}" + (f" (query: {query})" if query else "")
        ax.set_title(title or f"probing {what}; mean ± std over seeds")
        ax.legend(frameon=False, fontsize=6)
        figure.tight_layout()
    return figure


def plot_probe_results(
    directories: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]
) -> list[Path]:
    from leelalab.plots.boards import save_figure

    if not directories:
        raise LeelaLabError("give at least one probe results directory")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figure = accuracy_figure(directories)
    paths = save_figure(figure, out / "probe_accuracy")
    _pyplot().close(figure)
    return paths
