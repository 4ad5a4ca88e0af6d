"""Anomaly results and their tables: committed results (written before results had a
format) still read and give the committed report; verdicts below the minimum n say "too
few"; no zero-width interval is printed; results round-trip through save/load."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from leelalab.anomaly.report import describe_metric, layer_table, metrics_table
from leelalab.anomaly.results import MINIMUM_CLASS_SIZE, AnomalyResults, load_results
from leelalab.cli.main import main
from leelalab.runs.records import RecordError

COMMITTED = Path(__file__).resolve().parents[2] / "anomaly"
RUNS = sorted(path.name for path in COMMITTED.glob("maia-1900-*") if path.is_dir())


def _report(*runs: Path) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["anomaly", "report", *map(str, runs)]) == 0
    return out.getvalue()


@pytest.mark.parametrize("run", RUNS)
def test_committed_results_read_and_report_as_committed(run: str) -> None:
    assert "format" not in json.loads((COMMITTED / run / "results.json").read_text())
    assert _report(COMMITTED / run) == (COMMITTED / run / "report.md").read_text()


def test_results_round_trip_with_their_format(tmp_path: Path) -> None:
    results = AnomalyResults.load(COMMITTED / RUNS[0])
    path = results.save(tmp_path)
    assert json.loads(path.read_text())["format"] == "leelalab.anomaly-results/1"
    assert AnomalyResults.load(tmp_path) == results


def test_too_few_test_positions_print_too_few(tmp_path: Path) -> None:
    data = json.loads((COMMITTED / RUNS[0] / "results.json").read_text())
    data["test"] = {"positions": 12, "anomalous": MINIMUM_CLASS_SIZE - 1, "kinds": {}}
    (tmp_path / "results.json").write_text(json.dumps(data))
    results = load_results(tmp_path)
    assert "too few" in metrics_table(results) and "[" not in metrics_table(results)
    assert "too few" in layer_table(results)
    report = _report(tmp_path)
    assert f"at least {MINIMUM_CLASS_SIZE} normal and anomalous" in report


def test_no_zero_width_interval_is_printed() -> None:
    assert describe_metric({"value": 0.0, "low": 0.0, "high": 0.0, "n": 40}) == "0.000 (no spread)"
    assert describe_metric({"value": 0.5, "low": 0.25, "high": 0.75, "n": 40}, 2) == (
        "0.50 [0.25, 0.75]"
    )


def test_foreign_and_truncated_results_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps({"format": "leelalab.lens/1"}))
    with pytest.raises(RecordError, match="expected leelalab.anomaly-results/1"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text('{"task": "ood", "detectors": {')
    with pytest.raises(RecordError, match="truncated"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text('{"detectors": {}}')
    with pytest.raises(RecordError, match="malformed"):
        load_results(tmp_path)
