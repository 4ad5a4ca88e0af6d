"""Inside-the-network figures from small synthetic summaries: one colour per network in the
refutation figure, a fitted colour scale and honest seed counts in the future-board figure."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib", reason="needs the viz extra")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from leelalab.analyses.lens_analysis import LensSummary  # noqa: E402
from leelalab.analyses.refutation import RefutationMeasure  # noqa: E402
from leelalab.analyses.steering import SteeringSummary  # noqa: E402
from leelalab.plots import inside  # noqa: E402
from leelalab.probing.concepts import ConceptResults  # noqa: E402


def _estimate(value: float) -> dict[str, float]:
    return {"value": value, "low": value - 0.1, "high": value + 0.1, "n": 50}


def _refutation_measure() -> RefutationMeasure:
    depths = ["1", "3", "5"]
    networks = {
        label: {
            "network": f"/w/{name}.pb.gz",
            "depths": {
                k: {
                    "paired": {
                        "n": 50,
                        "refutation": _estimate(0.5 * scale),
                        "control": _estimate(0.2 * scale),
                        "refutation_minus_control": _estimate(0.3 * scale),
                    }
                }
                for k in depths
            },
        }
        for label, name, scale in (("strong", "maia-1900", 2), ("weak", "weak-maia-1900", 1))
    }
    return RefutationMeasure(puzzles=400, depths=depths, networks=networks, search={})


def _colours(ax) -> dict[str, set[str]]:
    """Legend label → colours of the data lines with that label."""
    found: dict[str, set[str]] = {}
    for container in ax.containers:
        line = container.lines[0]
        found.setdefault(container.get_label(), set()).add(to_hex(line.get_color()))
    return found


def test_refutation_figure_gives_each_network_one_colour_in_both_panels() -> None:
    """Orange used to mean 'refutation' on the left and 'weak network' on the right."""
    figure = inside.refutation_figure(
        _refutation_measure(), stratum="unfiltered", limit="10000 nodes"
    )
    drop, diff = figure.axes
    meaning: dict[str, str] = {}
    for ax in (drop, diff):
        for label, colours in _colours(ax).items():
            network = label.split(" ")[0]
            for colour in colours:
                assert meaning.setdefault(colour, network) == network, (colour, label)
    assert set(meaning.values()) == {"strong", "weak"}
    texts = [t.get_text() for t in drop.get_legend().get_texts()]
    assert any("refutations" in t and "solid" in t for t in texts)
    assert any("controls" in t and "dashed" in t for t in texts)
    assert diff.get_legend() is not None
    plt.close(figure)


def _future_board_results(seeds: list[int], top: float) -> ConceptResults:
    hooks = ["input.hook_out", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]

    def scores(value: float) -> dict:
        return {"arrival_accuracy": {"mean": value, "std": 0.01}}

    results = [
        {
            "hook": hook,
            "targets": {
                **{
                    f"board_ply{k}": {
                        "scores": scores(top * (j + 1) / len(hooks) / k),
                        "control": scores(0.01),
                    }
                    for k in (1, 2)
                },
                "material": {"scores": {"r2": {"mean": 0.5, "std": 0.02}}},
            },
        }
        for j, hook in enumerate(hooks)
    ]
    return ConceptResults(
        store="/s",
        network="/w/lab-t6-128.pb.gz",
        random_init=None,
        puzzles=4935,
        config={"horizons": [0, 1, 2], "seeds": seeds},
        classes=[],
        results=results,
    )


def test_future_board_scale_fits_the_values_and_is_stated() -> None:
    figure = inside.future_board_figure(_future_board_results([0, 1], 0.42))
    images = [image for ax in figure.axes for image in ax.images]
    assert images and all(image.norm.vmax == pytest.approx(0.45) for image in images)
    label = " ".join(ax.get_ylabel() for ax in figure.axes)
    assert "0 to 0.45" in label
    assert "mean of 2 seeds" in figure._suptitle.get_text()
    plt.close(figure)


def test_future_board_with_one_seed_says_so() -> None:
    figure = inside.future_board_figure(_future_board_results([0], 0.9))
    title = figure._suptitle.get_text()
    assert "1 seed, no spread" in title and "seeds" not in title
    concept = figure.axes[-1]
    assert concept.containers and all(not c.has_yerr for c in concept.containers)
    plt.close(figure)


@pytest.mark.parametrize(
    ("top", "expected"), [(0.001, 0.05), (0.42, 0.45), (0.45, 0.45), (0.97, 1.0)]
)
def test_arrival_scale_top(top: float, expected: float) -> None:
    import numpy as np

    assert inside.arrival_scale_top([np.array([[0.0, top]])]) == pytest.approx(expected)


def _lens_summary() -> LensSummary:
    layers = [-1, 0, 1]
    per_layer = [_estimate(0.5) for _ in layers]
    groups = {
        group: {
            "n": 40,
            "kl_by_layer": per_layer,
            "top1_by_layer": per_layer,
            "found_then_lost": _estimate(0.2),
            "forgotten": _estimate(0.1),
        }
        for group in ("all", "paper", "unfiltered", "weak-solved", "strong-missed")
    }
    by_length = {"2": {"n": 10, "emergence_layer_mean": _estimate(0.5)}}
    kind = {"groups": groups, "unfiltered_by_line_length": by_length}
    return LensSummary(layers=layers, n_puzzles=40, logit=kind, tuned=kind)


def test_lens_layers_colours_mean_puzzle_groups_only() -> None:
    """Blue meant 'logit lens' in the KL panel and 'unfiltered' in the top-1 panel."""
    figures = inside.lens_figures(_lens_summary(), network="/w/lab-t6-128.pb.gz")
    figure = figures["lens_layers"]
    kl_ax, top_ax = figure.axes[:2]
    kl_colours = {to_hex(c.lines[0].get_color()) for c in kl_ax.containers}
    assert kl_colours == {"#000000"}
    styles = {c.get_label(): c.lines[0].get_linestyle() for c in kl_ax.containers}
    assert styles["logit lens (n=40)"] != styles["tuned lens (n=40)"]
    top_colours = {to_hex(c.lines[0].get_color()) for c in top_ax.containers}
    assert top_colours == {
        to_hex(inside.GROUP_COLORS[g])
        for g in ("paper", "unfiltered", "weak-solved", "strong-missed")
    }
    plt.close("all")


def test_steering_legend_sits_under_the_panels() -> None:
    """The legend sat in the first panel, over the dots at 1.0."""
    rows = [
        {
            "scale": scale,
            "layer": layer,
            "probe_success": _estimate(0.3),
            "random_success": _estimate(0.3),
            "probe_predicts_target": _estimate(0.9),
        }
        for scale in (1.0, 4.0)
        for layer in (0, 1)
    ]
    config = {"scales": [1.0, 4.0], "layers": [0, 1]}
    summary = SteeringSummary(puzzles=300, targets=599, config=config, rows=rows)
    figure = inside.steering_figure(summary, network="/w/lab-t6-128.pb.gz")
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    (legend,) = figure.legends
    assert len(legend.get_texts()) == 3
    box = legend.get_window_extent(renderer)
    assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in figure.axes)
    assert "lab-t6-128" in figure._suptitle.get_text()
    plt.close(figure)
