"""``probe train``/``probe eval``/``plot probes``/``activations cache`` through the CLI: --hooks
globs, 'too few' test puzzles, degenerate (constant) probes, outputs kept and refused."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_probes import _synthetic_store

from leelalab.cli import main
from leelalab.probing.probes import MINIMUM_TEST_PUZZLES, ProbeResults

HOOK0, HOOK1 = "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return _synthetic_store(tmp_path_factory.mktemp("store") / "acts.h5", n=300)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("leelalab: error")]
    assert len(errors) == 1, err
    return errors[0]


def _train(store: str, out: Path, *extra: str) -> int:
    args = ["probe", "train", store, "--output", str(out), "--seeds", "0", "--no-progress"]
    return main([*args, "--epochs", "1", "--no-control", *extra])


def test_hooks_take_globs_as_in_activations_cache(store, tmp_path, capsys) -> None:
    assert _train(store, tmp_path / "p", "--hooks", "blocks.1.*") == 0
    assert [r["hook"] for r in ProbeResults.load(tmp_path / "p").results] == [HOOK1]
    assert _train(store, tmp_path / "q", "--hooks", "blocks.9.*") == 1
    assert "no activations for" in _one_line_error(capsys)
    assert not (tmp_path / "q").exists()


def test_too_few_test_puzzles_print_too_few(tmp_path, capsys) -> None:
    small = _synthetic_store(tmp_path / "small.h5", n=60)  # 18 test puzzles, 16 with a move 3
    assert _train(small, tmp_path / "p", "--hooks", HOOK0) == 0
    out = capsys.readouterr().out
    assert "too few (n=" in out and f"at least {MINIMUM_TEST_PUZZLES}" in out
    assert main(["probe", "eval", str(tmp_path / "p"), small]) == 0
    assert "too few (n=" in capsys.readouterr().out


def test_a_constant_probe_is_reported_as_degenerate(tmp_path, capsys) -> None:
    path = Path(_synthetic_store(tmp_path / "zero.h5", n=300))
    with h5py.File(path, "a") as handle:
        handle[f"activations/{HOOK1}"][...] = 0.0  # nothing to read: one answer for all
    assert _train(str(path), tmp_path / "p", "--probe", "linear", "--query", "none") == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("blocks.")}
    assert "constant prediction" in rows[HOOK1]
    assert "constant prediction" not in rows[HOOK0]
    results = ProbeResults.load(tmp_path / "p").by_hook()
    assert results[HOOK1]["constant_prediction_seeds"] == [0]
    assert results[HOOK0]["constant_prediction_seeds"] == []


def test_out_of_range_settings_are_one_line_before_any_work(store, tmp_path, capsys) -> None:
    for option, value in (("--test-fraction", "1.5"), ("--epochs", "0"), ("--lr", "0")):
        assert _train(store, tmp_path / "p", option, value) == 1
        assert option in _one_line_error(capsys)
    assert not (tmp_path / "p").exists()


def test_overwrite_keeps_a_users_file_and_bad_input_deletes_nothing(store, tmp_path, capsys):
    out = tmp_path / "p"
    assert _train(store, out, "--hooks", HOOK0) == 0
    (out / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert _train(str(tmp_path / "missing.h5"), out, "--overwrite") == 1
    assert "no such activation store" in _one_line_error(capsys)
    assert _train(store, out, "--hooks", "nothing.*", "--overwrite") == 1
    _one_line_error(capsys)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert _train(store, out, "--hooks", HOOK1, "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / f"{HOOK0}.safetensors").exists()  # the old run's files are gone


@pytest.mark.parametrize("kind", ["directory", "truncated", "json"])
def test_wrong_kind_stores_are_one_line(kind, store, tmp_path, capsys) -> None:
    if kind == "directory":
        source = tmp_path  # a directory (e.g. a dataset) where a store belongs
    elif kind == "truncated":
        source = tmp_path / "cut.h5"
        source.write_bytes(Path(store).read_bytes()[:4096])
    else:
        source = tmp_path / "results.json"
        source.write_text("{}")
    assert _train(str(source), tmp_path / "p") == 1
    _one_line_error(capsys)
    future = ["future-board", str(source), "--output", str(tmp_path / "f"), "--no-progress"]
    assert main(future) == 1
    _one_line_error(capsys)
    assert not (tmp_path / "p").exists() and not (tmp_path / "f").exists()


def test_eval_and_plot_of_wrong_kind_directories_are_one_line(store, tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["probe", "eval", str(tmp_path / "empty"), store]) == 1
    _one_line_error(capsys)
    truncated = tmp_path / "cut"
    truncated.mkdir()
    (truncated / "results.json").write_text('{"format": "leelalab.probe-training/1", "res')
    for directory in (tmp_path / "empty", truncated):
        assert main(["plot", "probes", str(directory), "--output", str(tmp_path / "f")]) == 1
        _one_line_error(capsys)
    assert not (tmp_path / "f").exists()


def test_plot_probes_refuses_to_replace_a_figure_without_overwrite(store, tmp_path, capsys):
    assert _train(store, tmp_path / "p", "--hooks", HOOK0) == 0
    figures = tmp_path / "figs"
    plot = ["plot", "probes", str(tmp_path / "p"), "--output", str(figures)]
    assert main(plot) == 0
    (figures / "notes.txt").write_text("mine")
    (figures / "probe_accuracy.png").write_bytes(b"older")
    assert main(plot) == 1
    assert "pass --overwrite" in _one_line_error(capsys)
    assert (figures / "probe_accuracy.png").read_bytes() == b"older"
    assert main([*plot, "--overwrite"]) == 0
    assert (figures / "probe_accuracy.png").read_bytes().startswith(b"\x89PNG")
    assert (figures / "notes.txt").read_text() == "mine"


def test_results_written_before_results_had_a_format_load(store, tmp_path) -> None:
    assert _train(store, tmp_path / "p", "--hooks", HOOK0) == 0
    path = tmp_path / "p" / "results.json"
    data = json.loads(path.read_text())
    assert data.pop("format") == "leelalab.probe-training/1"
    path.write_text(json.dumps(data))
    loaded = ProbeResults.load(tmp_path / "p")
    assert loaded.results[0]["hook"] == HOOK0
    np.testing.assert_array_equal(loaded.results[0]["accuracy"], data["results"][0]["accuracy"])


@pytest.fixture(scope="module")
def cached(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A dataset of real puzzle pairs, a tiny network and its activation store."""
    from leelalab.lc0.weights import save_weights
    from leelalab.lc0.weights.synthetic import random_resnet_weights
    from leelalab.puzzles.dataset import write_pairs_dataset
    from positions import corrupted_puzzles

    directory = tmp_path_factory.mktemp("cached")
    write_pairs_dataset(directory / "data", corrupted_puzzles(10, min_moves=3))
    net = save_weights(random_resnet_weights(seed=4), directory / "net.pb.gz")
    store = directory / "acts.h5"
    args = ["activations", "cache", str(directory / "data"), "--net", str(net)]
    assert main([*args, "--output", str(store), "--no-progress"]) == 0
    return directory / "data", net, store


def test_activations_cache_bad_input_leaves_the_store(cached, tmp_path, capsys) -> None:
    data, net, store = cached
    out = tmp_path / "acts.h5"
    out.write_bytes(store.read_bytes())
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "dataset.jsonl").write_text("")
    for source in (tmp_path / "nonexistent", empty, tmp_path):
        args = ["activations", "cache", str(source), "--net", str(net), "--output", str(out)]
        assert main([*args, "--overwrite", "--no-progress"]) == 1
        _one_line_error(capsys)
        assert out.read_bytes() == store.read_bytes()


def test_a_truncated_training_split_is_one_line(store, tmp_path, capsys) -> None:
    assert _train(store, tmp_path / "p", "--hooks", HOOK0) == 0
    split = tmp_path / "p" / "split.json"
    split.write_text(split.read_text()[:40])
    assert main(["probe", "eval", str(tmp_path / "p"), store]) == 1
    assert str(split) in _one_line_error(capsys)
