"""The four long jobs give the same outputs on Ray as in this process, byte for byte, also
when a worker is killed mid-run; and the ray executor fails clearly without Ray."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from leelalab.inference.networks import load_network
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.patching.residual import run_residual_patching
from leelalab.patching.settings import ResidualPatchingSettings
from leelalab.probing.store import cache_activations
from leelalab.puzzles.corruptions import CorruptionThresholds
from leelalab.puzzles.dataset import write_pairs_dataset
from leelalab.puzzles.filter import Thresholds, corrupt_dataset, filter_puzzles
from leelalab.runs.executor import FAULT_VARIABLE, Executor, ExecutorError
from positions import PUZZLES_CSV, corrupted_puzzles

# Loose thresholds, so that tiny random networks select puzzles and find corruptions.
SELECT_ALL = Thresholds(hard=1.0, correct=0.0, forcing=0.0)
ANY_CORRUPTION = CorruptionThresholds(
    weak_log_odds_change=100.0, strong_q_drop=-10.0, strong_max_prob=1.0, max_jsd=1.0
)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nets")
    strong = save_weights(random_resnet_weights(blocks=2, filters=16, seed=11), folder / "s.pb.gz")
    weak = save_weights(random_resnet_weights(blocks=1, filters=8, seed=12), folder / "w.pb.gz")
    return load_network(strong), load_network(weak)


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


RAY = Executor(kind="ray", workers=2)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def h5_contents(path: Path) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(
            lambda name, item: (
                found.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None
            )
        )
        found["attrs"] = np.array(sorted((k, str(v)) for k, v in handle.attrs.items()))
    return found


def assert_same_h5(a: Path, b: Path) -> None:
    left, right = h5_contents(a), h5_contents(b)
    assert left.keys() == right.keys()
    for key in left:
        assert np.array_equal(left[key], right[key]), key
    assert digest(a) == digest(b)


def filter_and_corrupt(nets, output: Path, executor: Executor) -> None:
    strong, weak = nets
    filter_puzzles(
        strong,
        weak,
        PUZZLES_CSV,
        output,
        thresholds=SELECT_ALL,
        limit=48,
        chunk_size=16,
        batch_size=32,
        progress=False,
        executor=executor,
    )
    corrupt_dataset(
        output,
        strong,
        weak,
        ANY_CORRUPTION,
        chunk_size=4,
        progress=False,
        executor=executor,
    )


@pytest.mark.slow
def test_filter_and_corrupt_on_ray_equal_the_local_run(nets, ray_instance, tmp_path) -> None:
    filter_and_corrupt(nets, tmp_path / "local", Executor())
    filter_and_corrupt(nets, tmp_path / "ray", RAY)
    for name in ("dataset.jsonl", "corruptions.jsonl"):
        assert digest(tmp_path / "local" / name) == digest(tmp_path / "ray" / name), name
    corruptions = (tmp_path / "local" / "corruptions.jsonl").read_text().splitlines()
    assert len(corruptions) > 8 and any('"fen"' in line for line in corruptions)
    assert not (tmp_path / "ray" / "corruptions.parts").exists()


@pytest.mark.slow
def test_patching_and_caching_on_ray_equal_the_local_run(nets, ray_instance, tmp_path) -> None:
    strong, _ = nets
    dataset = tmp_path / "dataset"
    write_pairs_dataset(dataset, corrupted_puzzles(10))
    for name, executor in (("local", Executor()), ("ray", RAY)):
        run_residual_patching(
            strong,
            dataset,
            tmp_path / f"patch-{name}",
            ResidualPatchingSettings(chunk_size=3),
            progress=False,
            executor=executor,
        )
        for random_init in (None, 7):
            cache_activations(
                strong,
                dataset,
                ["blocks.*.hook_resid_post"],
                tmp_path / f"acts-{name}-{random_init}.h5",
                part_size=4,
                random_init=random_init,
                progress=False,
                executor=executor,
            )
    assert_same_h5(tmp_path / "patch-local" / "patching.h5", tmp_path / "patch-ray" / "patching.h5")
    for random_init in (None, 7):
        assert_same_h5(
            tmp_path / f"acts-local-{random_init}.h5", tmp_path / f"acts-ray-{random_init}.h5"
        )


@pytest.mark.slow
def test_a_worker_killed_mid_run_changes_nothing(nets, ray_instance, tmp_path, monkeypatch) -> None:
    strong, _ = nets
    dataset = tmp_path / "dataset"
    write_pairs_dataset(dataset, corrupted_puzzles(10))
    run_residual_patching(
        strong, dataset, tmp_path / "local", ResidualPatchingSettings(chunk_size=2), progress=False
    )
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_VARIABLE, f"2:{marker}")
    run_residual_patching(
        strong,
        dataset,
        tmp_path / "ray",
        ResidualPatchingSettings(chunk_size=2),
        progress=False,
        executor=RAY,
    )
    assert marker.exists(), "no worker was killed"
    assert_same_h5(tmp_path / "local" / "patching.h5", tmp_path / "ray" / "patching.h5")
    filter_and_corrupt(nets, tmp_path / "filter-local", Executor())
    monkeypatch.setenv(FAULT_VARIABLE, f"1:{tmp_path / 'killed-again'}")
    filter_and_corrupt(nets, tmp_path / "filter-ray", RAY)
    assert (tmp_path / "killed-again").exists()
    for name in ("dataset.jsonl", "corruptions.jsonl"):
        assert digest(tmp_path / "filter-local" / name) == digest(tmp_path / "filter-ray" / name)


@pytest.mark.slow
def test_an_interrupted_ray_run_resumes_like_a_local_one(nets, ray_instance, tmp_path) -> None:
    strong, _ = nets
    dataset = tmp_path / "dataset"
    write_pairs_dataset(dataset, corrupted_puzzles(10))
    local = run_residual_patching(
        strong, dataset, tmp_path / "local", ResidualPatchingSettings(chunk_size=2), progress=False
    )
    # A local run stopped after two chunks, finished on Ray.
    partial = tmp_path / "resumed"
    run_residual_patching(
        strong, dataset, partial, ResidualPatchingSettings(chunk_size=2, limit=4), progress=False
    )
    (partial / "patching.h5").unlink()
    (partial / "run.json").unlink()
    settings = (partial / "settings.json").read_text().replace('"limit": 4', '"limit": null')
    (partial / "settings.json").write_text(settings)
    resumed = run_residual_patching(
        strong,
        dataset,
        partial,
        ResidualPatchingSettings(chunk_size=2),
        progress=False,
        executor=RAY,
    )
    assert_same_h5(local, resumed)


def test_networks_built_in_memory_cannot_go_to_ray(tmp_path) -> None:
    from leelalab.models import build_network

    network = build_network(random_resnet_weights(blocks=1, filters=8, seed=1))
    dataset = tmp_path / "dataset"
    write_pairs_dataset(dataset, corrupted_puzzles(3))
    with pytest.raises(ExecutorError, match="built in memory"):
        run_residual_patching(network, dataset, tmp_path / "out", progress=False, executor=RAY)


def test_without_ray_the_ray_executor_names_the_extra(nets, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    strong, _ = nets
    dataset = tmp_path / "dataset"
    write_pairs_dataset(dataset, corrupted_puzzles(3))
    with pytest.raises(ExecutorError, match=r'pip install "leelalab\[ray\]"'):
        run_residual_patching(strong, dataset, tmp_path / "out", progress=False, executor=RAY)
    assert not (tmp_path / "out").exists()
    assert os.environ.get(FAULT_VARIABLE) is None


def test_the_cli_executor_options_reach_the_job(nets, tmp_path, monkeypatch, capsys) -> None:
    from leelalab.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)
    strong, _ = nets
    dataset = tmp_path / "dataset"
    write_pairs_dataset(dataset, corrupted_puzzles(3))
    args = ["patch", "residual", str(dataset), "--net", strong.source, "--output"]
    assert main([*args, str(tmp_path / "out"), "--executor", "ray", "--workers", "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("leelalab: error:") and 'pip install "leelalab[ray]"' in err
    assert main([*args, str(tmp_path / "out"), "--no-progress"]) == 0
