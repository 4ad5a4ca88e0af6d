"""The coverage–risk figure from the committed anomaly results (anomaly/*/results.json)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="needs the viz extra")

import matplotlib.pyplot as plt  # noqa: E402

from leelalab.anomaly.results import AnomalyResults  # noqa: E402
from leelalab.plots.anomaly import coverage_risk_figure  # noqa: E402

RUNS = Path(__file__).resolve().parents[2] / "anomaly"


def _plot_share(figure) -> float:
    """The panels' share of the saved (tight) image's area."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    whole = figure.get_tightbbox(renderer)  # inches, what savefig(bbox="tight") keeps
    panels = sum(ax.get_window_extent(renderer).width * ax.get_window_extent(renderer).height
                 for ax in figure.axes)  # fmt: skip
    return panels / (whole.width * whole.height * figure.dpi**2)


@pytest.mark.parametrize("tasks", [["backdoor"], ["backdoor", "ood"]])
def test_coverage_risk_with_few_runs_keeps_a_large_plot_area(tasks: list[str]) -> None:
    """With one run the four-column legend made the image 3× as wide as its one panel."""
    runs = [AnomalyResults.load(RUNS / f"maia-1900-{task}") for task in tasks]
    figure = coverage_risk_figure(runs)
    assert _plot_share(figure) > 0.27  # before: 0.12 (one run), 0.23 (two)
    legend_texts = [t.get_text() for t in figure.legends[0].get_texts()]
    assert "always M" in legend_texts and "oracle abstention" in legend_texts
    plt.close(figure)


def test_coverage_risk_with_three_runs_keeps_its_legend_below() -> None:
    runs = [
        AnomalyResults.load(RUNS / f"maia-1900-{task}") for task in ("backdoor", "mechanism", "ood")
    ]
    figure = coverage_risk_figure(runs)
    assert figure.legends[0]._ncols == 4
    assert _plot_share(figure) > 0.27  # before: 0.12 (one run), 0.23 (two)
    plt.close(figure)
