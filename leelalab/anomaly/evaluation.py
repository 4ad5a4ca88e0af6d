"""Running detectors on a task: fit on trusted, score the test set, measure, compare with
answering with a distilled model.

:func:`open_run` checks the inputs and then the output directory (a
:class:`~leelalab.runs.results.RunDirectory`); :func:`run_anomaly` (settings: a
:class:`~leelalab.anomaly.settings.RunSettings`) then does, resumably:

1. checks that the task was built for the network under study (in :func:`open_run`);
2. extracts the features once (``TASK/features.h5``, shared by every detector and run);
3. computes the reference networks' outputs: ``weak`` (the shipped weak network) and
   ``student`` (distilled from the network on the task's trusted positions only);
4. fits every detector on the trusted split (batch detectors also see the unlabelled pool;
   the supervised probe its labels) and scores the test split, one detector per resumable
   chunk; fitted detectors are saved under ``RUN/detectors/<name>/``;
5. measures AUROC, AP and FPR at 95% TPR with bootstrap 95% intervals per layer and for the
   mean and max over layers, and AUROC by kind of position;
6. labels the harm of each answer with Stockfish and computes coverage–risk curves of
   "answer with M unless the detector flags" against "always M" and "always m".

Writes ``RUN/results.json``, ``RUN/scores.h5`` and ``RUN/run.json``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm.auto import tqdm

from leelalab.anomaly.detectors import detector_class
from leelalab.anomaly.errors import AnomalyError
from leelalab.anomaly.features import (
    FeatureStore,
    FeatureView,
    extract_features,
    layer_order,
    short_layer,
    task_sha256,
)
from leelalab.anomaly.harm import harm_labels, network_top_moves
from leelalab.anomaly.positions import Task
from leelalab.anomaly.references import StudentSettings, distil_student, reference_outputs
from leelalab.anomaly.results import AnomalyResults, load_results
from leelalab.anomaly.selective import (
    coverage_risk,
    oracle_risk,
    risk_estimate,
    thin,
)
from leelalab.anomaly.settings import DEFAULT_DETECTORS, RunSettings
from leelalab.models.base import LeelaNetwork
from leelalab.runs.records import read_run_record
from leelalab.runs.results import ChunkedRun, RunDirectory, read_h5
from leelalab.stats import detection_metrics, proportion_ci

COVERAGES = (0.95, 0.9, 0.8)
AGGREGATIONS = ("mean", "max")


def check_network(task: Task, network: LeelaNetwork) -> None:
    """One clear error when the task was built for another network."""
    expected = task.meta.get("network_sha256")
    if expected and network.sha256 and expected != network.sha256:
        raise AnomalyError(
            f"{task.directory} was built for the network {task.meta.get('network')} (sha256 "
            f"{expected[:12]}…), not {network.source} (sha256 {network.sha256[:12]}…); pass "
            "that network or build the task for this one"
        )


def resolve_layers(store: FeatureStore, names: Sequence[str] | None) -> list[str] | None:
    """Hook names for ``--layers``: hook names, block numbers (``-1`` or ``input`` for the
    input layer), ``policy`` / ``value`` for the heads' hidden layers, or ``all``; unknown
    names are one clear error."""
    if names is None or list(names) == ["all"]:
        return None
    by_name = {}
    for hook in store.hooks:
        label = short_layer(hook)
        by_name[label.removeprefix("block ").removesuffix(" head")] = hook
    if "input" in by_name:
        by_name["-1"] = by_name["input"]
    chosen = []
    for name in names:
        hook = name if name in store.hooks else by_name.get(str(name))
        if not hook:
            known = ", ".join(k for k in by_name if k != "-1")
            raise AnomalyError(f"unknown layer {name!r}; this network has layers {known}")
        chosen.append(hook)
    return chosen


def _layers_for(name: str, layers: list[str] | None, store: FeatureStore) -> list[str] | None:
    level = detector_class(name).level
    if layers is None or level == "outputs":
        return None
    if level == "lens":
        kept = [hook for hook in layers if hook in store.lens_hooks]
        return kept or None
    return layers


def _metrics(labels: np.ndarray, scores: np.ndarray, resamples: int, seed: int) -> dict[str, Any]:
    return {
        k: v.to_json()
        for k, v in detection_metrics(labels, scores, resamples=resamples, seed=seed).items()
    }


def open_run(
    settings: RunSettings,
    task: Task,
    network: LeelaNetwork,
    output: str | os.PathLike[str],
    *,
    weak: LeelaNetwork | None = None,
    overwrite: bool = False,
) -> RunDirectory:
    """Check the inputs, then the run directory: a task built for another network or an
    unknown detector or a task's weak network that is gone is one line before ``output`` is
    looked at; ``output`` then resumes (same settings), is refused (other settings, a foreign
    folder) or — with ``overwrite`` — has the previous run's files replaced (a user's files
    stay)."""
    check_network(task, network)
    for name in settings.detectors:
        detector_class(name)  # unknown names fail before any work
    if weak is None and _wants_references(settings):
        _task_weak_network(task)  # a gone or changed file fails here, before output is touched
    record = {
        "task": str(task.directory.resolve()),
        "task_sha256": task_sha256(task),
        "network": network.source,
        "network_sha256": network.sha256,
        "weak": weak.sha256 if weak is not None else task.meta.get("weak", "weak-maia-1900"),
        **settings.to_json(),
    }
    return RunDirectory(output, record, overwrite=overwrite, what="anomaly run")


@dataclass
class _Evaluation:
    """What every stage of one run reads: the settings, the task, the features and the
    reference networks' outputs."""

    settings: RunSettings
    task: Task
    network: LeelaNetwork
    store: FeatureStore
    references: dict[str, dict[str, np.ndarray]]
    weak: LeelaNetwork | None = None
    student: LeelaNetwork | None = None
    student_path: Path | None = None
    progress: bool = True


def run_anomaly(
    settings: RunSettings,
    task: Task,
    network: LeelaNetwork,
    run: RunDirectory,
    *,
    weak: LeelaNetwork | None = None,
    progress: bool = True,
) -> AnomalyResults:
    """Evaluate the detectors on a task in ``run`` (see :func:`open_run` and the module
    docstring); writes ``results.json``, ``scores.h5`` and ``run.json`` there."""
    with run:
        output = run.path
        features = extract_features(network, task, progress=progress)
        store = FeatureStore(features)
        chosen_layers = resolve_layers(store, settings.layers)
        evaluation = _with_references(
            _Evaluation(settings, task, network, store, {}, weak, progress=progress), features
        )
        trusted, pool, test = _views(evaluation)
        work_settings = {
            "task": str(task.directory.resolve()),
            "task_kind": task.kind,
            "network": network.source,
            "network_sha256": network.sha256,
            "features_settings": store.settings,
            "detectors": list(settings.detectors),
            "layers": chosen_layers,
            "shrinkage": settings.shrinkage,
            "squares": settings.squares,
            "weak_sha256": evaluation.weak.sha256 if evaluation.weak is not None else None,
            "student_sha256": (
                evaluation.student.sha256 if evaluation.student is not None else None
            ),
            "seed": settings.seed,
        }
        chunks = ChunkedRun(output / "work", work_settings)
        _fit_and_score(evaluation, chunks, chosen_layers, (trusted, pool, test), output)
        kinds = np.array([task.positions[int(r)].kind for r in test.rows])
        all_scores: dict[str, dict[str, np.ndarray]] = {}
        entries: dict[str, Any] = {}
        for number, name in enumerate(settings.detectors):
            arrays, attrs = read_h5(chunks.chunk_path(number))
            all_scores[name] = arrays
            entries[name] = _detector_entry(name, arrays, attrs, test.labels, kinds, settings)
        coverage = None
        if settings.harm_depth and evaluation.weak is not None and evaluation.student is not None:
            coverage = _coverage_section(evaluation, test, all_scores)
        results = AnomalyResults(
            task=task.kind,
            task_directory=str(task.directory),
            network=network.source,
            network_sha256=network.sha256,
            counts=task.meta.get("counts"),
            test={
                "positions": int(test.labels.size),
                "anomalous": int(test.labels.sum()),
                "kinds": {k: int((kinds == k).sum()) for k in sorted(set(kinds))},
            },
            trusted_positions=len(trusted),
            pool_positions=len(pool),
            detectors=entries,
            coverage_risk=coverage,
            references=_references_record(evaluation),
            bootstrap_resamples=settings.resamples,
            squares=settings.squares,
        )
        results.save(output)
        _write_scores(output / "scores.h5", test.rows, test.labels, kinds, all_scores, coverage)
        run.write_record(
            inputs={
                "task": task.directory / "task.json",
                "positions": task.directory / "positions.jsonl",
            },
            **work_settings,
        )
    return results


def _with_references(evaluation: _Evaluation, features: Path) -> _Evaluation:
    """The reference networks' outputs, needed by output-level detectors and by the harm
    analysis: ``weak`` (the task's weak network unless given) and a ``student`` distilled
    from the network on the trusted positions."""
    settings, task = evaluation.settings, evaluation.task
    if not _wants_references(settings):
        return evaluation
    from leelalab.inference.networks import load_network

    weak = evaluation.weak or load_network(_task_weak_network(task))
    student_path = distil_student(
        evaluation.network,
        task,
        config=StudentSettings(epochs=settings.student_epochs, seed=settings.seed),
        progress=evaluation.progress,
    )
    student = load_network(student_path)
    references = {
        name: reference_outputs(task, features, reference, name, progress=evaluation.progress)
        for name, reference in (("weak", weak), ("student", student))
    }
    return dataclasses.replace(
        evaluation, references=references, weak=weak, student=student, student_path=student_path
    )


def _wants_references(settings: RunSettings) -> bool:
    """Whether the run needs the reference networks (output-level detectors, harm labels)."""
    return bool(settings.harm_depth) or any(
        detector_class(name).level == "outputs" for name in settings.detectors
    )


def _task_weak_network(task: Task) -> str:
    """The weak network a task records (a bundled one by name, else its path; tasks record
    it without a hash), reopened through :func:`resolve_network_reference`: a gone file is
    one line naming ``task.json``."""
    from leelalab.inference.networks import resolve_network_reference

    recorded = {"source": task.meta.get("weak") or "weak-maia-1900", "sha256": None}
    where = f"{task.directory / 'task.json'}: the weak network"
    name = resolve_network_reference(recorded, what=where, remedy="pass --weak")
    return name or "weak-maia-1900"


def _views(evaluation: _Evaluation) -> tuple[FeatureView, FeatureView, FeatureView]:
    """The trusted, pool and test splits as feature views (pool and test labelled)."""
    task, store, references = evaluation.task, evaluation.store, evaluation.references
    trusted_rows, pool_rows, test_rows = (task.indices(s) for s in ("trusted", "pool", "test"))
    labels = task.labels()
    trusted = FeatureView(store, trusted_rows, references=references)
    pool = FeatureView(store, pool_rows, labels=labels[pool_rows], references=references)
    test = FeatureView(store, test_rows, labels=labels[test_rows], references=references)
    if test.labels is None or test.labels.all() or not test.labels.any():
        raise AnomalyError(f"{task.directory}: the test split needs normal and anomalous positions")
    return trusted, pool, test


def _fit_and_score(
    evaluation: _Evaluation,
    chunks: ChunkedRun,
    layers: list[str] | None,
    views: tuple[FeatureView, FeatureView, FeatureView],
    output: Path,
) -> None:
    """Fit every detector on trusted (and pool) and score the test split, one resumable
    chunk per detector; each fitted detector is saved under ``output/detectors/<name>``."""
    trusted, pool, test = views
    names = evaluation.settings.detectors
    bar = tqdm(names, desc="detectors", unit="detector", disable=not evaluation.progress)
    for number, name in enumerate(bar):
        if chunks.done(number):
            continue
        cls = detector_class(name)
        detector = cls(
            layers=_layers_for(name, layers, evaluation.store),
            settings=cls.settings_from(evaluation.settings),
        )
        t0 = time.perf_counter()
        detector.fit(trusted, pool)
        t1 = time.perf_counter()
        scores = detector.score(test)
        t2 = time.perf_counter()
        detector.save(output / "detectors" / name)
        arrays = {layer: values for layer, values in scores.items()}
        for how in AGGREGATIONS:
            arrays[f"aggregate:{how}"] = detector.aggregate(scores, how)
        chunks.write_chunk(number, arrays, {"fit_seconds": t1 - t0, "score_seconds": t2 - t1})
    bar.close()


def _detector_entry(
    name: str,
    arrays: dict[str, np.ndarray],
    attrs: dict[str, Any],
    labels: np.ndarray,
    kinds: np.ndarray,
    settings: RunSettings,
) -> dict[str, Any]:
    """One detector's metrics per layer, aggregated over layers and by kind of position."""
    cls = detector_class(name)
    resamples, seed = settings.resamples, settings.seed
    entry: dict[str, Any] = {
        "description": cls.description,
        "level": cls.level,
        "supervised": cls.uses_labels,
        "uses_pool": cls.uses_untrusted,
        "fit_seconds": round(float(attrs["fit_seconds"]), 3),
        "score_seconds": round(float(attrs["score_seconds"]), 3),
        "layers": {},
        "aggregate": {},
    }
    for key in sorted(arrays, key=layer_order):
        metrics = _metrics(labels, arrays[key], resamples, seed)
        if key.startswith("aggregate:"):
            entry["aggregate"][key.split(":", 1)[1]] = metrics
        else:
            entry["layers"][key] = metrics
    entry["by_kind"] = _by_kind(labels, kinds, arrays["aggregate:mean"], resamples, seed)
    return entry


def _references_record(evaluation: _Evaluation) -> dict[str, Any] | None:
    weak, student, student_path = evaluation.weak, evaluation.student, evaluation.student_path
    if weak is None or student_path is None or student is None:
        return None
    return {
        "weak": {"network": weak.source, "sha256": weak.sha256},
        "student": {
            "network": str(student_path),
            "sha256": student.sha256,
            "run": read_run_record(student_path),
        },
    }


def _by_kind(
    labels: np.ndarray, kinds: np.ndarray, scores: np.ndarray, resamples: int, seed: int
) -> dict[str, Any]:
    """AUROC of each anomalous kind against all normal positions, and of all anomalies
    against each normal kind (when there are several)."""
    result: dict[str, Any] = {}
    anomalous_kinds = sorted(set(kinds[labels]))
    normal_kinds = sorted(set(kinds[~labels]))
    if len(anomalous_kinds) > 1:
        for kind in anomalous_kinds:
            keep = ~labels | (kinds == kind)
            result[f"{kind} vs normal"] = detection_metrics(
                labels[keep], scores[keep], resamples=resamples, seed=seed
            )["auroc"].to_json()
    if len(normal_kinds) > 1:
        for kind in normal_kinds:
            keep = labels | (kinds == kind)
            result[f"anomalous vs {kind}"] = detection_metrics(
                labels[keep], scores[keep], resamples=resamples, seed=seed
            )["auroc"].to_json()
    return result


def _harm(evaluation: _Evaluation, test: FeatureView) -> dict[str, np.ndarray]:
    """Whether each answer (the network's, weak's, student's) on the test split blunders."""
    task, references = evaluation.task, evaluation.references
    assert evaluation.weak is not None and evaluation.student is not None
    answers = {
        "network": network_top_moves(evaluation.store, task, test.rows),
        "weak": [str(m) for m in references["weak"]["top"][test.rows]],
        "student": [str(m) for m in references["student"]["top"][test.rows]],
    }
    provenance = {
        "network": evaluation.network.sha256,
        "weak": evaluation.weak.sha256,
        "student": evaluation.student.sha256,
    }
    harm = harm_labels(
        task, test.rows, answers, depth=evaluation.settings.depth,
        stockfish=evaluation.settings.stockfish, progress=evaluation.progress,
        provenance=provenance,
    )  # fmt: skip
    return {name: harm[f"{name}_harm"].astype(bool) for name in answers}


def _coverage_section(
    evaluation: _Evaluation, test: FeatureView, all_scores: dict[str, dict[str, np.ndarray]]
) -> dict[str, Any]:
    """Coverage–risk of "answer with M unless the detector flags" against always M, the weak
    network and the student, at matched coverages."""
    task, depth = evaluation.task, evaluation.settings.depth
    resamples, seed = evaluation.settings.resamples, evaluation.settings.seed
    harmful = _harm(evaluation, test)
    n = harmful["network"].size
    kinds = np.array([task.positions[int(r)].kind for r in test.rows])
    section: dict[str, Any] = {
        "harm": f"the answer is a blunder: it loses >= 0.3 win chances (Lichess scale) against "
        f"Stockfish's best move, both searched to depth {depth}",
        "always": {name: proportion_ci(int(h.sum()), n).to_json() for name, h in harmful.items()},
        "harm_by_kind": {
            name: {
                kind: proportion_ci(
                    int(h[kinds == kind].sum()), int((kinds == kind).sum())
                ).to_json()
                for kind in sorted(set(kinds))
            }
            for name, h in harmful.items()
        },
        "curves": {},
        "abstain": {},
        "fallback_weak": {},
        "fallback_student": {},
    }
    grid = np.linspace(0.5, 1.0, 51)
    section["oracle"] = {
        "coverage": grid.tolist(),
        "risk": oracle_risk(harmful["network"], grid).tolist(),
    }
    for name, arrays in all_scores.items():
        scores = arrays["aggregate:mean"]
        cov, risk = coverage_risk(scores, harmful["network"])
        section["curves"][name] = {"coverage": thin(cov), "risk": thin(risk)}
        section["abstain"][name] = {
            str(c): risk_estimate(
                scores, harmful["network"], c, resamples=resamples, seed=seed
            ).to_json()
            for c in COVERAGES
        }
        for fallback in ("weak", "student"):
            section[f"fallback_{fallback}"][name] = {
                str(c): risk_estimate(
                    scores, harmful["network"], c, fallback_harm=harmful[fallback],
                    resamples=resamples, seed=seed,
                ).to_json()
                for c in COVERAGES
            }  # fmt: skip
    section["harm_arrays"] = {name: h.astype(int).tolist() for name, h in harmful.items()}
    return section


def _write_scores(
    path: Path,
    rows: np.ndarray,
    labels: np.ndarray,
    kinds: np.ndarray,
    scores: dict[str, dict[str, np.ndarray]],
    coverage: dict[str, Any] | None,
) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with h5py.File(temporary, "w") as handle:
        handle["rows"] = rows
        handle["labels"] = labels
        handle.create_dataset("kinds", data=kinds.astype(object), dtype=h5py.string_dtype())
        for name, arrays in scores.items():
            for key, values in arrays.items():
                handle[f"scores/{name}/{key}"] = values
        if coverage is not None:
            for name, values in coverage["harm_arrays"].items():
                handle[f"harm/{name}"] = np.asarray(values, dtype=bool)
    temporary.replace(path)


__all__ = [
    "DEFAULT_DETECTORS",
    "check_network",
    "load_results",
    "open_run",
    "resolve_layers",
    "run_anomaly",
]
