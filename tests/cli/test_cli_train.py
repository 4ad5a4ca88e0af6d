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
    figure = tmp_path / "figures" / "curve.pdf"  # a folder that does not exist yet
    assert main(["plot", "training", str(output), "--output", str(figure)]) == 0
    assert figure.stat().st_size > 0 and figure.with_suffix(".png").stat().st_size > 0
    # A file that is not a training record: one line.
    argv = ["plot", "training", str(teacher_file), "--output", str(figure), "--overwrite"]
    assert main(argv) == 1
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


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("leelalab: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_train_output_must_be_a_new_pb_gz(
    tmp_path: Path, teacher_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", "--net", str(teacher_file), *TINY]
    assert main([*base, "--output", str(tmp_path / "x.txt")]) == 1
    assert ".pb.gz" in one_error_line(capsys)
    assert not (tmp_path / "x.txt").exists()
    existing = tmp_path / "old.pb.gz"
    existing.write_bytes(b"keep me")
    assert main([*base, "--output", str(existing)]) == 1
    assert "--overwrite" in one_error_line(capsys)
    # A teacher that does not exist leaves an existing output alone, --overwrite or not.
    missing = ["train", "--net", str(tmp_path / "missing.pb.gz"), *TINY, "--overwrite"]
    assert main([*missing, "--output", str(existing)]) == 1
    assert "missing.pb.gz" in one_error_line(capsys)
    assert existing.read_bytes() == b"keep me"


def test_resume_is_announced_and_overwrite_keeps_a_users_file(
    tmp_path: Path, teacher_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "nested" / "student.pb.gz"
    checkpoints = tmp_path / "checkpoints"
    base = ["train", "--net", str(teacher_file), "--output", str(output), *TINY]
    base += ["--checkpoints", str(checkpoints)]
    one_epoch = [*base[: base.index("--epochs") + 1], "1", *base[base.index("--epochs") + 2 :]]
    assert main(one_epoch) == 0
    output.unlink()  # as if the run had been stopped after its first epoch
    # The checkpoint belongs to a one-epoch run: two epochs are other settings.
    assert main(base) == 1
    assert "--overwrite" in one_error_line(capsys)
    (checkpoints / "notes.txt").write_text("mine")
    assert main([*base, "--overwrite"]) == 0
    assert (checkpoints / "notes.txt").read_text() == "mine"
    assert output.is_file()
    record = json.loads(Path(f"{output}.run.json").read_text())
    assert record["format"] == "leelalab.run/1" and "versions" in record
    assert record["seconds"] > 0 and record["report"]["epochs"] == 2
    # Rerun after the network went missing: it resumes from the checkpoint and says so.
    output.unlink()
    capsys.readouterr()
    assert main(base) == 0
    assert f"resuming {output}: 2 of 2 epochs done" in capsys.readouterr().err


def test_plot_training_checks_its_output_and_input_first(
    tmp_path: Path, teacher_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figure = tmp_path / "figures" / "new" / "training.pdf"
    assert main(["plot", "training", str(tmp_path), "--output", str(figure)]) == 1
    assert "directory" in one_error_line(capsys)
    truncated = tmp_path / "student.pb.gz.run.json"
    truncated.write_text('{"report": {"hist')
    assert main(["plot", "training", str(truncated), "--output", str(figure)]) == 1
    assert "not valid JSON" in one_error_line(capsys)
    assert not figure.parent.exists()
