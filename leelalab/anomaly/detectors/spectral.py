"""Spectral signatures (Tran et al. 2018): the squared projection of a square vector, centred
on the untrusted pool's mean, on the top eigenvector of the pool's covariance. Poisoned
inputs that form a cluster dominate that direction. Fitted on the unlabelled pool only.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from leelalab.anomaly.detectors.registry import register_detector
from leelalab.anomaly.detectors.statistical import (
    StatisticalDetector,
    layer_state,
    moments_of,
    unflatten_state,
)
from leelalab.anomaly.features import FeatureView


@register_detector
class SpectralSignatureDetector(StatisticalDetector):
    name = "spectral"
    description = "squared projection on the untrusted pool's top singular direction"
    uses_untrusted = True
    fit_on = "unlabelled pool"

    def _reset(self) -> None:
        self.arrays: dict[str, dict[str, np.ndarray]] = {}

    def _fit_layer(self, hook: str, trusted: FeatureView, untrusted: FeatureView | None) -> None:
        assert untrusted is not None
        pool = moments_of(untrusted, hook)
        _, vectors = np.linalg.eigh(pool.covariance)
        self.arrays[hook] = {"mean": pool.mean, "direction": vectors[:, -1]}

    def _score_tokens(self, hook: str, tokens: np.ndarray) -> np.ndarray:
        arrays = self.arrays[hook]
        return ((tokens - arrays["mean"]) @ arrays["direction"]) ** 2

    def _state(self) -> dict[str, np.ndarray]:
        return layer_state(self.arrays)

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.arrays = unflatten_state(state)


__all__ = ["SpectralSignatureDetector"]
