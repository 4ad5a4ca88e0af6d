"""``leelalab analyze …`` and ``leelalab plot analyses`` end to end (small synthetic runs)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from leelalab.cli import main
from leelalab.cli.analyses import analyze_commands
from leelalab.inference.networks import load_network
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.puzzles.filter import Thresholds, filter_puzzles
from leelalab.puzzles.reader import shipped_puzzles_path

ZERO_WIDTH = re.compile(r"(-?\d+\.\d+) \[\1, \1\]")
"""An interval of no width, as a table would print it (never to be printed)."""


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
    from leelalab.analyses.predictions import PredictionResults

    assert main(["analyze", "predictions", str(run), "--output", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert "4b" in out and "not measured" in out  # no patching given: prediction 1
    assert not ZERO_WIDTH.search(out), out
    rows = PredictionResults.load(tmp_path / "p").rows
    assert [row.key for row in rows][-4:] == ["2", "3", "4a", "4b"]
    assert "| 4a |" in (tmp_path / "p" / "predictions.md").read_text()
    record = json.loads((tmp_path / "p" / "run.json").read_text())
    assert record["seed"] == 0 and set(record["outputs"]) >= {"predictions.json", "predictions.md"}


def test_themes_writes_a_directory(run, tmp_path, capsys) -> None:
    from leelalab.analyses.themes import ThemeResults

    output = tmp_path / "themes"
    assert main(["analyze", "themes", str(run), "--min-puzzles", "5", "--output", str(output)]) == 0
    assert "slope of residual accuracy" in capsys.readouterr().out
    analyses = ThemeResults.load(output).analyses
    assert [a.network for a in analyses] == ["strong", "weak"] and analyses[0].rows
    assert json.loads((output / "run.json").read_text())["min_puzzles"] == 5


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


# ----------------------------------------------------------------------------- issue 20

ANALYZE = ("strata-patching", "predictions", "coupling", "search", "themes")


@pytest.fixture(scope="module")
def empty_run(run, tmp_path_factory) -> Path:
    """A filter run of a Lichess CSV that holds only its header: a dataset of no puzzle."""
    folder = tmp_path_factory.mktemp("empty")
    header = shipped_puzzles_path().read_text(encoding="utf-8").splitlines()[0]
    (folder / "header.csv").write_text(header + "\n", encoding="utf-8")
    networks = run.parent
    filter_puzzles(
        load_network(networks / "s.pb.gz"),
        load_network(networks / "w.pb.gz"),
        folder / "header.csv",
        folder / "data",
        progress=False,
    )
    return folder / "data"


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    error = captured.err.strip()
    assert error.count("\n") == 0, error
    assert "Traceback" not in error and "internal error" not in error, error
    return error


def _options(command: str) -> list[str]:
    """Options that keep each command small (networks come from the filter run)."""
    return {
        "strata-patching": ["--unfiltered", "2"],
        "coupling": ["--depth", "1", "--sample", "2"],
        "search": ["--nodes", "1", "--per-cell", "1", "--workers", "1"],
    }.get(command, [])


@pytest.mark.parametrize("command", ANALYZE)
def test_an_empty_dataset_is_a_one_line_error(command, empty_run, tmp_path, capsys) -> None:
    args = ["analyze", command, str(empty_run), "--output", str(tmp_path / "out")]
    assert main([*args, *_options(command)]) == 1
    error = _one_line_error(capsys)
    assert str(empty_run) in error and ("no puzzle" in error or "neither stratum" in error)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ANALYZE)
def test_a_wrong_kind_of_directory_is_a_one_line_error(command, run, tmp_path, capsys) -> None:
    wrong = tmp_path / "predictions"
    assert main(["analyze", "predictions", str(run), "--output", str(wrong)]) == 0
    capsys.readouterr()
    args = ["analyze", command, str(wrong), "--output", str(tmp_path / "out")]
    assert main([*args, *_options(command)]) == 1
    assert str(wrong) in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def _previous_output(folder: Path) -> dict[str, bytes]:
    """An earlier leelalab output holding a user's notes; returns every file's bytes."""
    folder.mkdir()
    (folder / "settings.json").write_text("{}")
    (folder / "results.json").write_text("{}")
    (folder / "run.json").write_text(json.dumps({"outputs": ["results.json"]}))
    (folder / "notes.txt").write_text("my notes")
    return {path.name: path.read_bytes() for path in folder.iterdir()}


@pytest.mark.parametrize("command", ANALYZE)
def test_an_invalid_input_never_touches_the_output(command, tmp_path, capsys) -> None:
    before = _previous_output(tmp_path / "out")
    missing = tmp_path / "no-such-run"
    args = ["analyze", command, str(missing), "--output", str(tmp_path / "out"), "--overwrite"]
    assert main([*args, *_options(command)]) == 1
    _one_line_error(capsys)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before


@pytest.mark.parametrize("command", ("predictions", "themes", "strata-patching", "coupling"))
def test_overwrite_keeps_a_users_file(command, run, plain_patching, tmp_path, capsys) -> None:
    from leelalab.engines import EngineNotFoundError, find_stockfish

    if command == "strata-patching":
        run = plain_patching[0]  # the random networks need its corruptions (loose thresholds)

    if command == "coupling":
        try:
            find_stockfish()
        except EngineNotFoundError:
            pytest.skip("Stockfish is not installed")
    output = tmp_path / "out"
    args = ["analyze", command, str(run), "--output", str(output), *_options(command)]
    progress = ["--no-progress"] if command in ("strata-patching", "coupling") else []
    assert main([*args, *progress]) == 0
    capsys.readouterr()
    (output / "notes.txt").write_text("my notes")
    assert main([*args, *progress, "--seed", "1"]) == 1  # other settings: refused
    assert "--overwrite" in _one_line_error(capsys)
    assert main([*args, *progress, "--seed", "1", "--overwrite"]) == 0
    assert (output / "notes.txt").read_text() == "my notes"
    assert json.loads((output / "run.json").read_text())["seed"] == 1


def test_out_of_range_settings_are_refused_before_work(run, tmp_path, capsys) -> None:
    output = tmp_path / "out"
    args = ["analyze", "coupling", str(run), "--output", str(output), "--threshold", "3"]
    assert main(args) == 1
    assert "--threshold must be at most 1.0" in _one_line_error(capsys)
    assert main(["analyze", "predictions", str(run), "--seed", "-1"]) == 1
    assert "--seed must be at least 0" in _one_line_error(capsys)
    assert not output.exists()


@pytest.fixture(scope="module")
def plain_patching(run, tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the filter run with corruptions, and a plain `patch residual` run of it
    (the paper's selection only)."""
    import math
    import shutil

    from leelalab.patching.residual import run_residual_patching
    from leelalab.puzzles.corruptions import CorruptionThresholds
    from leelalab.puzzles.filter import corrupt_dataset

    folder = tmp_path_factory.mktemp("plain")
    data = Path(shutil.copytree(run, folder / "data"))
    strong, weak = load_network(run.parent / "s.pb.gz"), load_network(run.parent / "w.pb.gz")
    anything = CorruptionThresholds(
        weak_log_odds_change=math.inf,
        strong_q_drop=-math.inf,
        strong_max_prob=2.0,
        max_jsd=math.inf,
    )
    corrupt_dataset(data, strong, weak, anything, progress=False)
    run_residual_patching(strong, data, folder / "patching", progress=False)
    return data, folder / "patching"


def test_a_plain_patching_run_is_not_compared_with_itself(plain_patching, capsys) -> None:
    data, patching = plain_patching
    assert main(["analyze", "predictions", str(data), "--patching", str(patching)]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("1 ")]
    assert len(lines) == 3 and all("not comparable" in line for line in lines), out
    assert "0.000 [0.000, 0.000]" not in out and not ZERO_WIDTH.search(out)
    assert "1st-move target effect" in out and "target_1" not in out


def test_an_activation_store_as_patching_results_is_one_line(run, tmp_path, capsys) -> None:
    from leelalab.probing.store import cache_activations

    store = cache_activations(
        load_network(run.parent / "s.pb.gz"),
        run,
        ["blocks.0.hook_resid_post"],
        tmp_path / "store.h5",
        limit=4,
        progress=False,
    )
    assert main(["analyze", "predictions", str(run), "--patching", str(store)]) == 1
    error = _one_line_error(capsys)
    assert str(store) in error and "strata-patching" in error
    assert main(["analyze", "predictions", str(run), "--patching", str(tmp_path)]) == 1
    assert "no patching.h5" in _one_line_error(capsys)


def test_plot_analyses_reads_its_inputs_before_making_the_output(empty_run, tmp_path, capsys):
    figures = tmp_path / "figures"
    assert main(["plot", "analyses", "--dataset", str(empty_run), "--output", str(figures)]) == 1
    assert str(empty_run) in _one_line_error(capsys)
    assert not figures.exists()


def test_plot_analyses_draws_a_strata_patching_output(plain_patching, tmp_path, capsys) -> None:
    data, _ = plain_patching
    patching = tmp_path / "strata"
    args = ["analyze", "strata-patching", str(data), "--output", str(patching)]
    assert main([*args, "--unfiltered", "3", "--no-progress"]) == 0
    figures = tmp_path / "figures"
    args = ["plot", "analyses", "--dataset", str(data), "--patching", str(patching)]
    assert main([*args, "--output", str(figures)]) == 0
    assert (figures / "strata_patching.png").is_file() and (figures / "predictions.png").is_file()
    assert main(["analyze", "predictions", str(data), "--patching", str(patching)]) == 0
    assert "1st-move target effect" in capsys.readouterr().out


def test_the_analyze_group_points_to_its_figures(capsys) -> None:
    assert main(["analyze"]) == 0
    assert "leelalab plot analyses" in capsys.readouterr().out


def test_search_says_too_few_instead_of_a_matching_budget(tmp_path, capsys) -> None:
    import numpy as np

    from leelalab.analyses.search import BudgetResults
    from leelalab.cli.analyses import _print_search
    from leelalab.runs.results import write_h5_atomically

    line = "h7h6 b1b3 g8h7 b3f7"
    arrays = {
        "puzzle_ids": ["a", "b"],
        "fen": ["6k1/5ppp/8/8/8/8/5PPP/1Q4K1 b - - 0 1"] * 2,
        "line": [line, line],
        "rating": np.array([1200, 1800], dtype=np.int32),
        "solver_moves": np.array([2, 2], dtype=np.int16),
        "weight": np.array([1.0, 1.0]),
        "cell": np.array([5, 6], dtype=np.int16),
    }
    for network in ("strong", "weak"):
        for budget in ("policy", "n1"):
            arrays[f"moves_{network}_{budget}"] = ["b1b3 b3f7", "b1b3 b3f7"]
    attrs = {
        "format": "leelalab.search-budgets/1",
        "networks": '["strong", "weak"]',
        "nodes": "[1]",
        "population": 2,
    }
    write_h5_atomically(tmp_path / "search.h5", arrays, attrs)
    _print_search(BudgetResults.load(tmp_path))
    out = capsys.readouterr().out
    assert "too few puzzles (n=2)" in out and "matches strong alone at" not in out
    # Both puzzles solved: a Wilson interval at the sample's effective size (not zero-width).
    assert "1.000 [0.342, 1.000]" in out and not ZERO_WIDTH.search(out)
