"""The activation store: equal to run_with_cache, resumable, bounded streaming, clear errors."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from leelalab.errors import LeelaLabError
from leelalab.lc0 import encoding
from leelalab.lc0.weights.synthetic import random_resnet_weights, random_transformer_weights
from leelalab.models import build_network
from leelalab.probing.store import (
    ActivationStore,
    ActivationStoreError,
    cache_activations,
    randomized_network,
    resolve_hooks,
)
from leelalab.puzzles.dataset import write_pairs_dataset
from positions import corrupted_puzzles


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    write_pairs_dataset(directory, corrupted_puzzles(11, min_moves=1))
    return directory


@pytest.fixture(scope="module", params=["resnet", "transformer"])
def network(request):
    if request.param == "resnet":
        return build_network(random_resnet_weights(blocks=2, filters=8, seed=1)).eval()
    return build_network(random_transformer_weights(layers=2, seed=2)).eval()


def test_store_equals_run_with_cache(network, dataset, tmp_path) -> None:
    path = cache_activations(
        network,
        dataset,
        ["blocks.*.hook_resid_post"],
        tmp_path / "acts.h5",
        dtype="float32",
        batch_size=4,
        part_size=5,
        progress=False,
    )
    store = ActivationStore(path)
    assert store.hooks == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    from leelalab.puzzles.dataset import load_dataset

    puzzles = load_dataset(dataset)
    assert list(store.puzzle_ids) == [p.id for p in puzzles]
    planes = encoding.encode_boards([p.clean_board for p in puzzles], 1, "lc0")
    with torch.no_grad():
        _, cache = network.run_with_cache(torch.from_numpy(planes), names_filter=store.hooks)
    for hook in store.hooks:
        np.testing.assert_allclose(store.read(hook), cache[hook].numpy(), rtol=1e-6, atol=1e-6)
    expected = np.stack([p.move_squares(frame="model") for p in puzzles])
    np.testing.assert_array_equal(store.move_squares, expected)
    assert any(p.clean_board.turn is False for p in puzzles)  # black-to-move frames covered
    assert not (tmp_path / "acts.h5.parts").exists()
    run = json.loads((tmp_path / "acts.h5.run.json").read_text())
    assert run["puzzles"] == 11 and run["hooks"] == store.hooks


def _contents(path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path) as handle:
        handle.visititems(
            lambda name, item: (
                out.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None
            )
        )
    return out


def test_interrupted_caching_resumes_to_an_identical_store(dataset, tmp_path, monkeypatch) -> None:
    import leelalab.probing.store as module

    network = build_network(random_resnet_weights(blocks=2, filters=8, seed=1)).eval()
    kwargs = dict(part_size=3, batch_size=2, progress=False)
    whole = cache_activations(network, dataset, ["blocks.1.*"], tmp_path / "a.h5", **kwargs)
    original, calls = module._write_part, {"n": 0}

    def failing(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kw)

    monkeypatch.setattr(module, "_write_part", failing)
    with pytest.raises(KeyboardInterrupt):
        cache_activations(network, dataset, ["blocks.1.*"], tmp_path / "b.h5", **kwargs)
    assert len(list((tmp_path / "b.h5.parts").glob("part-*.h5"))) == 2
    assert not (tmp_path / "b.h5").exists()
    monkeypatch.setattr(module, "_write_part", original)
    resumed = cache_activations(network, dataset, ["blocks.1.*"], tmp_path / "b.h5", **kwargs)
    first, second = _contents(whole), _contents(resumed)
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    run = json.loads((tmp_path / "b.h5.run.json").read_text())
    assert run["puzzles_computed_this_session"] == 11 - 6


def test_leftover_parts_with_other_settings_are_refused(dataset, tmp_path, monkeypatch) -> None:
    import leelalab.probing.store as module

    network = build_network(random_resnet_weights(blocks=2, filters=8, seed=1)).eval()
    original, calls = module._write_part, {"n": 0}

    def failing(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kw)

    kwargs = dict(part_size=4, progress=False)
    monkeypatch.setattr(module, "_write_part", failing)
    with pytest.raises(KeyboardInterrupt):
        cache_activations(network, dataset, ["blocks.1.*"], tmp_path / "a.h5", **kwargs)
    monkeypatch.undo()
    assert len(list((tmp_path / "a.h5.parts").glob("part-*.h5"))) == 1
    with pytest.raises(LeelaLabError, match=r"other settings \(differing: dtype\).*--overwrite"):
        cache_activations(
            network, dataset, ["blocks.1.*"], tmp_path / "a.h5", dtype="float32", **kwargs
        )
    replaced = cache_activations(
        network,
        dataset,
        ["blocks.1.*"],
        tmp_path / "a.h5",
        dtype="float32",
        overwrite=True,
        **kwargs,
    )
    fresh = cache_activations(
        network, dataset, ["blocks.1.*"], tmp_path / "b.h5", dtype="float32", **kwargs
    )
    first, second = _contents(replaced), _contents(fresh)
    assert first.keys() == second.keys()
    assert all(np.array_equal(first[k], second[k]) for k in first)
    assert not (tmp_path / "a.h5.parts").exists()


def test_a_run_that_fails_before_any_part_leaves_nothing(dataset, tmp_path, monkeypatch) -> None:
    import leelalab.probing.store as module

    network = build_network(random_resnet_weights(blocks=2, filters=8, seed=1)).eval()

    def failing(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "_write_part", failing)
    with pytest.raises(KeyboardInterrupt):
        cache_activations(network, dataset, ["blocks.1.*"], tmp_path / "a.h5", progress=False)
    assert list(tmp_path.iterdir()) == []
    # Bad inputs fail before anything is created.
    with pytest.raises(LeelaLabError, match="no dataset.jsonl"):
        cache_activations(network, tmp_path / "nowhere", ["blocks.1.*"], tmp_path / "x.h5")
    with pytest.raises(ActivationStoreError, match="no hook point"):
        cache_activations(network, dataset, ["blocks.9.*"], tmp_path / "x.h5")
    assert list(tmp_path.iterdir()) == []


def test_a_complete_store_is_kept_refused_or_overwritten(dataset, tmp_path, monkeypatch) -> None:
    import shutil

    import leelalab.probing.store as module

    network = build_network(random_resnet_weights(blocks=2, filters=8, seed=1)).eval()
    path = cache_activations(network, dataset, ["blocks.0.*"], tmp_path / "s.h5", progress=False)
    before = _contents(path)

    def failing(*args, **kw):
        raise AssertionError("a complete store must not be recomputed")

    monkeypatch.setattr(module, "_write_part", failing)
    # The same settings, the dataset spelled with another path: complete, nothing computed.
    copy = tmp_path / "copy-of-data"
    shutil.copytree(dataset, copy)
    assert cache_activations(network, copy, ["blocks.0.*"], path, progress=False) == path
    # Other settings: refused, and the store is untouched.
    with pytest.raises(ActivationStoreError, match=r"other settings \(differing: hooks\)"):
        cache_activations(network, dataset, ["blocks.1.*"], path, progress=False)
    monkeypatch.undo()
    contents = _contents(path)
    assert all(np.array_equal(before[k], contents[k]) for k in before)
    cache_activations(network, dataset, ["blocks.1.*"], path, overwrite=True, progress=False)
    assert {h.split(".")[1] for h in ActivationStore(path).hooks} == {"1"}
    # Something that is not a store is never replaced.
    (tmp_path / "notes.h5").write_text("my notes")
    for overwrite in (False, True):
        with pytest.raises(ActivationStoreError, match="not an activation store"):
            cache_activations(
                network, dataset, ["blocks.0.*"], tmp_path / "notes.h5", overwrite=overwrite
            )
    assert (tmp_path / "notes.h5").read_text() == "my notes"


def test_random_init_store_records_the_copied_network(dataset, tmp_path) -> None:
    network = build_network(random_resnet_weights(blocks=2, filters=8, seed=1)).eval()
    network.sha256 = "f" * 64
    path = cache_activations(
        network, dataset, ["blocks.0.*"], tmp_path / "r.h5", random_init=3, progress=False
    )
    settings = ActivationStore(path).settings
    assert settings["network_sha256"] == "f" * 64 and settings["random_init"] == 3


def test_bad_requests_are_clear_errors(dataset, tmp_path) -> None:
    network = build_network(random_resnet_weights(blocks=2, filters=8, seed=1)).eval()
    with pytest.raises(ActivationStoreError, match="no hook point matches"):
        resolve_hooks(network, ["blocks.9.hook_resid_post"])
    with pytest.raises(ActivationStoreError, match=r"\(batch, 64, d\)"):
        cache_activations(
            network, dataset, ["policy_head.hook_logits"], tmp_path / "x.h5", progress=False
        )
    with pytest.raises(ActivationStoreError, match="no such activation store"):
        ActivationStore(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ActivationStoreError, match="not a readable HDF5"):
        ActivationStore(tmp_path / "junk.h5")
    path = cache_activations(network, dataset, ["blocks.0.*"], tmp_path / "ok.h5", progress=False)
    with pytest.raises(ActivationStoreError, match="no activations for"):
        ActivationStore(path).read("blocks.1.hook_resid_post")


def test_randomized_network_is_seeded_and_differs(network) -> None:
    planes = torch.from_numpy(encoding.encode_boards([p.clean_board for p in corrupted_puzzles(3)]))
    first, again, other = (randomized_network(network, s) for s in (0, 0, 1))
    with torch.no_grad():
        a, b, c, base = first(planes), again(planes), other(planes), network(planes)
    torch.testing.assert_close(a.policy_logits, b.policy_logits)
    assert not torch.allclose(a.policy_logits, c.policy_logits)
    assert not torch.allclose(a.policy_logits, base.policy_logits)
    assert [n for n, _ in first.named_parameters()] == [n for n, _ in network.named_parameters()]


def test_minibatches_cover_the_requested_rows_once_within_the_memory_budget(
    dataset, tmp_path
) -> None:
    network = build_network(random_resnet_weights(blocks=2, filters=8, seed=1)).eval()
    store = ActivationStore(
        cache_activations(network, dataset, ["blocks.0.*"], tmp_path / "s.h5", progress=False)
    )
    wanted = np.array([0, 2, 3, 5, 7, 8, 10])
    budget = 3 * 64 * 8 * 4  # three puzzles per block
    seen, reference = [], store.read("blocks.0.hook_resid_post")
    for x, rows in store.iter_minibatches(
        "blocks.0.hook_resid_post", wanted, 2, seed=5, memory_budget_bytes=budget
    ):
        assert x.shape[0] <= 2
        np.testing.assert_array_equal(x.numpy(), reference[rows])
        seen.extend(rows.tolist())
    assert sorted(seen) == wanted.tolist()
    order = [
        r
        for _, rows in store.iter_minibatches(
            "blocks.0.hook_resid_post", wanted, 2, seed=5, memory_budget_bytes=budget
        )
        for r in rows.tolist()
    ]
    assert order == seen  # the same seed gives the same order


@pytest.mark.slow
def test_maia_store_equals_run_with_cache(maia_path, dataset, tmp_path) -> None:
    from leelalab.inference.networks import load_network
    from leelalab.puzzles.dataset import load_dataset

    maia = load_network(maia_path)
    path = cache_activations(
        maia, dataset, ["blocks.*.hook_resid_post"], tmp_path / "maia.h5", progress=False
    )
    store = ActivationStore(path)
    planes = encoding.encode_boards([p.clean_board for p in load_dataset(dataset)], 1, "lc0")
    with torch.no_grad():
        _, cache = maia.run_with_cache(torch.from_numpy(planes), names_filter=store.hooks)
    for hook in store.hooks:
        reference = cache[hook].numpy()
        # float16 storage: relative precision 2^-11
        np.testing.assert_allclose(store.read(hook), reference, rtol=2e-3, atol=2e-3)
