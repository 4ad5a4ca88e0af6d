"""Spectral signatures (Tran et al. 2018): the squared projection of a square vector, centred
on the untrusted pool's mean, on the top eigenvector of the pool's covariance. Poisoned
inputs that form a cluster dominate that direction. Fitted on the unlabelled pool only.
"""

from __future__ import annotations

import numpy as np

from leelalab.anomaly.detectors.registry import register_detector
from leelalab.anomaly.detectors.statistical import (
    ArrayState,
    StatisticalDetector,
    moments_of,
)
from leelalab.anomaly.features import FeatureView


@register_detector
class SpectralSignatureDetector(ArrayState, StatisticalDetector):
    name = "spectral"
    description = "squared projection on the untrusted pool's top singular direction"
    uses_untrusted = True
    fit_on = "unlabelled pool"

    def _fit_layer(self, hook: str, trusted: FeatureView, untrusted: FeatureView | None) -> None:
        assert untrusted is not None
        pool = moments_of(untrusted, hook)
        _, vectors = np.linalg.eigh(pool.covariance)
        self.arrays[hook] = {"mean": pool.mean, "direction": vectors[:, -1]}

    def _score_tokens(self, hook: str, tokens: np.ndarray) -> np.ndarray:
        arrays = self.arrays[hook]
        return ((tokens - arrays["mean"]) @ arrays["direction"]) ** 2


__all__ = ["SpectralSignatureDetector"]
