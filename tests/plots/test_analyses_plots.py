"""The budget-curve and coupling figures build from small synthetic results."""

from __future__ import annotations

import numpy as np
import pytest

from leelalab.analyses.coupling import POINTS, CouplingTable
from leelalab.analyses.predictions import MoveLift, Prediction
from leelalab.analyses.search import POLICY, BudgetResults, cell_of
from leelalab.plots.analyses import (
    accuracy_curves,
    coupling_bars,
    move_lift_figure,
    prediction_panel,
    search_gain_figure,
    strata_patching_curves,
    stratum_budget_figure,
    theme_scatter,
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


# Figure fixes (issue 20, item 6): each test fails on the figure as it was drawn before.


def _boxes_overlap(figure, artists) -> list[tuple[int, int]]:
    from matplotlib.text import Text

    renderer = figure.canvas.get_renderer()
    # Text.get_window_extent: an annotation's own box, without its leader line.
    boxes = [Text.get_window_extent(artist, renderer) for artist in artists]
    return [
        (i, j)
        for i in range(len(boxes))
        for j in range(i + 1, len(boxes))
        if boxes[i].overlaps(boxes[j])
    ]


def _coupling_tables(odds_ratios: list[Estimate]) -> list[CouplingTable]:
    tables = []
    for name, odds in zip(("structural", "paper", "unfiltered"), odds_ratios, strict=True):
        tables.append(
            CouplingTable(
                name,
                100,
                {point: Estimate(0.1, 0.0, 0.2, 100) for point in POINTS},
                {point: proportion_ci(40, 100) for point in POINTS},
                {"table": np.eye(2), "odds_ratio": odds, "phi": odds, "n": 100},
                {point: {"odds_ratio": odds} for point in POINTS},
            )
        )
    return tables


def test_coupling_clips_a_huge_interval_and_marks_it() -> None:
    import matplotlib.pyplot as plt

    huge = Estimate(7.0, 0.8, 1600.0, 20)
    figure = coupling_bars(
        _coupling_tables([Estimate(1.5, 1.3, 1.7, 100), Estimate(2.0, 1.1, 3.0, 50), huge]),
        title="maia-1900",
    )
    right = figure.axes[1]
    assert right.get_xlim() == pytest.approx((0.1, 100.0), rel=1e-9)
    arrows = [line for line in right.lines if line.get_marker() == ">"]
    assert len(arrows) == len(POINTS) + 1  # the huge interval in every odds-ratio row
    assert "clipped" in right.get_xlabel()
    figure.canvas.draw()
    ticks = [t for t in right.get_xticklabels() if t.get_visible() and t.get_text()]
    assert len(ticks) >= 5 and not _boxes_overlap(figure, ticks)
    plt.close(figure)


def test_coupling_says_nothing_of_clipping_when_nothing_is_clipped() -> None:
    import matplotlib.pyplot as plt

    odds = Estimate(2.0, 1.2, 3.1, 100)
    figure = coupling_bars(_coupling_tables([odds, odds, odds]), title="t")
    assert "clipped" not in figure.axes[1].get_xlabel()
    assert not [line for line in figure.axes[1].lines if line.get_marker() in "<>"]
    plt.close(figure)


def _relative_luminance(color) -> float:
    from matplotlib.colors import to_rgb

    channels = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in to_rgb(color)]
    return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]


def test_accuracy_curves_have_contrasting_colours_and_room_above_one() -> None:
    import matplotlib.pyplot as plt

    figure = accuracy_curves(_budget_results(), by="depth", title="maia-1900")
    for axis in figure.axes:
        assert axis.get_ylim()[1] > 1.0
        colours = [line.get_color() for line in axis.lines if len(line.get_xdata()) > 1]
        assert len(set(colours)) == len(_budget_results().nodes)
        for colour in colours:  # WCAG contrast for graphics on a white background: ≥ 3:1
            assert 1.05 / (_relative_luminance(colour) + 0.05) >= 3.0, colour
    plt.close(figure)


def test_theme_labels_do_not_overlap() -> None:
    import matplotlib.pyplot as plt

    from leelalab.analyses.themes import ThemeAnalysis, ThemeRow

    rng = np.random.default_rng(3)
    rows = [  # 30 themes crowded into a narrow band, as on the shipped sample
        ThemeRow(f"theme{i:02d}", 50, 0.05 + 0.002 * i, 0.3, Estimate(v, v - 0.03, v + 0.03, 50))
        for i, v in enumerate(rng.normal(0, 0.02, 30))
    ]
    analyses = [
        ThemeAnalysis(network, rows, Estimate(-0.1, -0.2, 0.0, 1500), 0.3, 1500)
        for network in ("strong", "weak")
    ]
    figure = theme_scatter(analyses, title="maia-1900")
    figure.canvas.draw()
    for axis in figure.axes:
        labels = [text for text in axis.texts if text.get_text().startswith("theme")]
        assert len(labels) == 30
        assert not _boxes_overlap(figure, labels)
        from matplotlib.text import Text

        renderer = figure.canvas.get_renderer()
        points = axis.transData.transform([text.xy for text in labels])
        for text in labels:  # no label covers a point
            box = Text.get_window_extent(text, renderer)
            assert not any(box.contains(x, y) for x, y in points), text.get_text()
    plt.close(figure)


def test_prediction_bars_keep_n_off_the_error_bars() -> None:
    import matplotlib.pyplot as plt

    values = {
        "paper": Estimate(0.12, 0.07, 0.18, 64),
        "unfiltered": Estimate(0.08, 0.05, 0.12, 133),
        "weak-solved": Estimate(0.06, -0.01, 0.18, 31),
    }
    rows = [Prediction("1", "c", "s", values, None, "", "not supported", "r")]
    figure = prediction_panel(rows, title="maia-1900")
    figure.canvas.draw()
    (axis,) = figure.axes
    ticks = [t.get_text() for t in axis.get_xticklabels()]
    assert ticks == ["paper\nn=64", "unfil-\ntered\nn=133", "weak-\nsolved\nn=31"]
    renderer = figure.canvas.get_renderer()
    bars = [c.get_window_extent(renderer) for c in axis.collections]  # the error bars
    for text in axis.texts:
        box = text.get_window_extent(renderer)
        assert not any(box.overlaps(bar) for bar in bars), text.get_text()
    plt.close(figure)


def test_strata_patching_with_an_empty_stratum() -> None:
    """The legend is the figure's (it used to sit on the last panel, which may be empty: no
    legend and a matplotlib warning); the empty panel says so and keeps the layer axis."""
    import types
    import warnings

    import matplotlib.pyplot as plt

    from leelalab.patching.residual import PatchingResults
    from leelalab.puzzles.dataset import SQUARE_GROUPS

    layers, puzzles = [0, 1, 2], 6
    groups = np.full((puzzles, 64), SQUARE_GROUPS.index("other"), dtype=np.int8)
    groups[:, 0] = SQUARE_GROUPS.index("corrupted")
    groups[:, 1] = SQUARE_GROUPS.index("target_1")
    groups[:3, 2] = SQUARE_GROUPS.index("target_3")
    effects = np.random.default_rng(0).normal(0, 0.1, (puzzles, len(layers), 64))
    arrays = {
        "puzzle_ids": np.array([f"p{i}" for i in range(puzzles)], dtype=object),
        "square_groups": groups,
        "log_odds": effects,
        "wl": effects,
        "kl": np.abs(effects),
        "clean_log_odds": np.full(puzzles, 3.0),
        "corrupted_log_odds": np.full(puzzles, -1.0),
    }
    results = PatchingResults(arrays, layers, "noising", "maia-1900")
    ids = [f"p{i}" for i in range(puzzles)]
    strata = {
        "paper": np.array([True, True, True, False, False, False]),
        "unfiltered": np.array([True] * puzzles),
        "weak-solved": np.zeros(puzzles, dtype=bool),  # empty
    }
    table = types.SimpleNamespace(ids=ids, strata=strata)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figure = strata_patching_curves(results, table, title="maia-1900")
        figure.canvas.draw()
    (legend,) = figure.legends
    assert {t.get_text() for t in legend.get_texts()} == {
        "1st move target",
        "3rd move target",
        "corrupted square(s)",
        "other squares",
    }
    empty = figure.axes[2]
    assert "n=0" in empty.get_title()
    assert [t.get_text() for t in empty.texts] == ["no puzzles (n = 0)"]
    assert empty.get_xlim() == (0, 2)
    plt.close(figure)
    # With the strata-patching sample, the unfiltered stratum is its sampled puzzles only;
    # the paper's stratum is not sampled.
    figure = strata_patching_curves(results, table, title="maia-1900", sample={"p0", "p4"})
    assert "(n=3 puzzles)" in figure.axes[0].get_title()
    assert "(n=2 puzzles)" in figure.axes[1].get_title()
    plt.close(figure)


def test_strata_patching_with_one_layer_has_an_axis_of_width() -> None:
    """One patched layer gave a zero-width x-axis (a singular-transform warning)."""
    import types
    import warnings

    import matplotlib.pyplot as plt

    from leelalab.patching.residual import PatchingResults
    from leelalab.puzzles.dataset import SQUARE_GROUPS

    puzzles = 4
    groups = np.full((puzzles, 64), SQUARE_GROUPS.index("other"), dtype=np.int8)
    groups[:, 1] = SQUARE_GROUPS.index("target_1")
    effects = np.random.default_rng(1).normal(0, 0.1, (puzzles, 1, 64))
    arrays = {
        "puzzle_ids": np.array([f"p{i}" for i in range(puzzles)], dtype=object),
        "square_groups": groups,
        "log_odds": effects,
        "wl": effects,
        "kl": np.abs(effects),
        "clean_log_odds": np.full(puzzles, 3.0),
        "corrupted_log_odds": np.full(puzzles, -1.0),
    }
    results = PatchingResults(arrays, [5], "noising", "maia-1900")
    everyone = np.ones(puzzles, dtype=bool)
    strata = {"paper": everyone, "unfiltered": everyone, "weak-solved": everyone}
    table = types.SimpleNamespace(ids=[f"p{i}" for i in range(puzzles)], strata=strata)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figure = strata_patching_curves(results, table, title="maia-1900")
        figure.canvas.draw()
    assert figure.axes[0].get_xlim() == (4.5, 5.5)
    plt.close(figure)
