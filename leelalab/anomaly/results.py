"""What an anomaly run measured (``RUN/results.json``), as a typed, versioned results object.

Light on purpose (no torch, h5py or scikit-learn): reports and figures read results without
the evaluation code. The nested sections keep the JSON layout the tables and figures read
(``detectors[name]["aggregate"]["mean"]["auroc"]`` is an :class:`~leelalab.stats.Estimate`
as JSON).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, ClassVar

from leelalab.runs.experiment import Results
from leelalab.runs.records import RecordError, canonical_format, format_name, read_json

MINIMUM_CLASS_SIZE = 10
"""A detection metric (AUROC, AP, FPR at 95% TPR) is a verdict only with at least this many
normal and this many anomalous test positions; below it tables print "too few"."""


@dataclasses.dataclass
class AnomalyResults(Results):
    """Detector × layer metrics on a task's test split, and the coverage–risk analysis."""

    FORMAT: ClassVar[str] = format_name("anomaly-results", 1)
    FILE: ClassVar[str] = "results.json"
    HINT: ClassVar[str] = "run `leelalab anomaly run TASK --output RUN` first"

    task: str
    task_directory: str
    network: str
    network_sha256: str | None
    counts: dict[str, Any] | None
    test: dict[str, Any]
    trusted_positions: int
    pool_positions: int
    detectors: dict[str, Any]
    coverage_risk: dict[str, Any] | None
    references: dict[str, Any] | None
    bootstrap_resamples: int
    squares: str = "mean"
    """(Results written before ``--squares`` existed reduced squares by their mean.)"""

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AnomalyResults:
        """Results from a run directory or its ``results.json``; one line when missing,
        truncated or of another kind. Files written before results had a ``format`` (the
        same layout) are read as this format."""
        path = Path(path)
        if path.is_dir():
            path = path / cls.FILE
        data = read_json(path, hint=cls.HINT, what="results file")
        found = data.get("format", cls.FORMAT if "detectors" in data else None)
        if canonical_format(found) != cls.FORMAT:
            raise RecordError(
                f"{path}: {'a ' + str(found) + ' file' if found else 'not an anomaly run'}, "
                f"expected {cls.FORMAT}; {cls.HINT}"
            )
        try:
            return cls.from_json(data)
        except (KeyError, TypeError, ValueError) as error:
            raise RecordError(f"{path}: malformed {cls.FORMAT} results ({error})") from None


def load_results(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """A run's results as the JSON dictionary the tables and figures read."""
    return AnomalyResults.load(directory).to_json()


__all__ = ["MINIMUM_CLASS_SIZE", "AnomalyResults", "load_results"]
