"""Isolation forest and local outlier factor on square vectors (scikit-learn).

Both are fitted on a seeded random subsample of at most ``max_samples`` trusted square
vectors (streamed from disk, so RAM stays bounded) and score every square; a position's
score is the mean over its squares. Higher = more anomalous (``-score_samples``).

Persistence without pickles: the fitted subsample is saved (safetensors) with the
parameters, and loading refits the estimator on it — scikit-learn's fits are deterministic
given the data and ``random_state``, so the loaded detector scores identically.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from leelalab.anomaly.detectors.base import SquaresSettings
from leelalab.anomaly.detectors.registry import register_detector
from leelalab.anomaly.detectors.statistical import StatisticalDetector
from leelalab.anomaly.errors import AnomalyError
from leelalab.anomaly.features import FeatureView
from leelalab.runs.experiment import setting


def _sklearn() -> Any:
    try:
        import sklearn.ensemble
        import sklearn.linear_model
        import sklearn.neighbors
    except ImportError:
        raise AnomalyError(
            'isolation forest, LOF and the probe need scikit-learn: pip install "leelalab[anomaly]"'
        ) from None
    return sklearn


def subsample_tokens(view: FeatureView, hook: str, count: int, seed: int) -> np.ndarray:
    """``count`` square vectors drawn uniformly without replacement (all if fewer)."""
    total = len(view) * 64
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(total, min(count, total), replace=False))
    parts = []
    for positions, values in view.iter_activations(hook):
        tokens = values.reshape(-1, values.shape[-1])
        first, last = positions[0] * 64, (positions[-1] + 1) * 64
        wanted = chosen[(chosen >= first) & (chosen < last)] - first
        parts.append(tokens[wanted])
    return np.concatenate(parts).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class SubsampleSettings(SquaresSettings):
    max_samples: int = setting(20_000, "trusted square vectors fitted on", minimum=1)
    seed: int = setting(0, "seed of the subsample (and the estimator)")


@dataclasses.dataclass(frozen=True)
class IsolationForestSettings(SubsampleSettings):
    n_estimators: int = setting(100, "trees of the forest", minimum=1)


@dataclasses.dataclass(frozen=True)
class LocalOutlierFactorSettings(SubsampleSettings):
    max_samples: int = setting(5_000, "trusted square vectors fitted on", minimum=1)
    n_neighbors: int = setting(20, "neighbours of the local density", minimum=1)


class _SubsampleDetector(StatisticalDetector):
    def _reset(self) -> None:
        self.samples: dict[str, np.ndarray] = {}
        self.models: dict[str, Any] = {}

    def _estimator(self) -> Any: ...

    def _fit_layer(self, hook: str, trusted: FeatureView, untrusted: FeatureView | None) -> None:
        samples = subsample_tokens(trusted, hook, self.params["max_samples"], self.params["seed"])
        self.samples[hook] = samples
        self.models[hook] = self._estimator().fit(samples)

    def _score_tokens(self, hook: str, tokens: np.ndarray) -> np.ndarray:
        return -self.models[hook].score_samples(tokens.astype(np.float32))

    def _state(self) -> dict[str, np.ndarray]:
        return {f"{hook}/samples": samples for hook, samples in self.samples.items()}

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        for key, samples in state.items():
            hook = key.rsplit("/", 1)[0]
            self.samples[hook] = samples
            self.models[hook] = self._estimator().fit(samples)


@register_detector
class IsolationForestDetector(_SubsampleDetector):
    name = "isolation-forest"
    description = "isolation forest on trusted square vectors (scikit-learn)"
    Settings = IsolationForestSettings

    def _estimator(self) -> Any:
        return _sklearn().ensemble.IsolationForest(
            n_estimators=self.params["n_estimators"], random_state=self.params["seed"], n_jobs=1
        )


@register_detector
class LocalOutlierFactorDetector(_SubsampleDetector):
    name = "lof"
    description = "local outlier factor against trusted square vectors (scikit-learn)"
    Settings = LocalOutlierFactorSettings

    def _estimator(self) -> Any:
        return _sklearn().neighbors.LocalOutlierFactor(
            n_neighbors=self.params["n_neighbors"], novelty=True, algorithm="brute", n_jobs=1
        )


__all__ = [
    "IsolationForestDetector",
    "IsolationForestSettings",
    "LocalOutlierFactorDetector",
    "LocalOutlierFactorSettings",
    "subsample_tokens",
]
