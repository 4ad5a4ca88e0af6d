"""Mahalanobis distance to the trusted activations, per square, averaged over squares.

Score of a square vector ``x`` at a layer: ``(x - μ)ᵀ Σ⁺ (x - μ) / d``, with the trusted
mean ``μ`` and covariance ``Σ`` (float64, streamed; ``Σ⁺`` a pseudo-inverse with relative
cut-off ``rcond``; optional shrinkage towards ``tr Σ / d · I``). The *relative* variant
subtracts the same distance under the diagonal of ``Σ`` (cupbearer's simplified relative
Mahalanobis, after Ren et al. 2021), discounting directions that are merely wide.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from leelalab.anomaly.detectors.base import SquaresSettings
from leelalab.anomaly.detectors.registry import register_detector
from leelalab.anomaly.detectors.statistical import (
    ArrayState,
    StatisticalDetector,
    moments_of,
    shrunk_covariance,
)
from leelalab.anomaly.features import FeatureView
from leelalab.runs.experiment import setting


@dataclasses.dataclass(frozen=True)
class MahalanobisSettings(SquaresSettings):
    shrinkage: float = setting(
        0.0, "covariance shrinkage towards a scaled identity", minimum=0, maximum=1
    )
    rcond: float = setting(1e-5, "relative cut-off of the pseudo-inverse", minimum=0)


@register_detector
class MahalanobisDetector(ArrayState, StatisticalDetector):
    name = "mahalanobis"
    description = "Mahalanobis distance to trusted activations (per square, mean over squares)"
    relative = False
    Settings = MahalanobisSettings

    def _fit_layer(self, hook: str, trusted: FeatureView, untrusted: FeatureView | None) -> None:
        moments = moments_of(trusted, hook)
        covariance = shrunk_covariance(moments, self.params["shrinkage"], self.name, hook)
        arrays = {
            "mean": moments.mean,
            "precision": np.linalg.pinv(covariance, rcond=self.params["rcond"], hermitian=True),
        }
        if self.relative:
            variance = np.diag(covariance)
            arrays["inverse_variance"] = np.where(
                variance > self.params["rcond"], 1 / variance, 0.0
            )
        self.arrays[hook] = arrays

    def _score_tokens(self, hook: str, tokens: np.ndarray) -> np.ndarray:
        arrays = self.arrays[hook]
        delta = tokens - arrays["mean"]
        distance = ((delta @ arrays["precision"]) * delta).sum(1)
        if self.relative:
            distance = distance - (delta**2) @ arrays["inverse_variance"]
        return distance / delta.shape[1]


@register_detector
class RelativeMahalanobisDetector(MahalanobisDetector):
    name = "relative-mahalanobis"
    description = "Mahalanobis minus its diagonal-covariance version (relative Mahalanobis)"
    relative = True


__all__ = ["MahalanobisDetector", "MahalanobisSettings", "RelativeMahalanobisDetector"]
