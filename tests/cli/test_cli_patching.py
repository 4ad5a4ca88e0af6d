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


# --- outputs and inputs (issue 26: one output life cycle; issue 20: one-line errors) -------


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("leelalab: error")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.fixture(scope="module")
def empty_dataset(tmp_path_factory, resnet) -> Path:
    """A dataset built from a header-only CSV: no puzzle at all."""
    directory = tmp_path_factory.mktemp("empty")
    csv = directory / "header.csv"
    csv.write_text("PuzzleId,FEN,Moves,Rating,RatingDeviation,Popularity,NbPlays,Themes\n")
    args = ["puzzles", "filter", "--input", str(csv), "--strong", str(resnet)]
    assert main([*args, "--weak", str(resnet), "--output", str(directory / "ds")]) == 0
    return directory / "ds"


def test_overwrite_keeps_a_users_file(dataset, resnet, transformer, tmp_path, capsys) -> None:
    out = tmp_path / "res"
    args = ["patch", "residual", str(dataset), "--net", str(resnet), "--output", str(out)]
    assert main([*args, "--no-progress"]) == 0
    (out / "notes.txt").write_text("mine")
    assert main([*args, "--no-progress", "--direction", "denoising"]) == 1
    assert "--overwrite" in _one_line_error(capsys)
    assert main([*args, "--no-progress", "--direction", "denoising", "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert PatchingResults.load(out).direction == "denoising"
    # heads search writes ranking.json after its chunks: still the run's, not the user's.
    search = tmp_path / "search"
    common = ["heads", "search", str(dataset), "--net", str(transformer), "--no-progress"]
    assert main([*common, "--output", str(search)]) == 0
    (search / "notes.txt").write_text("mine")
    assert main([*common, "--output", str(search), "--limit", "3", "--overwrite"]) == 0
    assert (search / "notes.txt").read_text() == "mine"
    assert "ranking.json" in json.loads((search / "run.json").read_text())["outputs"]
    assert json.loads((search / ".leelalab-foreign.json").read_text()) == ["notes.txt"]


def test_an_invalid_input_never_deletes_the_output(dataset, resnet, tmp_path, capsys) -> None:
    out = tmp_path / "res"
    args = ["patch", "residual", "--net", str(resnet), "--output", str(out), "--no-progress"]
    assert main([*args, str(dataset)]) == 0
    before = _snapshot(out)
    assert main([*args, str(tmp_path / "nonexistent"), "--overwrite"]) == 1
    assert "no dataset.jsonl" in _one_line_error(capsys)
    assert main([*args, str(dataset), "--chunk-size", "0", "--overwrite"]) == 1
    assert "--chunk-size must be at least 1" in _one_line_error(capsys)
    assert main([*args, str(dataset), "--layers", "7", "--overwrite"]) == 1
    _one_line_error(capsys)
    assert _snapshot(out) == before


def test_single_entry_without_a_layer_is_one_line(dataset, transformer, tmp_path, capsys):
    args = ["heads", "single-entry", str(dataset), "--net", str(transformer), "--head", "1"]
    assert main([*args, "--output", str(tmp_path / "o")]) == 1
    assert "--layer is required" in _one_line_error(capsys)
    assert not (tmp_path / "o").exists()


COMMANDS = {
    "patch residual": ["patch", "residual"],
    "patch heads": ["patch", "heads"],
    "heads single-entry": ["heads", "single-entry", "--layer", "0", "--head", "0"],
    "heads search": ["heads", "search"],
    "heads piece-movement": ["heads", "piece-movement"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", ["wrong-kind", "empty"])
def test_wrong_kind_and_empty_inputs_are_one_line(
    command, kind, dataset, empty_dataset, transformer, tmp_path, capsys
) -> None:
    if kind == "wrong-kind":
        # A results directory where a dataset belongs.
        source = tmp_path / "results"
        args = ["patch", "heads", str(dataset), "--net", str(transformer), "--no-progress"]
        assert main([*args, "--output", str(source), "--limit", "2"]) == 0
        capsys.readouterr()
    else:
        source = empty_dataset
    out = tmp_path / "out"
    args = [*COMMANDS[command], str(source), "--net", str(transformer), "--no-progress"]
    assert main([*args, "--output", str(out)]) != 0
    _one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize("kind", ["wrong-kind", "empty", "truncated"])
def test_plot_patching_inputs_are_one_line(kind, dataset, empty_dataset, tmp_path, capsys):
    source = {"wrong-kind": dataset, "empty": empty_dataset, "truncated": tmp_path / "t"}[kind]
    if kind == "truncated":
        source.mkdir()
        old = Path(__file__).parents[1] / "patching" / "data" / "residual-old-name"
        (source / "patching.h5").write_bytes((old / "patching.h5").read_bytes()[:3000])
    assert main(["plot", "patching", str(source), "--output", str(tmp_path / "f")]) != 0
    _one_line_error(capsys)
    assert not (tmp_path / "f").exists()


def test_plot_patching_refuses_to_replace_figures_without_overwrite(tmp_path, capsys) -> None:
    old = str(Path(__file__).parents[1] / "patching" / "data" / "residual-old-name")
    figures = tmp_path / "figs"
    assert main(["plot", "patching", old, "--output", str(figures)]) == 0
    (figures / "notes.txt").write_text("mine")
    png = figures / "groups_log_odds_all.png"
    png.write_bytes(b"an older figure")
    assert main(["plot", "patching", old, "--output", str(figures)]) == 1
    assert "pass --overwrite" in _one_line_error(capsys)
    assert png.read_bytes() == b"an older figure"
    assert main(["plot", "patching", old, "--output", str(figures), "--overwrite"]) == 0
    assert png.read_bytes().startswith(b"\x89PNG")
    assert (figures / "notes.txt").read_text() == "mine"
