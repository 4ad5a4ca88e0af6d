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

import numpy as np

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


SCORES_FILE = "scores.h5"


@dataclasses.dataclass(frozen=True)
class AnomalyScores:
    """The per-position test scores of a run (``RUN/scores.h5``) that the histograms show:
    whether each test position is anomalous, and each detector's layer-mean score."""

    labels: np.ndarray
    """(positions,) bool: anomalous."""
    scores: dict[str, np.ndarray]
    """Detector name → (positions,) standardised score, mean over layers."""


def load_scores(path: str | os.PathLike[str]) -> AnomalyScores:
    """The scores of a run directory (or its ``scores.h5``); one :class:`RecordError` line
    naming the file when it is missing, not HDF5, truncated or lacks a dataset."""
    path = Path(path)
    if path.is_dir():
        path = path / SCORES_FILE
    hint = "run `leelalab anomaly run TASK --output RUN` (it writes scores.h5 beside results.json)"
    if not path.is_file():
        raise RecordError(f"{path}: no such scores file; {hint}")
    import h5py  # lazily: the tables read results without h5py

    try:
        with h5py.File(path, "r") as handle:
            labels = np.asarray(handle["labels"][()]).astype(bool)
            group = handle["scores"]
            if not isinstance(group, h5py.Group):
                raise KeyError("scores")
            scores = {name: np.asarray(group[f"{name}/aggregate:mean"][()]) for name in group}
    except KeyError as error:
        raise RecordError(f"{path}: not the scores of an anomaly run (no {error})") from None
    except OSError as error:
        raise RecordError(f"{path}: not a readable HDF5 file ({error})") from None
    for name, values in scores.items():
        if values.shape != labels.shape:
            raise RecordError(
                f"{path}: {name} has {values.shape[0] if values.ndim else 0} scores for "
                f"{labels.shape[0] if labels.ndim else 0} labels"
            )
    return AnomalyScores(labels=labels, scores=scores)


@dataclasses.dataclass(frozen=True)
class AnomalyRun:
    """One anomaly run directory, loaded: its name, results and scores (what its figures
    draw)."""

    name: str
    results: AnomalyResults
    scores: AnomalyScores


def load_run(directory: str | os.PathLike[str]) -> AnomalyRun:
    """``results.json`` and ``scores.h5`` of a run directory; one line when either is
    missing, truncated or of another kind."""
    directory = Path(directory)
    results = AnomalyResults.load(directory)
    return AnomalyRun(name=directory.name, results=results, scores=load_scores(directory))


__all__ = [
    "MINIMUM_CLASS_SIZE",
    "SCORES_FILE",
    "AnomalyResults",
    "AnomalyRun",
    "AnomalyScores",
    "load_results",
    "load_run",
    "load_scores",
]
