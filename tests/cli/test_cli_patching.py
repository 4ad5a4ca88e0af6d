"""``leelalab patch``, ``leelalab heads`` and ``leelalab plot patching`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leelalab.cli import main
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights, random_transformer_weights
from leelalab.patching.residual import PatchingResults
from leelalab.puzzles.dataset import write_pairs_dataset
from positions import corrupted_puzzles


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("data")
    write_pairs_dataset(directory, corrupted_puzzles(6, min_moves=5))
    return directory


@pytest.fixture(scope="module")
def transformer(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("nets") / "transformer.pb.gz"
    return save_weights(random_transformer_weights(layers=2, heads=4, seed=3), path)


@pytest.fixture(scope="module")
def resnet(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("nets") / "resnet.pb.gz"
    return save_weights(random_resnet_weights(seed=4), path)


def test_patch_residual_prints_the_group_table_and_writes_results(
    dataset, resnet, tmp_path, capsys
) -> None:
    out = tmp_path / "res"
    args = ["patch", "residual", str(dataset), "--net", str(resnet), "--output", str(out)]
    assert main([*args, "--no-progress", "--chunk-size", "4"]) == 0
    text = capsys.readouterr().out
    assert "target_1 (n=6)" in text and "L0" in text and "L1" in text
    results = PatchingResults.load(out)
    assert results.effects().shape == (6, 2, 64)
    assert json.loads((out / "run.json").read_text())["items"] == 6
    figures = tmp_path / "figs"
    assert main(["plot", "patching", str(out), "--out", str(figures)]) == 0
    names = {path.name for path in figures.iterdir()}
    assert {"groups_log_odds_all.pdf", "groups_log_odds_all.png"} <= names
    assert any(name.startswith("board_") and name.endswith(".png") for name in names)


def test_head_commands_on_a_transformer(dataset, transformer, tmp_path, capsys) -> None:
    common = ["--net", str(transformer), "--no-progress"]
    assert main(["patch", "heads", str(dataset), "--output", str(tmp_path / "h"), *common]) == 0
    assert "top heads by head-output patching" in capsys.readouterr().out
    assert main(["heads", "search", str(dataset), "--output", str(tmp_path / "s"), *common]) == 0
    ranking = json.loads((tmp_path / "s" / "ranking.json").read_text())
    assert len(ranking) == 8 and {"layer", "head", "mean", "two_sem"} <= set(ranking[0])
    single = ["heads", "single-entry", str(dataset), "--output", str(tmp_path / "e")]
    assert main([*single, "--layer", "1", "--head", "2", *common]) == 0
    assert "3rd→1st target entry" in capsys.readouterr().out
    piece = ["heads", "piece-movement", str(dataset), "--output", str(tmp_path / "p")]
    assert main([*piece, "--threshold", "-1", *common]) == 0
    heads = json.loads((tmp_path / "p" / "heads.json").read_text())["heads"]
    assert sum(len(listed) for listed in heads.values()) == 8  # every head, once
    figures = tmp_path / "figs"
    directories = [str(tmp_path / name) for name in "hsep"]
    assert main(["plot", "patching", *directories, "--out", str(figures)]) == 0
    names = {path.name for path in figures.iterdir()}
    assert {"head_patching_log_odds.pdf", "head_search.png", "piece_movement.pdf"} <= names
    assert "single_entry_L1H2.png" in names


def test_head_commands_on_a_resnet_say_they_need_attention(
    dataset, resnet, tmp_path, capsys
) -> None:
    args = ["heads", "search", str(dataset), "--net", str(resnet), "--output", str(tmp_path)]
    assert main(args) == 1
    error = capsys.readouterr().err
    assert "without attention heads" in error and "Traceback" not in error


def test_missing_dataset_is_a_one_line_error(resnet, tmp_path, capsys) -> None:
    args = ["patch", "residual", str(tmp_path / "nope"), "--net", str(resnet)]
    assert main([*args, "--output", str(tmp_path / "o")]) == 1
    assert "no dataset.jsonl" in capsys.readouterr().err
