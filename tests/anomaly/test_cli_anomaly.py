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
