"""Running detectors on a task: fit on trusted, score the test set, measure, compare with
answering with a distilled model.

:func:`run_anomaly` does, resumably:

1. checks that the task was built for the network under study;
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

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm.auto import tqdm

from leelalab.anomaly.defaults import DEFAULT_DETECTORS
from leelalab.anomaly.detectors import detector_class, make_detector
from leelalab.anomaly.errors import AnomalyError
from leelalab.anomaly.features import (
    FeatureStore,
    FeatureView,
    extract_features,
    layer_order,
    short_layer,
)
from leelalab.anomaly.harm import harm_labels, network_top_moves
from leelalab.anomaly.positions import Task, load_task
from leelalab.anomaly.references import StudentConfig, distil_student, reference_outputs
from leelalab.anomaly.selective import (
    coverage_risk,
    oracle_risk,
    risk_estimate,
    thin,
)
from leelalab.models.base import LeelaNetwork
from leelalab.runs.results import ChunkedRun, read_h5, versions, write_text_atomically
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


def run_anomaly(
    task_directory: str | os.PathLike[str],
    output: str | os.PathLike[str],
    network: LeelaNetwork,
    *,
    detectors: Sequence[str] = DEFAULT_DETECTORS,
    layers: Sequence[str] | None = None,
    weak: LeelaNetwork | None = None,
    student: StudentConfig | None = None,
    shrinkage: float = 0.0,
    squares: str = "mean",
    harm_depth: int | None = 10,
    stockfish: str | None = None,
    resamples: int = 1000,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``detectors`` on a task; see the module docstring. Returns the results."""
    started = time.perf_counter()
    task = load_task(task_directory)
    check_network(task, network)
    for name in detectors:
        detector_class(name)  # unknown names fail before any work
    output = Path(output)
    if output.exists() and overwrite:
        shutil.rmtree(output)
    features = extract_features(network, task, progress=progress)
    store = FeatureStore(features)
    chosen_layers = resolve_layers(store, layers)

    # The reference networks are needed by output-level detectors and by the harm analysis.
    wants_references = bool(harm_depth) or any(
        detector_class(name).level == "outputs" for name in detectors
    )
    references: dict[str, dict[str, np.ndarray]] = {}
    student_path: Path | None = None
    student_network: LeelaNetwork | None = None
    if wants_references:
        from leelalab.inference.networks import load_network, resolve_network_reference

        if weak is None:
            # Tasks record the weak network as given (a bundled one by name), without a hash.
            recorded = {"source": task.meta.get("weak") or "weak-maia-1900", "sha256": None}
            where = f"{task.directory / 'task.json'}: the weak network"
            name = resolve_network_reference(recorded, what=where, remedy="pass --weak")
            weak = load_network(name or "weak-maia-1900")
        student_path = distil_student(
            network, task, config=student or StudentConfig(seed=seed), progress=progress
        )
        student_network = load_network(student_path)
        references = {
            "weak": reference_outputs(task, features, weak, "weak", progress=progress),
            "student": reference_outputs(
                task, features, student_network, "student", progress=progress
            ),
        }
    trusted_rows, pool_rows, test_rows = (task.indices(s) for s in ("trusted", "pool", "test"))
    labels = task.labels()
    trusted = FeatureView(store, trusted_rows, references=references)
    pool = FeatureView(store, pool_rows, labels=labels[pool_rows], references=references)
    test = FeatureView(store, test_rows, labels=labels[test_rows], references=references)
    if test.labels is None or test.labels.all() or not test.labels.any():
        raise AnomalyError(f"{task.directory}: the test split needs normal and anomalous positions")

    settings = {
        "task": str(task.directory.resolve()),
        "task_kind": task.kind,
        "network": network.source,
        "network_sha256": network.sha256,
        "features_settings": store.settings,
        "detectors": list(detectors),
        "layers": chosen_layers,
        "shrinkage": shrinkage,
        "squares": squares,
        "weak_sha256": weak.sha256 if weak is not None else None,
        "student_sha256": student_network.sha256 if student_network is not None else None,
        "seed": seed,
    }
    run = ChunkedRun(output / "work", settings)
    bar = tqdm(detectors, desc="detectors", unit="detector", disable=not progress)
    for number, name in enumerate(bar):
        if run.done(number):
            continue
        params: dict[str, Any] = {}
        if name in ("mahalanobis", "relative-mahalanobis", "que"):
            params["shrinkage"] = shrinkage
        if name in ("isolation-forest", "lof"):
            params["seed"] = seed
        if detector_class(name).level == "activations" and name != "probe":
            params["squares"] = squares
        detector = make_detector(name, layers=_layers_for(name, chosen_layers, store), **params)
        t0 = time.perf_counter()
        detector.fit(trusted, pool)
        t1 = time.perf_counter()
        scores = detector.score(test)
        t2 = time.perf_counter()
        detector.save(output / "detectors" / name)
        arrays = {layer: values for layer, values in scores.items()}
        for how in AGGREGATIONS:
            arrays[f"aggregate:{how}"] = detector.aggregate(scores, how)
        run.write_chunk(number, arrays, {"fit_seconds": t1 - t0, "score_seconds": t2 - t1})
    bar.close()

    test_labels = test.labels
    kinds = np.array([task.positions[int(r)].kind for r in test.rows])
    all_scores: dict[str, dict[str, np.ndarray]] = {}
    results: dict[str, Any] = {}
    for number, name in enumerate(detectors):
        arrays, attrs = read_h5(run.chunk_path(number))
        all_scores[name] = arrays
        cls = detector_class(name)
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
            metrics = _metrics(test_labels, arrays[key], resamples, seed)
            if key.startswith("aggregate:"):
                entry["aggregate"][key.split(":", 1)[1]] = metrics
            else:
                entry["layers"][key] = metrics
        entry["by_kind"] = _by_kind(test_labels, kinds, arrays["aggregate:mean"], resamples, seed)
        results[name] = entry

    coverage = None
    if harm_depth and weak is not None and student_network is not None:
        coverage = _coverage_section(
            task, store, test, references, all_scores, network, weak, student_network,
            harm_depth, stockfish, resamples, seed, progress,
        )  # fmt: skip
    summary = {
        "task": task.kind,
        "task_directory": str(task.directory),
        "network": network.source,
        "network_sha256": network.sha256,
        "counts": task.meta.get("counts"),
        "test": {
            "positions": int(test_labels.size),
            "anomalous": int(test_labels.sum()),
            "kinds": {k: int((kinds == k).sum()) for k in sorted(set(kinds))},
        },
        "trusted_positions": int(trusted_rows.size),
        "pool_positions": int(pool_rows.size),
        "detectors": results,
        "coverage_risk": coverage,
        "references": _references_record(weak, student_path, student_network),
        "bootstrap_resamples": resamples,
        "squares": squares,
    }
    write_text_atomically(output / "results.json", json.dumps(summary, indent=2))
    _write_scores(output / "scores.h5", test.rows, test_labels, kinds, all_scores, coverage)
    record = {
        **settings,
        "seconds_this_session": round(time.perf_counter() - started, 1),
        "versions": versions(),
    }
    write_text_atomically(output / "run.json", json.dumps(record, indent=2))
    return summary


def _references_record(
    weak: LeelaNetwork | None, student_path: Path | None, student: LeelaNetwork | None
) -> dict[str, Any] | None:
    if weak is None or student_path is None or student is None:
        return None
    return {
        "weak": {"network": weak.source, "sha256": weak.sha256},
        "student": {
            "network": str(student_path),
            "sha256": student.sha256,
            "run": json.loads(Path(str(student_path) + ".run.json").read_text(encoding="utf-8")),
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


def _coverage_section(
    task: Task,
    store: FeatureStore,
    test: FeatureView,
    references: dict[str, dict[str, np.ndarray]],
    all_scores: dict[str, dict[str, np.ndarray]],
    network: LeelaNetwork,
    weak: LeelaNetwork,
    student: LeelaNetwork,
    depth: int,
    stockfish: str | None,
    resamples: int,
    seed: int,
    progress: bool,
) -> dict[str, Any]:
    answers = {
        "network": network_top_moves(store, task, test.rows),
        "weak": [str(m) for m in references["weak"]["top"][test.rows]],
        "student": [str(m) for m in references["student"]["top"][test.rows]],
    }
    harm = harm_labels(
        task, test.rows, answers, depth=depth, stockfish=stockfish, progress=progress,
        provenance={"network": network.sha256, "weak": weak.sha256, "student": student.sha256},
    )  # fmt: skip
    harmful = {name: harm[f"{name}_harm"].astype(bool) for name in answers}
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


def load_results(directory: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(directory) / "results.json"
    if not path.is_file():
        raise AnomalyError(f"{directory}: no results.json (run `leelalab anomaly run` first)")
    return json.loads(path.read_text(encoding="utf-8"))


__all__ = ["DEFAULT_DETECTORS", "check_network", "load_results", "resolve_layers", "run_anomaly"]
