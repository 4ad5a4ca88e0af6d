"""The detector interface: fit on trusted features, score inputs layer by layer, aggregate.

A detector is a template-method class (as in cupbearer): the public :meth:`Detector.fit`,
:meth:`Detector.score`, :meth:`Detector.aggregate`, :meth:`Detector.save` and
:meth:`Detector.load` live here; a subclass implements ``_fit`` and ``_score`` and says
which state to persist (``_state`` / ``_set_state``). Scores are ``{layer: float64 [n]}``
with higher = more anomalous. Layers are hook names for activation detectors, ``output``
for output-level ones.

Aggregation over layers standardises each layer's scores by the mean and standard deviation
of that layer's scores on the trusted data (computed at the end of :meth:`fit`, in sample),
then takes the mean or the max: raw scores of different layers have different scales.

Persistence: ``detector.safetensors`` (arrays, keys ``<layer>/<name>``) and
``detector.json`` (name, parameters, layers, calibration) — never pickles.
"""

from __future__ import annotations

import dataclasses
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from leelalab.anomaly.errors import AnomalyError
from leelalab.anomaly.features import FeatureView
from leelalab.runs.experiment import Settings, setting
from leelalab.runs.records import read_json, read_safetensors, versions, write_text_atomically

Aggregation = Literal["mean", "max"]
Level = Literal["activations", "lens", "outputs"]
DETECTOR_FORMAT = "leelalab.anomaly-detector/1"


@dataclasses.dataclass(frozen=True)
class DetectorSettings(Settings):
    """A detector's own settings (a frozen, validated dataclass; none by default).

    A detector class names its settings class (``Detector.Settings``). A field that has the
    name of a run's setting (``shrinkage``, ``squares``, ``seed`` in
    :class:`~leelalab.anomaly.settings.RunSettings`) takes the run's value
    (:meth:`Detector.settings_from`), so a new detector is one file: nothing routes settings
    by detector name.
    """


@dataclasses.dataclass(frozen=True)
class SquaresSettings(DetectorSettings):
    """Settings of detectors that score each square and reduce over the 64 squares."""

    squares: str = setting(
        "mean", "reduce per-square scores by their mean or max", choices=("mean", "max")
    )


class Detector(ABC):
    """Base class of every anomaly detector.

    Class attributes a subclass sets:
        name: the registry name (``mahalanobis``).
        level: what it reads: ``activations`` (per-square residual stream), ``lens`` (the
            logit-lens KL per layer) or ``outputs`` (a reference network's disagreement).
        uses_untrusted: whether ``fit`` needs the unlabelled untrusted pool.
        uses_labels: whether ``fit`` needs the pool's labels (supervised: not MAD).
    """

    name: ClassVar[str] = ""
    level: ClassVar[Level] = "activations"
    uses_untrusted: ClassVar[bool] = False
    uses_labels: ClassVar[bool] = False
    description: ClassVar[str] = ""
    fit_on: ClassVar[str] = "trusted"
    """What the fit reads, for listings."""
    Settings: ClassVar[type[DetectorSettings]] = DetectorSettings
    """The detector's settings class."""

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        settings: DetectorSettings | None = None,
        **params: Any,
    ) -> None:
        """``settings``, or its fields as keyword arguments (``shrinkage=0.1``)."""
        if settings is None:
            try:
                settings = self.Settings(**params)
            except TypeError:
                known = [field.name for field in dataclasses.fields(self.Settings)]
                raise AnomalyError(
                    f"{self.name}: unknown setting(s) {sorted(set(params) - set(known))}; "
                    f"it has {known}"
                ) from None
        elif params:
            raise AnomalyError(f"{self.name}: pass settings or keyword settings, not both")
        self.layers: list[str] | None = list(layers) if layers is not None else None
        self.settings = settings
        self.params: dict[str, Any] = settings.to_json()
        self.calibration: dict[str, tuple[float, float]] = {}
        self.fitted = False
        self._reset()

    @classmethod
    def settings_from(cls, shared: Any) -> DetectorSettings:
        """This detector's settings, its fields that ``shared`` (a run's settings) also has
        taken from it and the others at their defaults."""
        names = [field.name for field in dataclasses.fields(cls.Settings)]
        return cls.Settings(
            **{name: getattr(shared, name) for name in names if hasattr(shared, name)}
        )

    # --- what subclasses implement -----------------------------------------------------

    @abstractmethod
    def _fit(self, trusted: FeatureView, untrusted: FeatureView | None) -> None: ...

    @abstractmethod
    def _score(self, inputs: FeatureView) -> dict[str, np.ndarray]: ...

    def _reset(self) -> None:  # noqa: B027 - most detectors keep no state besides params
        """Set up the (empty) fitted state; called on construction."""

    def _state(self) -> dict[str, np.ndarray]:
        """Arrays to persist, keyed ``<layer>/<name>``."""
        return {}

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what :meth:`_state` returned (nothing by default)."""
        del state

    def available_layers(self, view: FeatureView) -> list[str]:
        """Layers this detector can score on ``view``'s store (default: every hook)."""
        if self.level == "lens":
            return list(view.store.lens_hooks)
        if self.level == "outputs":
            return ["output"]
        return list(view.store.hooks)

    # --- public API ------------------------------------------------------------------

    def fit(self, trusted: FeatureView, untrusted: FeatureView | None = None) -> Detector:
        """Fit on trusted features (and the untrusted pool where the method needs it)."""
        available = self.available_layers(trusted)
        if self.layers is None:
            self.layers = available
        unknown = [layer for layer in self.layers if layer not in available]
        if unknown:
            raise AnomalyError(
                f"{self.name}: unknown layer(s) {unknown}; this detector has {available}"
            )
        if len(trusted) == 0:
            raise AnomalyError(f"{self.name}: no trusted positions to fit on")
        if self.uses_untrusted and (untrusted is None or len(untrusted) == 0):
            raise AnomalyError(f"{self.name} needs an unlabelled untrusted pool to fit")
        if self.uses_labels and (untrusted is None or untrusted.labels is None):
            raise AnomalyError(f"{self.name} is supervised: it needs the pool's labels")
        self._fit(trusted, untrusted)
        self.fitted = True
        trusted_scores = self.score(trusted)
        self.calibration = {
            layer: (float(values.mean()), float(values.std()) or 1.0)
            for layer, values in trusted_scores.items()
        }
        return self

    def score(self, inputs: FeatureView) -> dict[str, np.ndarray]:
        """``{layer: scores [n]}`` for the view's positions (in the view's row order)."""
        if not self.fitted:
            raise AnomalyError(f"{self.name}: fit the detector before scoring")
        scores = self._score(inputs)
        for layer, values in scores.items():
            if values.shape != (len(inputs),) or not np.isfinite(values).all():
                raise AnomalyError(f"{self.name}: non-finite or misshapen scores at {layer}")
        return {layer: np.asarray(values, dtype=np.float64) for layer, values in scores.items()}

    def aggregate(self, scores: Mapping[str, np.ndarray], how: Aggregation = "mean") -> np.ndarray:
        """Scores standardised per layer by the trusted calibration, then mean or max."""
        if how not in ("mean", "max"):
            raise AnomalyError(f"aggregation must be 'mean' or 'max', not {how!r}")
        standardised = np.stack(
            [(values - self.calibration[layer][0]) / self.calibration[layer][1]
             for layer, values in scores.items()]
        )  # fmt: skip
        return standardised.mean(0) if how == "mean" else standardised.max(0)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        from safetensors.numpy import save_file

        if not self.fitted:
            raise AnomalyError(f"{self.name}: nothing to save before fitting")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {key: np.ascontiguousarray(value) for key, value in self._state().items()}
        temporary = directory / "detector.safetensors.tmp"
        save_file(state, str(temporary))
        temporary.replace(directory / "detector.safetensors")
        record = {
            "format": DETECTOR_FORMAT,
            "name": self.name,
            "params": self.params,
            "layers": self.layers,
            "calibration": self.calibration,
            "versions": versions(),
        }
        write_text_atomically(directory / "detector.json", json.dumps(record, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Detector:
        """A fitted detector saved by :meth:`save` (any registered class)."""
        from leelalab.anomaly.detectors.registry import detector_class

        directory = Path(directory)
        record = read_json(
            directory / "detector.json",
            expect_format=DETECTOR_FORMAT,
            hint="a detector saved by `leelalab anomaly run` (RUN/detectors/NAME)",
            what="saved detector",
        )
        try:
            detector = detector_class(record["name"])(layers=record["layers"], **record["params"])
        except (KeyError, TypeError):
            raise AnomalyError(f"{directory}/detector.json: malformed saved detector") from None
        state = read_safetensors(directory / "detector.safetensors", framework="np")
        try:
            detector._set_state(state)
        except (KeyError, ValueError):
            raise AnomalyError(
                f"{directory}/detector.safetensors: malformed saved detector"
            ) from None
        detector.calibration = {
            k: (float(m), float(s)) for k, (m, s) in record["calibration"].items()
        }
        detector.fitted = True
        return detector


def token_mean(token_scores: np.ndarray, positions: int) -> np.ndarray:
    """Per-square scores ``[positions * 64]`` averaged per position (squares as tokens)."""
    return token_scores.reshape(positions, -1).mean(1)


__all__ = [
    "Aggregation",
    "Detector",
    "DetectorSettings",
    "Level",
    "SquaresSettings",
    "token_mean",
]
