"""The supervised skyline: a logistic-regression probe on a layer's activations (all 64
squares flattened, standardised), trained on the *labelled* untrusted pool. It is not
anomaly detection — it sees anomalies with their labels — and is reported apart, as the
ceiling of what a layer's activations linearly reveal.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from leelalab.anomaly.detectors.base import Detector, DetectorSettings
from leelalab.anomaly.detectors.neighbours import _sklearn
from leelalab.anomaly.detectors.registry import register_detector
from leelalab.anomaly.detectors.statistical import ArrayState
from leelalab.anomaly.errors import AnomalyError
from leelalab.anomaly.features import FeatureView
from leelalab.runs.experiment import setting


@dataclasses.dataclass(frozen=True)
class ProbeSettings(DetectorSettings):
    c: float = setting(0.01, "inverse L2 strength of the logistic regression",
                       minimum=0, exclusive_minimum=True)  # fmt: skip


def _flat(view: FeatureView, hook: str) -> np.ndarray:
    parts = [values.reshape(len(values), -1) for _, values in view.iter_activations(hook)]
    return np.concatenate(parts).astype(np.float64)


@register_detector
class SupervisedProbe(ArrayState, Detector):
    name = "probe"
    description = "logistic regression on labelled pool activations (skyline, supervised)"
    uses_untrusted = True
    uses_labels = True
    fit_on = "labelled pool"
    Settings = ProbeSettings

    def _fit(self, trusted: FeatureView, untrusted: FeatureView | None) -> None:
        assert untrusted is not None and untrusted.labels is not None and self.layers is not None
        labels = untrusted.labels
        if labels.all() or not labels.any():
            raise AnomalyError(f"{self.name}: the pool needs both normal and anomalous positions")
        for hook in self.layers:
            x = _flat(untrusted, hook)
            mean, scale = x.mean(0), x.std(0)
            scale[scale == 0] = 1.0
            model = _sklearn().linear_model.LogisticRegression(C=self.params["c"], max_iter=2000)
            model.fit((x - mean) / scale, labels)
            self.arrays[hook] = {
                "mean": mean,
                "scale": scale,
                "weights": model.coef_[0].astype(np.float64),
                "bias": np.asarray(model.intercept_, dtype=np.float64),
            }

    def _score(self, inputs: FeatureView) -> dict[str, np.ndarray]:
        assert self.layers is not None
        scores = {}
        for hook in self.layers:
            arrays = self.arrays[hook]
            out = np.empty(len(inputs))
            for positions, values in inputs.iter_activations(hook):
                x = values.reshape(len(values), -1).astype(np.float64)
                out[positions] = ((x - arrays["mean"]) / arrays["scale"]) @ arrays["weights"]
            scores[hook] = out + arrays["bias"][0]
        return scores


__all__ = ["ProbeSettings", "SupervisedProbe"]
