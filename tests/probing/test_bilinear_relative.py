"""The bilinear probe reads a signal that exists only *relative to the query square*.

``tests/probing/test_probes.py`` plants a fixed direction at the target square, which a per-square
linear probe finds as well. Here the 3rd move's target carries, in one half of its
channels, a noisy copy of what the query square (the 1st move's target) holds in the other
half; every square has the same N(0, 1) marginal, so on its own the target looks like
every other square, so ``w · x_s`` cannot find it; only a comparison with the query
(⟨W_x x_s, W_z z⟩, the paper's probe) can. If the bilinear probe ignored its query, or the
query were read at the wrong square, this test would fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from leelalab.probing.probes import ProbeConfig, ProbeResults, train_probes
from leelalab.probing.store import STORE_FORMAT

D = 64  # as maia; the relation needs enough channels to stand out of the noise
HALF = D // 2
HOOK = "blocks.0.hook_resid_post"


def _relational_store(path: Path, n: int = 2000, seed: int = 0, coupling: float = 0.9) -> str:
    rng = np.random.default_rng(seed)
    first = rng.integers(0, 64, n)
    third = (first + rng.integers(1, 64, n)) % 64  # never the query square itself
    move_squares = np.full((n, 7, 2), -1, dtype=np.int8)
    move_squares[:, 0, 1] = first
    move_squares[:, 2, 1] = third
    acts = rng.normal(size=(n, 64, D)).astype(np.float32)
    rows = np.arange(n)
    # The target's second half is a noisy copy of the query's first half, with the same
    # unit variance: every square, the target included, has the same N(0, 1) marginal, so
    # no per-square statistic (mean, norm, variance) can single the target out.
    noise = rng.normal(size=(n, HALF)).astype(np.float32)
    acts[rows, third, HALF:] = (
        coupling * acts[rows, first, :HALF] + np.sqrt(1 - coupling**2) * noise
    )
    with h5py.File(path, "w") as handle:
        handle.create_dataset(f"activations/{HOOK}", data=acts)
        ids = np.array([f"p{i}" for i in range(n)], dtype=object)
        handle.create_dataset("puzzle_ids", data=ids, dtype=h5py.string_dtype())
        handle.create_dataset("move_squares", data=move_squares)
        handle.create_dataset("puzzle_type", data=rng.integers(0, 3, n).astype(np.int16))
        for flag in ("is_mate", "selected", "different_targets"):
            handle.create_dataset(flag, data=np.zeros(n, dtype=bool))
        handle.create_dataset("n_moves", data=np.full(n, 3, dtype=np.int16))
        handle.attrs["format"] = STORE_FORMAT
        handle.attrs["hooks"] = json.dumps([HOOK])
        handle.attrs["settings"] = json.dumps({"network": "synthetic", "random_init": None})
    return str(path)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _relational_store(tmp_path_factory.mktemp("relational") / "acts.h5")


def _result(summary: ProbeResults) -> dict:
    (result,) = summary.results
    return result


def test_bilinear_probe_reads_the_target_relative_to_the_query(store: str, tmp_path) -> None:
    bilinear = _result(
        train_probes(store, tmp_path / "b", ProbeConfig(seeds=[0, 1]), progress=False)
    )
    assert bilinear["accuracy_mean"] > 0.8
    assert bilinear["control_mean"] < 0.1  # labels permuted: the relation is gone
    assert bilinear["selectivity"] > 0.7


def test_a_probe_without_the_query_is_at_chance(store: str, tmp_path) -> None:
    config = ProbeConfig(probe="linear", seeds=[0], control=False)
    linear = _result(train_probes(store, tmp_path / "l", config, progress=False))
    assert linear["accuracy_mean"] < 0.1  # chance is 1/64


def test_the_wrong_query_square_is_at_chance(store: str, tmp_path) -> None:
    # The same activations, but z read at a random square that carries no key (the
    # store's 1st-move *source*, rewritten to random squares): nothing to compare with.
    with h5py.File(store, "r") as handle:
        squares = handle["move_squares"][()]
    rng = np.random.default_rng(1)
    squares[:, 0, 0] = rng.integers(0, 64, len(squares))
    other = tmp_path / "other.h5"
    with h5py.File(store, "r") as source, h5py.File(other, "w") as target:
        for key in source:
            source.copy(source[key], target, name=key)
        for key, value in source.attrs.items():
            target.attrs[key] = value
        del target["move_squares"]
        target.create_dataset("move_squares", data=squares)
    config = ProbeConfig(query="move1_source", seeds=[0], control=False)
    wrong = _result(train_probes(str(other), tmp_path / "w", config, progress=False))
    assert wrong["accuracy_mean"] < 0.1
