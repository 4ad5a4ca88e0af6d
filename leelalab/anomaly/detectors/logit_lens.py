"""Logit-lens disagreement: KL(final policy ‖ policy read from layer ℓ by the output heads),
over the legal moves. Where the network's answer forms late, or is overturned late, the
early layers disagree with the final policy. Nothing is fitted but the calibration used to
aggregate layers.
"""

from __future__ import annotations

import numpy as np

from leelalab.anomaly.detectors.base import Detector
from leelalab.anomaly.detectors.registry import register_detector
from leelalab.anomaly.features import FeatureView


@register_detector
class LogitLensDetector(Detector):
    name = "logit-lens"
    level = "lens"
    fit_on = "nothing (calibration: trusted)"
    description = "KL(final policy || logit-lens policy at the layer)"

    def _fit(self, trusted: FeatureView, untrusted: FeatureView | None) -> None:
        pass

    def _score(self, inputs: FeatureView) -> dict[str, np.ndarray]:
        assert self.layers is not None
        values = inputs.lens_kl()
        return {hook: values[hook] for hook in self.layers}


__all__ = ["LogitLensDetector"]
