"""The budget-curve and coupling figures build from small synthetic results."""

from __future__ import annotations

import numpy as np

from leelalab.analyses.coupling import POINTS, CouplingTable
from leelalab.analyses.predictions import MoveLift
from leelalab.analyses.search import POLICY, BudgetResults, cell_of
from leelalab.plots.analyses import (
    accuracy_curves,
    coupling_bars,
    move_lift_figure,
    search_gain_figure,
    stratum_budget_figure,
)
from leelalab.plots.boards import save_figure
from leelalab.stats import Estimate, proportion_ci


def _budget_results() -> BudgetResults:
    rng = np.random.default_rng(0)
    n = 80
    solver_moves = rng.integers(1, 7, n)
    rating = rng.integers(500, 2600, n)
    cells = np.array(
        [
            cell_of({"moves": ["x"] * (2 * m), "rating": r})
            for m, r in zip(solver_moves, rating, strict=True)
        ]
    )
    arrays = {
        "puzzle_ids": np.array([f"p{i}" for i in range(n)], dtype=object),
        "solver_moves": solver_moves,
        "rating": rating,
        "weight": np.full(n, 10.0),
        "cell": cells,
    }
    nodes = [1, 8, 64]
    solved, first = {}, {}
    for network, base in (("strong", 0.4), ("weak", 0.1)):
        for budget in [POLICY, *nodes]:
            rate = base + (0 if budget == POLICY else 0.1 * np.log2(budget) / 6)
            solved[network, budget] = rng.random(n) < rate - 0.05 * (solver_moves - 1)
            first[network, budget] = solved[network, budget]
    return BudgetResults(arrays, ["strong", "weak"], nodes, 800, solved, first)


def test_search_figures(tmp_path) -> None:
    results = _budget_results()
    for by in ("depth", "rating"):
        paths = save_figure(accuracy_curves(results, by=by, title="t"), tmp_path / f"a_{by}.pdf")
        assert all(path.stat().st_size > 0 for path in paths)
    assert save_figure(search_gain_figure(results, title="t"), tmp_path / "gain.pdf")


def test_coupling_figure(tmp_path) -> None:
    nan = Estimate(float("nan"), float("nan"), float("nan"), 0)
    tables = []
    for name, p in (
        ("structural", 0.3),
        ("paper", 0.5),
        ("unfiltered", 0.4),
        ("weak-solved", 0.45),
    ):
        estimate = proportion_ci(int(p * 100), 100)
        odds = Estimate(2.0, 1.2, 3.1, 100)
        tables.append(
            CouplingTable(
                name,
                100,
                {point: Estimate(0.1, 0.0, 0.2, 100) for point in POINTS},
                {point: estimate for point in POINTS},
                {
                    "table": np.eye(2),
                    "odds_ratio": nan if name == "paper" else odds,
                    "phi": nan,
                    "n": 100,
                },
                {point: {"odds_ratio": odds} for point in POINTS},
            )
        )
    paths = save_figure(coupling_bars(tables, title="t"), tmp_path / "coupling.pdf")
    assert all(path.stat().st_size > 0 for path in paths)


def test_move_lift_figure(tmp_path) -> None:
    lifts = [
        MoveLift(
            network,
            k,
            proportion_ci(30, 50),
            proportion_ci(40, 100),
            Estimate(0.2 - 0.05 * k, 0.1 - 0.05 * k, 0.3 - 0.05 * k, 100),
        )
        for network in ("strong", "weak")
        for k in (2, 3, 4)
    ]
    figure = move_lift_figure(lifts, title="maia-1900 vs weak-maia-1900")
    left, right = figure.axes
    assert [t.get_text() for t in right.get_xticklabels()] == ["2\nn=100", "3\nn=100", "4\nn=100"]
    assert "maia-1900" in figure._suptitle.get_text()
    assert len(left.get_legend().get_texts()) == 4  # conditional and overall, per network
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["strong", "weak"]
    written = save_figure(figure, tmp_path / "move_lift.pdf")
    assert {path.suffix for path in written} == {".pdf", ".png"}


def test_stratum_budget_figure(tmp_path) -> None:
    results = _budget_results()
    figure = stratum_budget_figure(
        {"paper": results, "weak-solved": results}, whole=results, title="maia-1900"
    )
    strong, weak = figure.axes
    assert strong.get_shared_y_axes().joined(strong, weak)
    assert "strong" in strong.get_title() and "weak" in weak.get_title()
    (legend,) = figure.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[0].startswith("all puzzles") and any("paper" in label for label in labels)
    assert len(labels) == 3 and all("n=" in label for label in labels)
    assert [t.get_text() for t in strong.get_xticklabels()] == ["1", "8", "64"]
    written = save_figure(figure, tmp_path / "search_by_stratum.pdf")
    assert {path.suffix for path in written} == {".pdf", ".png"}
