"""Output-level detectors: disagreement between the network M and a smaller model m.

``KL(π_M ‖ π_m)`` over the legal moves, or ``|Q_M − Q_m|`` (Q = W − L). The model m is a
*reference* whose outputs on the task's positions are computed once (see
:mod:`leelalab.anomaly.references`): ``weak`` (the shipped weak network, distilled from the
clean network's self-play) or ``student`` (distilled from M on the task's trusted positions
only). Flagging where they disagree is the "distillation" answer to anomaly detection that
the mechanistic detectors are compared with.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from leelalab.anomaly.detectors.base import Detector
from leelalab.anomaly.detectors.registry import register_detector
from leelalab.anomaly.features import FeatureView


class DistillationDetector(Detector):
    level = "outputs"
    fit_on = "nothing (m: see reference)"
    reference: ClassVar[str] = ""
    metric: ClassVar[str] = ""

    def _fit(self, trusted: FeatureView, untrusted: FeatureView | None) -> None:
        trusted.reference(self.reference)  # a missing reference fails here, before scoring

    def _score(self, inputs: FeatureView) -> dict[str, np.ndarray]:
        return {"output": np.asarray(inputs.reference(self.reference)[self.metric], np.float64)}


@register_detector
class WeakKLDetector(DistillationDetector):
    name = "weak-kl"
    reference = "weak"
    metric = "kl"
    description = "KL(policy of M || policy of the shipped weak network)"


@register_detector
class WeakQDetector(DistillationDetector):
    name = "weak-dq"
    reference = "weak"
    metric = "dq"
    description = "|Q of M - Q of the shipped weak network|"


@register_detector
class StudentKLDetector(DistillationDetector):
    name = "student-kl"
    reference = "student"
    metric = "kl"
    description = "KL(policy of M || policy of a student distilled on trusted positions)"


@register_detector
class StudentQDetector(DistillationDetector):
    name = "student-dq"
    reference = "student"
    metric = "dq"
    description = "|Q of M - Q of a student distilled on trusted positions|"


__all__ = [
    "DistillationDetector",
    "StudentKLDetector",
    "StudentQDetector",
    "WeakKLDetector",
    "WeakQDetector",
]
