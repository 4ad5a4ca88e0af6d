"""``leelalab analyze …`` and ``leelalab plot analyses`` end to end (small synthetic runs)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from leelalab.cli import main
from leelalab.cli.analyses import analyze_commands
from leelalab.inference.networks import load_network
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.puzzles.filter import Thresholds, filter_puzzles
from leelalab.puzzles.reader import shipped_puzzles_path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    strong = save_weights(random_resnet_weights(blocks=1, filters=8, seed=11), folder / "s.pb.gz")
    weak = save_weights(random_resnet_weights(blocks=1, filters=8, seed=12), folder / "w.pb.gz")
    filter_puzzles(
        load_network(strong),
        load_network(weak),
        shipped_puzzles_path(),
        folder / "data",
        limit=200,
        thresholds=Thresholds(hard=1.0, correct=0.1, forcing=0.0),
        progress=False,
    )
    return folder / "data"


def test_the_analyze_group_lists_its_commands_and_is_shared(capsys) -> None:
    assert main(["analyze"]) == 0
    text = capsys.readouterr().out
    for name in ("predictions", "strata-patching", "coupling", "search", "themes"):
        assert name in text
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    group = analyze_commands(commands)
    assert analyze_commands(commands) is group  # another module adds to the same group
    group.add_parser("extra")
    assert parser.parse_args(["analyze", "extra"]) is not None


def test_predictions_prints_and_writes_the_table(run, tmp_path, capsys) -> None:
    assert main(["analyze", "predictions", str(run), "--output", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert "4b" in out and "not measured" in out  # no patching given: prediction 1
    rows = json.loads((tmp_path / "p.json").read_text())
    assert [row["key"] for row in rows][-4:] == ["2", "3", "4a", "4b"]
    assert "| 4a |" in (tmp_path / "p.md").read_text()


def test_themes_writes_json(run, tmp_path, capsys) -> None:
    output = tmp_path / "themes.json"
    assert main(["analyze", "themes", str(run), "--min-puzzles", "5", "--output", str(output)]) == 0
    assert "slope of residual accuracy" in capsys.readouterr().out
    analyses = json.loads(output.read_text())
    assert [a["network"] for a in analyses] == ["strong", "weak"] and analyses[0]["themes"]


def test_a_missing_lc0_is_one_clear_line(run, tmp_path, capsys) -> None:
    code = main(
        [
            "analyze",
            "search",
            str(run),
            "--output",
            str(tmp_path / "s"),
            "--lc0",
            str(tmp_path / "no-lc0"),
        ]
    )
    error = capsys.readouterr().err.strip()
    assert code == 1 and error.count("\n") == 0 and "no lc0 executable" in error


def test_plot_analyses_writes_pdf_and_png(run, tmp_path) -> None:
    assert main(["plot", "analyses", "--dataset", str(run), "--output", str(tmp_path)]) == 0
    for name in ("predictions", "themes", "move_lift"):
        assert (tmp_path / f"{name}.pdf").is_file() and (tmp_path / f"{name}.png").is_file()
    assert main(["plot", "analyses", "--output", str(tmp_path)]) == 1  # nothing to plot


def test_stratum_search_plots_refuse_other_directories(run, tmp_path, capsys) -> None:
    out = tmp_path / "figures"
    assert main(["plot", "analyses", "--stratum-search", str(tmp_path), "--output", str(out)]) == 1
    assert "not an `analyze search` output directory" in capsys.readouterr().err
    (tmp_path / "settings.json").write_text(json.dumps({"experiment": "search_budgets"}))
    assert main(["plot", "analyses", "--stratum-search", str(tmp_path), "--output", str(out)]) == 1
    assert "not an `analyze search --stratum` run" in capsys.readouterr().err
