"""`leelalab train` from the command line: a tiny run, and one clear line for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leelalab.cli.main import main
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights

TINY = [
    "--layers", "1", "--d-model", "16", "--heads", "2", "--ffn-size", "16",
    "--value-channels", "4", "--value-hidden", "8",
    "--epochs", "2", "--steps-per-epoch", "3", "--batch-size", "8", "--buffer-size", "32",
    "--positions-per-epoch", "8", "--validation-positions", "16", "--games-in-parallel", "4",
    "--max-plies", "16", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    weights = random_resnet_weights(seed=1, filters=8, moves_left=False)
    return save_weights(weights, tmp_path_factory.mktemp("teacher") / "teacher.pb.gz")


def test_train_writes_a_network_and_its_record(
    tmp_path: Path, teacher_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "student.pb.gz"
    assert main(["train", "--teacher", str(teacher_file), "--output", str(output), *TINY]) == 0
    captured = capsys.readouterr()
    assert "top-1 agreement" in captured.out
    assert "epoch 2/2" in captured.err
    run = json.loads(Path(f"{output}.run.json").read_text())
    assert run["config"]["student"]["d_model"] == 16 and run["report"]["epochs"] == 2
    # Info describes it like any lc0 file.
    assert main(["info", str(output)]) == 0
    assert "attention" in capsys.readouterr().out.lower()
    figure = tmp_path / "curve.pdf"
    assert main(["plot", "training", str(output), "--output", str(figure)]) == 0
    assert figure.stat().st_size > 0 and figure.with_suffix(".png").stat().st_size > 0
    # A file that is not a training record: one line.
    assert main(["plot", "training", str(teacher_file), "--output", str(figure)]) == 1
    assert "not the run.json of a `leelalab train` run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--family", "lstm"], "unknown student family 'lstm'"),
        (["--d-model", "30", "--heads", "4"], "does not split into 4 heads"),
        (["--batch-size", "64"], "larger than buffer_size"),
    ],
)
def test_bad_settings_give_one_line(
    tmp_path: Path,
    teacher_file: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    output = tmp_path / "student.pb.gz"
    argv = ["train", "--net", str(teacher_file), "--output", str(output), *TINY, *arguments]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
    assert not output.exists()


def test_a_teacher_that_does_not_load_gives_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.pb.gz"
    assert main(["train", "--net", str(missing), "--output", str(tmp_path / "s.pb.gz")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.pb.gz" in err, err
    garbage = tmp_path / "garbage.pb.gz"
    garbage.write_bytes(b"not a network at all")
    assert main(["train", "--net", str(garbage), "--output", str(tmp_path / "s.pb.gz")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("leelalab: error:"), err
