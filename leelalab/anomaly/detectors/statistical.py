"""Streaming statistics shared by the covariance-based detectors.

Squares are tokens: an activation ``[positions, 64, d]`` contributes ``positions * 64``
samples of dimension ``d`` to the statistics, and a position's score is the mean of its 64
per-square scores (cupbearer's convention). Means and covariances are accumulated in float64
block by block (Chan et al.'s pairwise update), so fitting streams from disk in bounded RAM.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping

import numpy as np

from leelalab.anomaly.detectors.base import Detector, SquaresSettings, token_mean
from leelalab.anomaly.errors import AnomalyError
from leelalab.anomaly.features import FeatureView


class RunningMoments:
    """Mean and covariance of a stream of ``[m, d]`` blocks, in float64."""

    def __init__(self, dimension: int) -> None:
        self.n = 0
        self.mean = np.zeros(dimension, dtype=np.float64)
        self.scatter = np.zeros((dimension, dimension), dtype=np.float64)

    def update(self, samples: np.ndarray) -> None:
        block = np.asarray(samples, dtype=np.float64)
        m = block.shape[0]
        if m == 0:
            return
        block_mean = block.mean(0)
        centred = block - block_mean
        delta = block_mean - self.mean
        total = self.n + m
        self.scatter += centred.T @ centred + np.outer(delta, delta) * (self.n * m / total)
        self.mean += delta * (m / total)
        self.n = total

    @property
    def covariance(self) -> np.ndarray:
        """The unbiased sample covariance."""
        if self.n < 2:
            raise AnomalyError("a covariance needs at least two samples")
        return self.scatter / (self.n - 1)


def moments_of(view: FeatureView, hook: str) -> RunningMoments:
    moments = RunningMoments(view.store.widths[hook])
    for _, values in view.iter_activations(hook):
        moments.update(values.reshape(-1, values.shape[-1]))
    return moments


def shrunk_covariance(
    moments: RunningMoments, shrinkage: float, name: str, hook: str
) -> np.ndarray:
    """``(1 - λ) Σ + λ (tr Σ / d) I``, refusing a covariance from too few samples."""
    dimension = moments.mean.size
    if not 0 <= shrinkage <= 1:
        raise AnomalyError(f"{name}: shrinkage must be in [0, 1], not {shrinkage}")
    if moments.n <= 2 * dimension and shrinkage == 0:
        raise AnomalyError(
            f"{name}: too few trusted samples for a covariance at {hook}: {moments.n} samples "
            f"(positions x squares) for a {dimension}x{dimension} matrix; use more trusted "
            "positions or pass shrinkage (e.g. --shrinkage 0.1)"
        )
    covariance = moments.covariance
    if shrinkage:
        target = np.trace(covariance) / dimension * np.eye(dimension)
        covariance = (1 - shrinkage) * covariance + shrinkage * target
    return covariance


class StatisticalDetector(Detector):
    """A detector whose per-square score at a layer depends only on that square's vector.

    Subclasses fit per layer (``_fit_layer``) and score a ``[tokens, d]`` block
    (``_score_tokens``); this class streams the data and reduces over squares: the mean by
    default (cupbearer's convention), or the max (``squares="max"``), which does not dilute an
    anomaly confined to a few squares.
    """

    Settings = SquaresSettings

    @abstractmethod
    def _fit_layer(
        self, hook: str, trusted: FeatureView, untrusted: FeatureView | None
    ) -> None: ...

    @abstractmethod
    def _score_tokens(self, hook: str, tokens: np.ndarray) -> np.ndarray: ...

    def _fit(self, trusted: FeatureView, untrusted: FeatureView | None) -> None:
        assert self.layers is not None
        for hook in self.layers:
            self._fit_layer(hook, trusted, untrusted)

    def _score(self, inputs: FeatureView) -> dict[str, np.ndarray]:
        assert self.layers is not None
        squares = self.settings.squares
        scores = {}
        for hook in self.layers:
            out = np.empty(len(inputs), dtype=np.float64)
            for positions, values in inputs.iter_activations(hook):
                tokens = values.reshape(-1, values.shape[-1]).astype(np.float64)
                per_square = self._score_tokens(hook, tokens)
                if squares == "mean":
                    out[positions] = token_mean(per_square, len(positions))
                else:
                    out[positions] = per_square.reshape(len(positions), -1).max(1)
            scores[hook] = out
        return scores


def layer_state(arrays: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``{hook: {name: array}}`` -> ``{"hook/name": array}`` for safetensors."""
    return {
        f"{hook}/{name}": value for hook, values in arrays.items() for name, value in values.items()
    }


def unflatten_state(state: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        hook, name = key.rsplit("/", 1)
        arrays.setdefault(hook, {})[name] = value
    return arrays


class ArrayState:
    """Mixin for detectors whose fitted state is arrays per layer (``self.arrays[hook]
    [name]``), persisted as ``hook/name`` safetensors keys."""

    arrays: dict[str, dict[str, np.ndarray]]

    def _reset(self) -> None:
        self.arrays = {}

    def _state(self) -> dict[str, np.ndarray]:
        return layer_state(self.arrays)

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.arrays = unflatten_state(state)


__all__ = [
    "ArrayState",
    "RunningMoments",
    "StatisticalDetector",
    "layer_state",
    "moments_of",
    "shrunk_covariance",
    "unflatten_state",
]
