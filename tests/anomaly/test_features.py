"""The feature store: equal to run_with_cache and a direct logit lens, resumable, foreign
settings refused, rows streamed in bounded blocks."""

from __future__ import annotations

import chess
import numpy as np
import pytest
import torch

from leelalab.anomaly.errors import AnomalyError
from leelalab.anomaly.features import (
    FEATURES_FORMAT,
    FeatureSettings,
    FeatureStore,
    FeatureView,
    default_hooks,
    extract_features,
    residual_hooks,
    write_features,
)
from leelalab.anomaly.positions import load_task, position_of, write_task
from leelalab.inference.networks import load_network
from leelalab.lc0 import encoding, policy_map
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights
from positions import random_playout_boards


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    path = tmp_path_factory.mktemp("net") / "net.pb.gz"
    save_weights(random_resnet_weights(blocks=2, filters=8, seed=1), path)
    return load_network(path)


@pytest.fixture()
def task(tmp_path):
    boards = random_playout_boards(23, seed=4, max_plies=30)
    boards = [b for b in boards if not b.is_game_over()]
    boards.append(chess.Board.from_chess960_pos(7))
    positions = [
        position_of(
            b, split="trusted" if i < 10 else "test", anomalous=i >= 10 and i % 2 == 0,
            kind="x", group=str(i), info={"chess960": True} if b.chess960 else {},
        )
        for i, b in enumerate(boards)
    ]  # fmt: skip
    write_task(tmp_path / "task", positions, {"task": "test", "network_sha256": None})
    return load_task(tmp_path / "task")


def test_features_equal_run_with_cache_and_a_direct_lens(network, task) -> None:
    path = extract_features(
        network, task, FeatureSettings(dtype="float32", chunk_size=7, batch_size=5), progress=False
    )
    store = FeatureStore(path)
    assert store.hooks == default_hooks(network)
    assert store.hooks[: network.n_layers + 1] == residual_hooks(network)
    assert "policy_head.hook_hidden" in store.hooks
    assert store.lens_hooks == residual_hooks(network)[:-1]
    boards = task.boards()
    planes = torch.from_numpy(encoding.encode_boards(boards, 1, "lc0"))
    with torch.no_grad():
        output, cache = network.run_with_cache(planes, names_filter=store.hooks)
    rows = np.arange(len(boards))
    for hook in store.hooks:
        np.testing.assert_allclose(
            store.read(f"activations/{hook}", rows), cache[hook].numpy(), rtol=1e-5, atol=1e-6
        )
    np.testing.assert_allclose(
        store.read("outputs/policy_logits", rows),
        output.policy_logits.numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    legal = np.stack([policy_map.legal_mask(board) for board in boards])  # format 1: no transform
    unpacked = np.unpackbits(store.read("outputs/legal", rows), axis=1)[:, :1858].astype(bool)
    np.testing.assert_array_equal(unpacked, legal)
    # The lens at one hook, computed here from scratch over each board's legal moves.
    hook = store.lens_hooks[0]
    with torch.no_grad():
        lens = network.run_from(network.n_layers - 1, cache[hook]).policy_logits.numpy()
    final = output.policy_logits.numpy()
    for row in range(len(boards)):
        p = np.exp(final[row, legal[row]] - final[row, legal[row]].max())
        q = np.exp(lens[row, legal[row]] - lens[row, legal[row]].max())
        p, q = p / p.sum(), q / q.sum()
        expected = float(np.sum(p * np.log(p / q)))
        assert store.read("lens/kl", np.array([row]))[0, 0] == pytest.approx(
            expected, rel=1e-4, abs=1e-6
        )


def test_extraction_resumes_and_refuses_foreign_settings(network, task, monkeypatch) -> None:
    import json

    import leelalab.anomaly.features as features

    uninterrupted = extract_features(
        network, task, FeatureSettings(chunk_size=6), output=task.directory / "whole.h5",
        progress=False,
    )  # fmt: skip
    compute = features._compute_chunk
    calls = []

    def dies_on_the_third_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return compute(*args, **kwargs)

    monkeypatch.setattr(features, "_compute_chunk", dies_on_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        extract_features(network, task, FeatureSettings(chunk_size=6), progress=False)
    monkeypatch.setattr(features, "_compute_chunk", compute)
    path = extract_features(network, task, FeatureSettings(chunk_size=6), progress=False)
    run = json.loads(path.with_name(path.name + ".run.json").read_text())
    assert run["positions_computed_this_session"] == len(task.positions) - 12
    rows = np.arange(len(task.positions))
    for dataset in ["outputs/policy_logits", "lens/kl"] + [
        f"activations/{h}" for h in FeatureStore(path).hooks
    ]:
        np.testing.assert_array_equal(
            FeatureStore(path).read(dataset, rows), FeatureStore(uninterrupted).read(dataset, rows)
        )
    assert not path.with_name(path.name + ".chunks").exists()
    with pytest.raises(AnomalyError, match="other settings"):
        extract_features(
            network, task, FeatureSettings(chunk_size=6, dtype="float32"), progress=False
        )


def test_views_stream_in_bounded_blocks(network, task) -> None:
    store = FeatureStore(
        extract_features(network, task, FeatureSettings(dtype="float32"), progress=False)
    )
    hook = store.hooks[0]
    rows = np.array([1, 4, 5, 9, 20])
    view = FeatureView(store, rows[::-1], labels=np.array([1, 0, 0, 1, 0], bool))
    blocks = list(view.iter_activations(hook))
    # A budget of a few rows forces several blocks; together they are the rows in order.
    small = FeatureView(store, rows, memory_budget_bytes=3 * 4 * 64 * 8 * 4)
    small_blocks = list(small.iter_activations(hook))
    assert len(small_blocks) > 1
    np.testing.assert_array_equal(
        np.concatenate([v for _, v in small_blocks]), np.concatenate([v for _, v in blocks])
    )
    np.testing.assert_array_equal(view.rows, np.sort(rows))
    # rows 20, 9, 5, 4, 1 had labels 1, 0, 0, 1, 0; sorted: 1, 4, 5, 9, 20
    np.testing.assert_array_equal(view.labels, [0, 1, 0, 0, 1])
    with pytest.raises(AnomalyError, match="no activations"):
        next(view.iter_activations("blocks.7.hook_resid_post"))


def test_feature_files_are_activation_stores_with_more_columns(tmp_path) -> None:
    """One store: a feature file reads through probing's RowStore and RowView; a file with
    a missing attribute is one line, not an internal error."""
    import h5py

    from leelalab.probing.store import OUTPUT_COLUMNS, RowStore, RowView

    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 64, 3)).astype(np.float32)
    legal = rng.random((9, 1858)) < 0.1
    logits = rng.normal(size=(9, 1858)).astype(np.float32)
    wdl = np.full((9, 3), 1 / 3, np.float32)
    path = write_features(tmp_path / "f.h5", {"h": x}, policy_logits=logits, legal=legal, wdl=wdl)
    store = RowStore(path, FEATURES_FORMAT)
    assert store.has_outputs and store.n_rows == 9 and store.widths == {"h": 3}
    view = RowView(store, np.array([7, 2, 4]), labels=np.array([True, False, False]))
    assert view.rows.tolist() == [2, 4, 7] and view.labels.tolist() == [False, False, True]
    np.testing.assert_array_equal(view.column(OUTPUT_COLUMNS[0]), logits[[2, 4, 7]])
    blocks = list(view.iter_activations("h"))
    np.testing.assert_array_equal(np.concatenate([v for _, v in blocks]), x[[2, 4, 7]])
    with h5py.File(path, "a") as handle:
        del handle.attrs["hooks"]
    with pytest.raises(AnomalyError, match="incomplete feature file"):
        FeatureStore(path)
