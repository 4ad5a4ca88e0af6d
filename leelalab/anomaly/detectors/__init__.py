"""Anomaly detectors on a shared interface (:class:`Detector`), one short file per method,
registered by name (:func:`make_detector`, :func:`detector_names`).

Activation level: ``mahalanobis``, ``relative-mahalanobis``, ``que``, ``spectral``,
``isolation-forest``, ``lof``; logit lens: ``logit-lens``; output level (distillation
disagreement): ``weak-kl``, ``weak-dq``, ``student-kl``, ``student-dq``; supervised skyline:
``probe``.
"""

from leelalab.anomaly.detectors import (  # noqa: F401 - importing registers the detectors
    distillation,
    logit_lens,
    mahalanobis,
    neighbours,
    probe,
    que,
    spectral,
)
from leelalab.anomaly.detectors.base import Aggregation, Detector
from leelalab.anomaly.detectors.registry import (
    detector_class,
    detector_names,
    make_detector,
    register_detector,
)
from leelalab.anomaly.detectors.statistical import RunningMoments, StatisticalDetector

__all__ = [
    "Aggregation",
    "Detector",
    "RunningMoments",
    "StatisticalDetector",
    "detector_class",
    "detector_names",
    "make_detector",
    "register_detector",
]
