"""The committed figures that can be redrawn from committed files are current: each is drawn
again into a temporary folder, as `scripts/regenerate_figures.sh committed` draws it, and
compared pixel by pixel with the committed PNG.

Covered: figures/lab-t6-128/training and probe_accuracy; anomaly/figures/
anomaly_coverage_risk and anomaly_auroc_{backdoor,mechanism,ood}. Not covered (their inputs
are run outputs that are not committed; `regenerate_figures.sh runs` or `expensive` redraws
them): figures/analyses/*, the patching, head, lens, refutation, future-board and steering
figures of figures/lab-t6-128, and the anomaly score histograms (they need scores.h5)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="needs the viz extra")

import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from leelalab.anomaly.results import AnomalyResults  # noqa: E402
from leelalab.plots.boards import save_figure  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 16 / 255
"""A pixel channel counts as different beyond this (anti-aliasing may differ a little)."""
MAX_DIFFERENT = 0.002
"""At most this share of channels may differ: a changed colour, label or line exceeds it."""


def _training(out: Path) -> Path:
    from leelalab.plots.training import training_figure
    from leelalab.training.records import load_training_run

    run = load_training_run("lab-t6-128")
    save_figure(training_figure(run, title=""), out / "training.pdf")
    return out / "training.png"


def _probes(out: Path) -> Path:
    from leelalab.plots.probes import plot_probe_results
    from leelalab.probing.probes import ProbeResults

    names = ("lab-t6-128-move3-target", "lab-t6-128-random-init-move3-target")
    plot_probe_results([ProbeResults.load(REPO / "probes" / name) for name in names], out)
    return out / "probe_accuracy.png"


def _anomaly_runs() -> list[AnomalyResults]:
    tasks = ("backdoor", "mechanism", "ood")
    return [AnomalyResults.load(REPO / "anomaly" / f"maia-1900-{task}") for task in tasks]


def _coverage_risk(out: Path) -> Path:
    from leelalab.plots.anomaly import coverage_risk_figure

    save_figure(coverage_risk_figure(_anomaly_runs()), out / "anomaly_coverage_risk")
    return out / "anomaly_coverage_risk.png"


def _auroc(task: str) -> Callable[[Path], Path]:
    def draw(out: Path) -> Path:
        from leelalab.plots.anomaly import auroc_figure

        (results,) = [r for r in _anomaly_runs() if r.task == task]
        name = f"anomaly_auroc_{task}_{task}"
        save_figure(auroc_figure(results), out / name)
        return out / f"{name}.png"

    return draw


FIGURES = {
    "figures/lab-t6-128/training.png": _training,
    "figures/lab-t6-128/probe_accuracy.png": _probes,
    "anomaly/figures/anomaly_coverage_risk.png": _coverage_risk,
    **{
        f"anomaly/figures/anomaly_auroc_{t}_{t}.png": _auroc(t)
        for t in ("backdoor", "mechanism", "ood")
    },
}


@pytest.mark.parametrize("committed", sorted(FIGURES))
def test_committed_figure_is_current(committed: str, tmp_path: Path) -> None:
    drawn = FIGURES[committed](tmp_path)
    plt.close("all")
    new = np.asarray(Image.open(drawn).convert("RGB"), dtype=float) / 255
    old = np.asarray(Image.open(REPO / committed).convert("RGB"), dtype=float) / 255
    hint = f"{committed} is stale: run scripts/regenerate_figures.sh committed"
    assert new.shape == old.shape, hint
    assert np.mean(np.abs(new - old) > TOLERANCE) <= MAX_DIFFERENT, hint
