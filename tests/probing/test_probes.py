"""Probes: planted signals are found, shuffled labels are not, seeds reproduce, splits are
grouped by puzzle, and the CLI trains, evaluates and plots."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from leelalab.cli import main
from leelalab.probing.probes import (
    ProbeConfig,
    ProbeError,
    control_labels,
    evaluate_saved_probes,
    grouped_split,
    target_labels,
    train_probes,
)
from leelalab.probing.store import STORE_FORMAT, ActivationStore
from leelalab.runs.experiment import SettingsError

D = 16


def _synthetic_store(path, n: int = 2000, *, seed: int = 0, signal: float = 4.0) -> str:
    """Activations where the 1st- and 3rd-move target squares each carry their own
    direction (orthogonal), on top of unit noise; the other hook is pure noise."""
    rng = np.random.default_rng(seed)
    move_squares = np.full((n, 7, 2), -1, dtype=np.int8)
    first = rng.integers(0, 64, n)
    third = (first + rng.integers(1, 64, n)) % 64  # never the 1st target
    move_squares[:, 0, 1] = first
    move_squares[:, 2, 1] = third
    move_squares[: n // 10, 2, 1] = -1  # lines too short for a 3rd move: masked
    acts = rng.normal(size=(n, 64, D)).astype(np.float32)
    first_direction, third_direction = np.linalg.qr(rng.normal(size=(D, 2)))[0].T
    acts[np.arange(n), third] += signal * third_direction
    acts[np.arange(n), first] += signal * first_direction
    with h5py.File(path, "w") as handle:
        handle.create_dataset("activations/blocks.0.hook_resid_post", data=acts)
        handle.create_dataset(
            "activations/blocks.1.hook_resid_post", data=rng.normal(size=(n, 64, D)).astype("f4")
        )
        ids = np.array([f"p{i}" for i in range(n)], dtype=object)
        handle.create_dataset("puzzle_ids", data=ids, dtype=h5py.string_dtype())
        handle.create_dataset("move_squares", data=move_squares)
        handle.create_dataset("puzzle_type", data=rng.integers(0, 3, n).astype(np.int16))
        for flag in ("is_mate", "selected", "different_targets"):
            handle.create_dataset(flag, data=np.zeros(n, dtype=bool))
        handle.create_dataset("n_moves", data=np.full(n, 5, dtype=np.int16))
        handle.attrs["format"] = STORE_FORMAT
        handle.attrs["hooks"] = json.dumps(["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"])
        handle.attrs["settings"] = json.dumps({"network": "synthetic", "random_init": None})
    return str(path)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return _synthetic_store(tmp_path_factory.mktemp("store") / "acts.h5")


def _by_hook(summary) -> dict[str, dict]:
    return summary.by_hook()


def test_bilinear_probe_finds_a_planted_signal_and_not_noise(store, tmp_path) -> None:
    config = ProbeConfig(seeds=[0, 1])
    results = _by_hook(train_probes(store, tmp_path / "p", config, progress=False))
    planted, noise = results["blocks.0.hook_resid_post"], results["blocks.1.hook_resid_post"]
    assert planted["accuracy_mean"] > 0.9
    assert noise["accuracy_mean"] < 0.1  # chance is 1/64
    assert planted["control_mean"] < 0.1  # permuted labels: the signal no longer predicts
    assert planted["selectivity"] > 0.8
    assert planted["test_puzzles"] < 0.35 * 1800  # ~30% of the unmasked puzzles


def test_linear_and_logistic_probes(store, tmp_path) -> None:
    linear = _by_hook(
        train_probes(store, tmp_path / "l", ProbeConfig(probe="linear", seeds=[0]), progress=False)
    )
    assert linear["blocks.0.hook_resid_post"]["accuracy_mean"] > 0.9
    assert linear["blocks.1.hook_resid_post"]["accuracy_mean"] < 0.1
    logistic = _by_hook(
        train_probes(
            store,
            tmp_path / "g",
            ProbeConfig(probe="logistic", seeds=[0], control=False),
            hooks=["blocks.1.hook_resid_post"],
            progress=False,
        )
    )
    assert logistic["blocks.1.hook_resid_post"]["accuracy_mean"] < 0.1


def test_same_seed_same_result(store, tmp_path) -> None:
    config = ProbeConfig(seeds=[3], control=False)
    first = train_probes(
        store, tmp_path / "a", config, hooks=["blocks.0.hook_resid_post"], progress=False
    )
    second = train_probes(
        store, tmp_path / "b", config, hooks=["blocks.0.hook_resid_post"], progress=False
    )
    assert first.results == second.results
    from safetensors.numpy import load_file

    a = load_file(tmp_path / "a" / "blocks.0.hook_resid_post.safetensors")
    b = load_file(tmp_path / "b" / "blocks.0.hook_resid_post.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_grouped_split_keeps_each_puzzle_on_one_side() -> None:
    ids = ["a", "b", "c", "a", "d", "b", "e", "f", "g", "h"]
    for seed in range(5):
        train, test = grouped_split(ids, 0.3, seed)
        assert sorted(train.tolist() + test.tolist()) == list(range(len(ids)))
        assert not {ids[i] for i in train} & {ids[i] for i in test}
    assert grouped_split(ids, 0.3, 0)[1].tolist() != grouped_split(ids, 0.3, 1)[1].tolist()


def test_control_labels_permute_within_types_and_keep_masks() -> None:
    labels = np.array([1, 2, 3, -1, 5, 6, 7, 8])
    types = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    control = control_labels(labels, types, seed=0)
    assert control[3] == -1
    assert sorted(control[:3]) == [1, 2, 3] and sorted(control[4:]) == [5, 6, 7, 8]


def test_targets_and_bad_settings(store) -> None:
    opened = ActivationStore(store)
    labels = target_labels(opened, "move3_target")
    assert (labels[:200] == -1).all() and (labels[200:] >= 0).all()
    with pytest.raises(ProbeError, match="unknown target"):
        target_labels(opened, "move9_target")
    with pytest.raises(ProbeError, match="query"):
        ProbeConfig(query=None)
    with pytest.raises(SettingsError, match="--probe must be one of"):
        ProbeConfig(probe="mlp")
    with pytest.raises(SettingsError, match="--test-fraction must be at most 0.9"):
        ProbeConfig(test_fraction=1.5)
    with pytest.raises(SettingsError, match="--epochs must be at least 1"):
        ProbeConfig(epochs=0)


def test_cli_train_eval_plot(store, tmp_path, capsys) -> None:
    out = tmp_path / "probe"
    args = ["probe", "train", store, "--output", str(out), "--seeds", "0", "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "blocks.0.hook_resid_post" in text and "selectivity" in text
    assert (out / "results.json").is_file() and (
        out / "blocks.0.hook_resid_post.safetensors"
    ).is_file()
    accuracies = evaluate_saved_probes(out, store)
    assert accuracies["blocks.0.hook_resid_post"] > 0.9
    assert main(["probe", "eval", str(out), store]) == 0
    assert main(["plot", "probes", str(out), "--out", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "probe_accuracy.png").is_file()
    assert main(["probe", "train", str(tmp_path / "none.h5"), "--output", str(out)]) == 1
    assert "no such activation store" in capsys.readouterr().err


def test_eval_leaves_out_the_training_puzzles(store, tmp_path) -> None:
    """On the store it trained on, a saved probe is scored on exactly its held-out split."""
    out = tmp_path / "p"
    config = ProbeConfig(seeds=[4, 5], control=False, epochs=2)
    summary = _by_hook(train_probes(store, out, config, progress=False))
    split = json.loads((out / "split.json").read_text())
    assert split["seed"] == 4 and split["train_puzzles"] == len(split["train_puzzle_ids"])
    train_rows, test_rows = grouped_split(ActivationStore(store).puzzle_ids, 0.3, 4)
    assert split["train_puzzle_ids"] == sorted(f"p{i}" for i in train_rows)

    evaluation = evaluate_saved_probes(out, store)
    assert evaluation.excluded == len(train_rows) and evaluation.puzzles == len(test_rows)
    for hook, result in summary.items():
        # The first seed's probe is the saved one: its held-out accuracy, to the bit.
        assert evaluation[hook] == result["accuracy"][0]
        masked = ActivationStore(store).move_squares[test_rows, 2, 1] < 0
        assert evaluation.evaluated[hook] == len(test_rows) - masked.sum()
        interval = evaluation.interval(hook)
        assert interval.low <= evaluation[hook] <= interval.high
    everything = evaluate_saved_probes(out, store, include_training=True)
    assert everything.excluded == 0 and everything.puzzles == 2000
    assert everything.evaluated["blocks.0.hook_resid_post"] == 1800  # 200 lines are masked


def test_eval_refuses_old_probes_and_stores_of_training_puzzles_only(store, tmp_path) -> None:
    out = tmp_path / "p"
    train_probes(
        store,
        out,
        ProbeConfig(seeds=[0], control=False, epochs=1),
        hooks=["blocks.1.hook_resid_post"],
        progress=False,
    )
    # A store that holds only training puzzles leaves nothing to evaluate.
    ids = set(json.loads((out / "split.json").read_text())["train_puzzle_ids"])
    only_training = tmp_path / "train.h5"
    with h5py.File(store) as source, h5py.File(only_training, "w") as target:
        rows = np.array([i for i, p in enumerate(source["puzzle_ids"].asstr()[()]) if p in ids])
        for name, item in source.items():
            if isinstance(item, h5py.Dataset):
                target.create_dataset(name, data=item[()][rows], dtype=item.dtype)
        for hook in source["activations"]:
            target.create_dataset(f"activations/{hook}", data=source["activations"][hook][rows])
        target.attrs.update(dict(source.attrs))
    with pytest.raises(ProbeError, match="nothing to evaluate"):
        evaluate_saved_probes(out, only_training)
    # A probe directory from before the split was recorded: refused, with the way out.
    (out / "split.json").unlink()
    with pytest.raises(ProbeError, match="does not record which puzzles.*--include-training"):
        evaluate_saved_probes(out, store)
    assert evaluate_saved_probes(out, store, include_training=True).excluded == 0


def test_probe_output_directory_life_cycle(store, tmp_path, monkeypatch) -> None:
    import shutil

    import leelalab.probing.probes as module
    from leelalab.errors import LeelaLabError

    config = ProbeConfig(seeds=[0], control=False, epochs=1)
    hooks = ["blocks.1.hook_resid_post"]
    out = tmp_path / "p"
    # Bad input: nothing is created.
    with pytest.raises(LeelaLabError):
        train_probes(tmp_path / "none.h5", out, config, progress=False)
    with pytest.raises(LeelaLabError, match="no activations for"):
        train_probes(store, out, config, hooks=["blocks.7.hook_resid_post"], progress=False)
    assert not out.exists()
    # A failure before any probe is saved leaves nothing behind.
    original = module.train_probe

    def failing(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "train_probe", failing)
    with pytest.raises(KeyboardInterrupt):
        train_probes(store, out, config, hooks=hooks, progress=False)
    assert not out.exists()
    monkeypatch.setattr(module, "train_probe", original)
    first = train_probes(store, out, config, hooks=hooks, progress=False)
    # The same settings, the store spelled with another path: complete, nothing retrained.
    copy = tmp_path / "copy.h5"
    shutil.copy(store, copy)
    monkeypatch.setattr(module, "train_probe", failing)
    assert train_probes(copy, out, config, hooks=hooks, progress=False) == first
    # Other settings: refused, unless overwrite.
    other = ProbeConfig(seeds=[1], control=False, epochs=1)
    with pytest.raises(LeelaLabError, match=r"other settings \(differing: config\)"):
        train_probes(store, out, other, hooks=hooks, progress=False)
    monkeypatch.setattr(module, "train_probe", original)
    replaced = train_probes(store, out, other, hooks=hooks, progress=False, overwrite=True)
    assert replaced.config["seeds"] == [1]
    assert json.loads((out / "split.json").read_text())["seed"] == 1
