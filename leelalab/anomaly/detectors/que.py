"""QUE, the quantum-entropy outlier score (Dong et al. 2019; SPECTRE, Hayase et al. 2021),
trusted-whitened as in cupbearer.

Square vectors are whitened with the trusted mean and covariance (``w = (x - μ) W``, PCA
whitening, eigenvalues below ``rcond · max`` dropped). The *batch* is the unlabelled
untrusted pool: ``C`` is the covariance of its whitened vectors, and the score of a square is
``wᵀ exp(α C / ‖C‖₂) w`` — large where the pool's excess variance (a cluster of anomalies)
points. Fitting uses the pool, scoring is per position (no batch effects at test time).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from leelalab.anomaly.detectors.mahalanobis import MahalanobisSettings
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
class QUESettings(MahalanobisSettings):
    alpha: float = setting(4.0, "quantum-entropy temperature", minimum=0)


def whitening_matrix(covariance: np.ndarray, rcond: float) -> np.ndarray:
    """``W`` with ``Wᵀ Σ W = I`` on the kept eigendirections (x ↦ x W)."""
    values, vectors = np.linalg.eigh(covariance)
    inverse_root = np.where(
        values > rcond * values.max(), 1 / np.sqrt(np.maximum(values, 1e-300)), 0.0
    )
    return vectors * inverse_root[None, :]


def quantum_entropy_matrix(batch_covariance: np.ndarray, alpha: float) -> np.ndarray:
    """``exp(α C / ‖C‖₂)`` for a symmetric positive semi-definite ``C`` (through its
    eigendecomposition, exact for symmetric matrices)."""
    values, vectors = np.linalg.eigh(batch_covariance)
    scaled = alpha * values / max(values.max(), 1e-300)
    return (vectors * np.exp(scaled)[None, :]) @ vectors.T


@register_detector
class QUEDetector(ArrayState, StatisticalDetector):
    name = "que"
    description = "quantum-entropy score, trusted-whitened, batch = the untrusted pool"
    uses_untrusted = True
    fit_on = "trusted + unlabelled pool"
    Settings = QUESettings

    def _fit_layer(self, hook: str, trusted: FeatureView, untrusted: FeatureView | None) -> None:
        assert untrusted is not None
        moments = moments_of(trusted, hook)
        covariance = shrunk_covariance(moments, self.params["shrinkage"], self.name, hook)
        whitening = whitening_matrix(covariance, self.params["rcond"])
        pool = moments_of(untrusted, hook)
        # Covariance of the whitened pool: Wᵀ Σ_pool W (whitening is linear).
        pool_covariance = whitening.T @ (pool.scatter / max(pool.n - 1, 1)) @ whitening
        self.arrays[hook] = {
            "mean": moments.mean,
            "whitening": whitening,
            "entropy": quantum_entropy_matrix(pool_covariance, self.params["alpha"]),
        }

    def _score_tokens(self, hook: str, tokens: np.ndarray) -> np.ndarray:
        arrays = self.arrays[hook]
        whitened = (tokens - arrays["mean"]) @ arrays["whitening"]
        return ((whitened @ arrays["entropy"]) * whitened).sum(1)


__all__ = ["QUEDetector", "QUESettings", "quantum_entropy_matrix", "whitening_matrix"]
