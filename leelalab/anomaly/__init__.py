"""Mechanistic anomaly detection: detectors fitted on trusted activations or outputs, chess
tasks with ground truth (backdoor, mechanism distinction, out-of-distribution), and their
evaluation against answering with a distilled model.

A *task* (:mod:`leelalab.anomaly.positions`) is a directory of positions split into trusted
(normal only), an unlabelled untrusted pool and a labelled test set, built for one network by
:func:`~leelalab.anomaly.tasks.build_backdoor_task`,
:func:`~leelalab.anomaly.mechanism.build_mechanism_task` or
:func:`~leelalab.anomaly.tasks.build_ood_task`. Features are extracted once per (network,
task) into an HDF5 store (:mod:`leelalab.anomaly.features`) that every detector streams from
disk. Detectors (:mod:`leelalab.anomaly.detectors`) share one interface — ``fit(trusted,
untrusted)``, ``score(inputs) -> {layer: scores}``, ``aggregate(scores, "mean"|"max")``,
``save``/``load`` as safetensors + JSON — and a registry. :func:`run_anomaly` fits, scores,
measures (AUROC, AP, FPR@95%TPR with bootstrap CIs) and compares "answer with M unless a
detector flags" with "answer with the distilled m" on coverage–risk curves.

The backdoored maia-1900 is built by :func:`~leelalab.anomaly.finetune.train_backdoor` and
ships as ``load_network("backdoor-maia-1900")``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from leelalab.anomaly.errors import AnomalyError
from leelalab.anomaly.results import AnomalyResults, load_results
from leelalab.anomaly.settings import DEFAULT_DETECTORS, RunSettings, TaskSettings

if TYPE_CHECKING:
    from leelalab.anomaly.evaluation import run_anomaly
    from leelalab.anomaly.positions import Task, TaskPosition, load_task

_LAZY = {
    "run_anomaly": "leelalab.anomaly.evaluation",
    "Task": "leelalab.anomaly.positions",
    "TaskPosition": "leelalab.anomaly.positions",
    "load_task": "leelalab.anomaly.positions",
}
"""Names whose modules import chess or torch: loaded on first use, so that the command
line's help screens (which read the settings) stay light."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_DETECTORS",
    "AnomalyError",
    "AnomalyResults",
    "RunSettings",
    "TaskSettings",
    "Task",
    "TaskPosition",
    "load_results",
    "load_task",
    "run_anomaly",
]
