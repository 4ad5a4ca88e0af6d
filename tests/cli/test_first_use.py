"""What a new user meets first, through the command line: every bad input of the audit is
one line on stderr with exit status 1, and nothing is left behind or silently partial."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leelalab.cli import main
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.puzzles.dataset import write_pairs_dataset
from positions import PUZZLES_CSV, corrupted_puzzles


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("nets") / "tiny.pb.gz"
    return str(save_weights(random_resnet_weights(blocks=2, filters=8, seed=3), path))


def one_line_error(capsys, *fragments: str) -> None:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("leelalab: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_layer_out_of_range(net, tmp_path, capsys) -> None:
    dataset = tmp_path / "d"
    write_pairs_dataset(dataset, corrupted_puzzles(2))
    args = ["patch", "residual", str(dataset), "--net", net, "--output", str(tmp_path / "o")]
    assert main([*args, "--layers", "9", "--no-progress"]) == 1
    one_line_error(capsys, "layer 9", "out of range")
    assert not (tmp_path / "o").exists()


def test_patching_needs_corruptions_and_says_so(net, tmp_path, capsys) -> None:
    dataset = tmp_path / "d"
    write_pairs_dataset(dataset, corrupted_puzzles(2))
    (dataset / "corruptions.jsonl").unlink()
    args = ["patch", "residual", str(dataset), "--net", net, "--output", str(tmp_path / "o")]
    assert main([*args, "--no-progress"]) == 1
    one_line_error(capsys, "leelalab puzzles corrupt")
    assert not (tmp_path / "o").exists()


def test_corrupting_a_directory_that_is_not_a_dataset(net, tmp_path, capsys) -> None:
    assert main(["puzzles", "corrupt", str(tmp_path), "--net", net, "--weak", net]) == 1
    one_line_error(capsys, str(tmp_path), "not a")


def test_filter_with_a_missing_input_creates_nothing(net, tmp_path, capsys) -> None:
    output = tmp_path / "run"
    args = ["puzzles", "filter", "--net", net, "--weak", net, "--output", str(output)]
    assert main([*args, "--input", str(tmp_path / "missing.csv"), "--no-progress"]) == 1
    one_line_error(capsys, "missing.csv")
    assert not output.exists()


def test_a_finished_run_is_kept_other_settings_refused_overwrite_replaces(
    net, tmp_path, capsys
) -> None:
    output = tmp_path / "run"
    args = ["puzzles", "filter", "--net", net, "--weak", net, "--output", str(output)]
    args += ["--input", str(PUZZLES_CSV), "--no-progress"]
    assert main([*args, "--limit", "20"]) == 0
    first = (output / "dataset.jsonl").read_bytes()
    capsys.readouterr()
    assert main([*args, "--limit", "20"]) == 0
    assert "already holds this run" in capsys.readouterr().err
    assert main([*args, "--limit", "10"]) == 1
    one_line_error(capsys, "--overwrite")
    assert (output / "dataset.jsonl").read_bytes() == first
    assert main([*args, "--limit", "10", "--overwrite"]) == 0
    assert len((output / "dataset.jsonl").read_text().splitlines()) == 10


def test_positions_files(net, tmp_path, capsys) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    out = tmp_path / "out.jsonl"
    assert main(["eval", net, "--positions", str(empty), "--output", str(out)]) == 1
    one_line_error(capsys, "no positions")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"fen": "8/8/8/8/8/8/8/K6k w - - 0 1"}\n\xff\xfe\n')
    assert main(["eval", net, "--positions", str(bad), "--output", str(out)]) == 1
    one_line_error(capsys, "line 2")
    nested = tmp_path / "nested.jsonl"
    nested.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    assert main(["eval", net, "--positions", str(nested), "--output", str(out)]) == 1
    one_line_error(capsys, "line 1")
    huge = tmp_path / "huge.jsonl"
    huge.write_text('{"fen": "' + "x" * 1_000_000 + '"}\n')
    assert main(["eval", net, "--positions", str(huge), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert len(err) < 1000 and err.startswith("leelalab: error:")
    assert not out.exists()


def test_probe_eval_leaves_the_training_puzzles_out_by_default(capsys) -> None:
    # The shipped probe records its training split; without a store at hand the command
    # says what is missing in one line.
    assert main(["probe", "eval", "probes/maia-1900-move3-target", "no-store.h5"]) == 1
    one_line_error(capsys, "no-store.h5")


def test_filter_needs_no_input_outside_the_checkout(net, tmp_path, monkeypatch) -> None:
    # The shipped sample is package data: the default input works from any folder.
    monkeypatch.delenv("LEELALAB_PUZZLES", raising=False)
    monkeypatch.chdir(tmp_path)
    args = ["puzzles", "filter", "--strong", net, "--weak", net, "--limit", "3"]
    assert main([*args, "--output", "run", "--no-progress"]) == 0
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert Path(settings["input"]).samefile(PUZZLES_CSV)
