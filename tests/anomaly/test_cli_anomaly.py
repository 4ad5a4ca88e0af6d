"""End to end on a tiny synthetic network, through the command line: build an OOD task,
run detectors (features, student, references, Stockfish harm), plot; bad input is one line."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import pytest

from leelalab.cli.main import main
from leelalab.engines import find_stockfish
from leelalab.errors import LeelaLabError
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def leelalab(*args: str, cwd: Path) -> Result:
    """The command line, in process (a subprocess per call would re-import torch)."""
    previous = Path.cwd()
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(list(args))
    finally:
        os.chdir(previous)
    return Result(code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tiny")
    save_weights(random_resnet_weights(blocks=2, filters=8, seed=1), directory / "net.pb.gz")
    save_weights(random_resnet_weights(blocks=1, filters=8, seed=2), directory / "weak.pb.gz")
    save_weights(random_resnet_weights(blocks=1, filters=8, seed=3), directory / "other.pb.gz")
    result = leelalab(
        "anomaly", "task", "ood", "--net", "net.pb.gz", "--weak", "weak.pb.gz",
        "--output", "task", "--trusted", "48", "--pool", "16", "--test", "32",
        "--per-game", "4", "--max-plies", "24", "--no-progress", cwd=directory,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return directory


def test_task_run_and_plot(tiny: Path) -> None:
    meta = json.loads((tiny / "task" / "task.json").read_text())
    assert meta["counts"]["trusted"]["anomalous"] == 0
    assert meta["counts"]["test"]["anomalous"] > 0
    assert (tiny / "task" / "run.json").is_file()
    try:
        find_stockfish()
        depth = "2"
    except LeelaLabError:
        depth = "0"
    args = [
        "anomaly", "run", "task", "--output", "run", "--detectors", "mahalanobis", "que",
        "logit-lens", "weak-kl", "student-kl", "probe", "--layers", "0", "1",
        "--student-epochs", "2", "--depth", depth, "--resamples", "50", "--no-progress",
    ]  # fmt: skip
    result = leelalab(*args, cwd=tiny)
    assert result.returncode == 0, result.stderr
    assert "mahalanobis" in result.stdout and "probe (supervised)" in result.stdout
    results = json.loads((tiny / "run" / "results.json").read_text())
    layers = results["detectors"]["mahalanobis"]["layers"]
    assert set(layers) == {"blocks.0.hook_resid_post", "blocks.1.hook_resid_post"}
    assert set(results["detectors"]["logit-lens"]["layers"]) == {"blocks.0.hook_resid_post"}
    for metric in ("auroc", "ap", "fpr95"):
        estimate = layers["blocks.0.hook_resid_post"][metric]
        assert estimate["low"] <= estimate["value"] <= estimate["high"]
    assert (tiny / "run" / "detectors" / "que" / "detector.safetensors").is_file()
    assert json.loads((tiny / "run" / "run.json").read_text())["network_sha256"]
    with h5py.File(tiny / "run" / "scores.h5") as handle:
        assert handle["labels"].shape == (results["test"]["positions"],)
    if depth != "0":
        coverage = results["coverage_risk"]
        assert set(coverage["always"]) == {"network", "weak", "student"}
        assert 0 <= coverage["abstain"]["weak-kl"]["0.9"]["value"] <= 1
    # A rerun with the same settings reuses everything; one more detector is only fitted.
    again = leelalab(*args, cwd=tiny)
    assert again.returncode == 0 and "finished" in again.stderr
    plot = leelalab("plot", "anomaly", "run", "--out", "figures", cwd=tiny)
    assert plot.returncode == 0, plot.stderr
    for stem in ("anomaly_coverage_risk", "anomaly_auroc_ood_run", "anomaly_histograms_ood_run"):
        assert (tiny / "figures" / f"{stem}.png").stat().st_size > 0
        assert (tiny / "figures" / f"{stem}.pdf").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--detectors", "mahalanobi"], "unknown detector 'mahalanobi'"),
        (["--layers", "7"], "unknown layer '7'"),
        (["--net", "other.pb.gz"], "was built for the network"),
    ],
)
def test_bad_input_is_one_line(tiny: Path, args: list[str], message: str) -> None:
    result = leelalab(
        "anomaly", "run", "task", "--output", f"bad-{abs(hash(message))}", "--depth", "0",
        "--detectors", "mahalanobis", "--no-progress", *args, cwd=tiny,
    )  # fmt: skip
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_directory_that_is_not_a_task(tiny: Path) -> None:
    result = leelalab("anomaly", "run", "weak.pb.gz", "--output", "x", cwd=tiny)
    assert result.returncode == 1 and "not an anomaly task directory" in result.stderr


def test_a_task_whose_network_file_is_gone(tiny: Path) -> None:
    shutil.copytree(tiny / "task", tiny / "task-moved")
    meta = json.loads((tiny / "task-moved" / "task.json").read_text())
    meta["network"] = "moved-away.pb.gz"
    (tiny / "task-moved" / "task.json").write_text(json.dumps(meta))
    result = leelalab("anomaly", "run", "task-moved", "--output", "y", "--no-progress", cwd=tiny)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "task-moved/task.json: the task's network moved-away.pb.gz no longer" in result.stderr
    assert "pass --net" in result.stderr and not (tiny / "y").exists()


def test_a_task_whose_weak_network_is_gone_deletes_nothing(tiny: Path) -> None:
    """The task's weak network is resolved before --overwrite replaces the previous run."""
    shutil.copytree(tiny / "task", tiny / "task-weak-moved")
    meta = json.loads((tiny / "task-weak-moved" / "task.json").read_text())
    meta["weak"] = "moved-away-weak.pb.gz"
    (tiny / "task-weak-moved" / "task.json").write_text(json.dumps(meta))
    fast = ("--layers", "0", "--depth", "0", "--resamples", "20", "--no-progress")
    first = leelalab("anomaly", "run", "task-weak-moved", "--output", "w", "--detectors",
                     "mahalanobis", *fast, cwd=tiny)  # fmt: skip
    assert first.returncode == 0, first.stderr  # no reference network needed
    before = (tiny / "w" / "results.json").read_bytes()
    result = leelalab("anomaly", "run", "task-weak-moved", "--output", "w", "--overwrite",
                      "--detectors", "weak-kl", *fast, cwd=tiny)  # fmt: skip
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "task-weak-moved/task.json: the weak network moved-away-weak.pb.gz" in result.stderr
    assert "pass --weak" in result.stderr
    assert (tiny / "w" / "results.json").read_bytes() == before


def _one_line_error(result: Result) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


FAST_RUN = ("--detectors", "mahalanobis", "--layers", "0", "--depth", "0", "--resamples", "20",
            "--no-progress")  # fmt: skip
SMALL_TASK = ("--net", "net.pb.gz", "--weak", "weak.pb.gz", "--trusted", "16", "--pool", "16",
              "--test", "16", "--per-game", "4", "--max-plies", "24", "--no-progress")  # fmt: skip


def test_overwrite_keeps_a_users_file_and_bad_input_deletes_nothing(tiny: Path) -> None:
    # A run, then a user's notes beside its files.
    first = leelalab("anomaly", "run", "task", "--output", "kept", *FAST_RUN, cwd=tiny)
    assert first.returncode == 0, first.stderr
    (tiny / "kept" / "notes.txt").write_text("mine")
    before = (tiny / "kept" / "results.json").read_bytes()
    # Other settings are refused without --overwrite, and nothing is touched.
    refused = leelalab("anomaly", "run", "task", "--output", "kept", *FAST_RUN, "--seed", "3",
                       cwd=tiny)  # fmt: skip
    assert "other settings" in _one_line_error(refused)
    # An input that does not exist, or that is not a task, never deletes the output.
    for task in ("missing-task", "weak.pb.gz", "kept"):
        bad = leelalab("anomaly", "run", task, "--output", "kept", "--overwrite", *FAST_RUN,
                       cwd=tiny)  # fmt: skip
        _one_line_error(bad)
        assert (tiny / "kept" / "results.json").read_bytes() == before
        assert (tiny / "kept" / "notes.txt").read_text() == "mine"
    # Out-of-range settings are refused before anything is read or touched.
    bad = leelalab("anomaly", "run", "task", "--output", "kept", "--overwrite", *FAST_RUN,
                   "--shrinkage", "2", cwd=tiny)  # fmt: skip
    assert "--shrinkage must be at most 1" in _one_line_error(bad)
    # --overwrite replaces the run's own files only.
    again = leelalab("anomaly", "run", "task", "--output", "kept", "--overwrite", *FAST_RUN,
                     "--seed", "3", cwd=tiny)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert (tiny / "kept" / "notes.txt").read_text() == "mine"
    assert json.loads((tiny / "kept" / "run.json").read_text())["seed"] == 3


def test_task_overwrite_keeps_a_users_file(tiny: Path) -> None:
    first = leelalab("anomaly", "task", "ood", "--output", "small", *SMALL_TASK, cwd=tiny)
    assert first.returncode == 0, first.stderr
    (tiny / "small" / "notes.txt").write_text("mine")
    record = json.loads((tiny / "small" / "run.json").read_text())
    assert record["format"] == "leelalab.run/1" and "seconds" in record
    assert "notes.txt" not in record["outputs"]
    before = (tiny / "small" / "positions.jsonl").read_bytes()
    # A bad size, a missing or header-only puzzle file: one line, the task untouched.
    (tiny / "header-only.csv").write_text(
        "PuzzleId,FEN,Moves,Rating,RatingDeviation,Popularity,NbPlays,Themes,GameUrl,OpeningTags\n"
    )
    for args in (
        ("ood", "--trusted", "3"),
        ("mechanism", "--puzzles", "missing.csv", "--deep-depth", "0"),
        ("mechanism", "--puzzles", "header-only.csv", "--deep-depth", "0"),
        ("backdoor", "--anomaly-fraction", "1.5"),
    ):
        bad = leelalab("anomaly", "task", args[0], "--output", "small", *SMALL_TASK, *args[1:],
                       "--overwrite", cwd=tiny)  # fmt: skip
        _one_line_error(bad)
        assert (tiny / "small" / "positions.jsonl").read_bytes() == before
    again = leelalab("anomaly", "task", "ood", "--output", "small", *SMALL_TASK, "--seed", "1",
                     "--overwrite", cwd=tiny)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert (tiny / "small" / "notes.txt").read_text() == "mine"
    assert (tiny / "small" / "positions.jsonl").read_bytes() != before


def test_ood_sizes_that_cannot_be_built_are_refused(tiny: Path) -> None:
    """Issue 20: --trusted 5 --pool 4 --test 4 used to build other sizes silently."""
    result = leelalab("anomaly", "task", "ood", "--trusted", "5", "--pool", "4", "--test", "4",
                      "--output", "never", cwd=tiny)  # fmt: skip
    assert "--trusted 5 is too small" in _one_line_error(result)
    assert not (tiny / "never").exists()


def test_wrong_kind_and_empty_inputs_are_one_line(tiny: Path, tmp_path: Path) -> None:
    from leelalab.puzzles.dataset import write_pairs_dataset

    empty = write_pairs_dataset(tmp_path / "empty-dataset", [])
    for args in (
        ("anomaly", "run", str(empty), "--output", str(tmp_path / "r"), *FAST_RUN),
        ("anomaly", "run", "figures", "--output", str(tmp_path / "r"), *FAST_RUN),
        ("anomaly", "report", str(empty)),
        ("anomaly", "report", "task"),
        ("plot", "anomaly", "task", "--output", str(tmp_path / "f")),
    ):
        _one_line_error(leelalab(*args, cwd=tiny))
    assert not (tmp_path / "r").exists()
    # A truncated results file is one line too, not an internal error.
    (tmp_path / "cut").mkdir()
    text = (tiny / "run" / "results.json").read_text() if (tiny / "run").is_dir() else "{}"
    (tmp_path / "cut" / "results.json").write_text(text[: len(text) // 2])
    assert "results.json" in _one_line_error(leelalab("anomaly", "report", str(tmp_path / "cut"),
                                                       cwd=tiny))  # fmt: skip


def test_mechanism_task_builds_through_the_command_line(tiny: Path) -> None:
    try:
        find_stockfish()
    except LeelaLabError:
        pytest.skip("no Stockfish")
    from leelalab.puzzles.reader import shipped_puzzles_path

    result = leelalab("anomaly", "task", "mechanism", "--net", "net.pb.gz", "--output", "mech",
                      "--puzzles", str(shipped_puzzles_path().resolve()), "--limit", "150",
                      "--deep-depth", "3", "--no-progress", cwd=tiny)  # fmt: skip
    assert result.returncode == 0, result.stderr
    meta = json.loads((tiny / "mech" / "task.json").read_text())
    funnel = meta["funnel"]
    assert funnel["puzzles_kept"] == 150
    assert funnel["solver_positions"] >= funnel["network_plays_puzzle_move"]
    assert funnel["network_plays_puzzle_move"] >= funnel["stockfish_confirms"]
    assert meta["settings"]["deep_depth"] == 3 and meta["settings"]["limit"] == 150
    record = json.loads((tiny / "mech" / "run.json").read_text())
    assert record["inputs"]["puzzles"]["sha256"] == record["puzzles_sha256"]


def test_a_copied_task_runs_with_its_cached_references(tiny: Path) -> None:
    # The student reference records its network by path inside the task: found by the CLI
    # walk, a copied task was refused ("references/student holds a run with other settings").
    first = leelalab("anomaly", "run", "task", "--output", "before-copy", "--detectors",
                     "student-kl", "--student-epochs", "2", *FAST_RUN[2:], cwd=tiny)  # fmt: skip
    assert first.returncode == 0, first.stderr
    shutil.copytree(tiny / "task", tiny / "task-copy")
    again = leelalab("anomaly", "run", "task-copy", "--output", "after-copy", "--detectors",
                     "student-kl", "--student-epochs", "2", *FAST_RUN[2:], cwd=tiny)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "references/student holds this run" in again.stderr
