"""Defaults shared by the library and the CLI, in a module light enough for a help screen."""

from __future__ import annotations

# Every registered detector, in the order results tables list them.
DEFAULT_DETECTORS = (
    "mahalanobis",
    "relative-mahalanobis",
    "que",
    "spectral",
    "isolation-forest",
    "lof",
    "logit-lens",
    "weak-kl",
    "weak-dq",
    "student-kl",
    "student-dq",
    "probe",
)
