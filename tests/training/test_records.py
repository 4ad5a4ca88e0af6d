"""A training run's record as the figure reads it: old records without a format, records
written by the current code, and one line for anything else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leelalab.runs.records import RecordError, write_run_record
from leelalab.training.records import TrainingRun, load_training_run

BUNDLED = Path(__file__).resolve().parents[2] / "leelalab" / "data" / "lab-t6-128.pb.gz.run.json"


def test_a_record_from_before_run_record_formats_loads() -> None:
    raw = json.loads(BUNDLED.read_text(encoding="utf-8"))
    assert "format" not in raw  # the committed record predates the format field
    run = load_training_run("lab-t6-128")
    assert [entry["epoch"] for entry in run.history] == [
        e["epoch"] for e in raw["report"]["history"]
    ]
    assert run.held_out_positions == raw["report"]["held_out"]["positions"]
    assert run.config == raw["config"]
    assert run.teacher == raw["teacher"]["source"]


def _record() -> dict:
    history = [{"epoch": 1, "held_out_top1": 0.25, "held_out_kl": 1.5}]
    return {
        "teacher": {"source": "/w/maia-1900.pb.gz", "sha256": "0" * 64},
        "config": {"epochs": 1, "student": {"family": "resnet", "blocks": 2, "filters": 8}},
        "report": {"history": history, "held_out": {"positions": 64}},
    }


def test_a_record_written_by_the_current_code_loads(tmp_path: Path) -> None:
    network = tmp_path / "student.pb.gz"
    network.write_bytes(b"weights")
    record = write_run_record(network, _record())
    assert json.loads(record.read_text())["format"] == "leelalab.run/1"
    expected = TrainingRun(
        history=[{"epoch": 1, "held_out_top1": 0.25, "held_out_kl": 1.5}],
        held_out_positions=64,
        config={"epochs": 1, "student": {"family": "resnet", "blocks": 2, "filters": 8}},
        teacher="/w/maia-1900.pb.gz",
    )
    assert load_training_run(network) == expected
    assert load_training_run(record) == expected


@pytest.mark.parametrize(
    "content,message",
    [
        ('{"report": {"hist', "not valid JSON"),
        ('{"format": "leelalab.lens/1"}', "a leelalab.lens/1 file"),
        ('{"format": "leelalab.run/1", "command": "puzzles filter"}', "not the run.json"),
        ('{"report": {"history": []}}', "not the run.json"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_other_files_are_one_line_naming_the_file(tmp_path: Path, content, message) -> None:
    path = tmp_path / "student.pb.gz.run.json"
    path.write_text(content)
    with pytest.raises(RecordError, match=message) as error:
        load_training_run(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_directory_or_missing_record_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="is a directory"):
        load_training_run(tmp_path)
    network = tmp_path / "student.pb.gz"
    network.write_bytes(b"weights")
    with pytest.raises(RecordError, match="no such run record"):
        load_training_run(network)
