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


# Issue 26 item 1 / issue 20 items 2 and 7: outputs, resuming and settings of the puzzle
# and network commands, through the command line.


def no_internal_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("leelalab: error:")]
    assert len(lines) == 1, err
    return lines[0]


def filter_args(net: str, output, *extra: str) -> list[str]:
    return [
        "puzzles", "filter", "--net", net, "--weak", net, "--output", str(output),
        "--input", str(PUZZLES_CSV), "--no-progress", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def dataset(net, tmp_path_factory):
    """A small filtered dataset (the shipped sample's first 20 puzzles; thresholds that
    select most of them even with a random network)."""
    directory = tmp_path_factory.mktemp("dataset") / "run"
    loose = ["--hard", "1", "--correct", "0", "--forcing", "0"]
    assert main(filter_args(net, directory, "--limit", "20", *loose)) == 0
    return directory


@pytest.fixture(scope="module")
def empty_dataset(net, tmp_path_factory):
    """A dataset built from a header-only puzzle CSV: no puzzles at all."""
    folder = tmp_path_factory.mktemp("empty")
    header = folder / "header.csv"
    header.write_text(PUZZLES_CSV.read_text().splitlines()[0] + "\n")
    directory = folder / "run"
    args = ["puzzles", "filter", "--net", net, "--weak", net, "--input", str(header)]
    assert main([*args, "--output", str(directory), "--no-progress"]) == 0
    return directory


def test_filter_overwrite_keeps_a_users_file(net, tmp_path, capsys) -> None:
    output = tmp_path / "run"
    assert main(filter_args(net, output, "--limit", "10")) == 0
    (output / "notes.txt").write_text("mine")
    assert main(filter_args(net, output, "--limit", "12", "--overwrite")) == 0
    assert (output / "notes.txt").read_text() == "mine"
    assert len((output / "dataset.jsonl").read_text().splitlines()) == 12
    # ... and again, now that the notes are recorded as the user's.
    assert main(filter_args(net, output, "--limit", "11", "--overwrite")) == 0
    assert (output / "notes.txt").read_text() == "mine"


def test_an_invalid_input_with_overwrite_leaves_the_output_alone(net, tmp_path, capsys) -> None:
    output = tmp_path / "run"
    assert main(filter_args(net, output, "--limit", "10")) == 0
    before = {p.name: p.read_bytes() for p in output.rglob("*") if p.is_file()}
    args = ["puzzles", "filter", "--net", net, "--weak", net, "--output", str(output)]
    missing = tmp_path / "missing.csv"
    assert main([*args, "--input", str(missing), "--overwrite", "--no-progress"]) == 1
    assert "missing.csv" in no_internal_error(capsys)
    assert main([*filter_args(net, output, "--hard", "1.5", "--overwrite")]) == 1
    assert "--hard" in no_internal_error(capsys)
    assert {p.name: p.read_bytes() for p in output.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--hard", "1.5"),
        ("--correct", "-0.1"),
        ("--forcing", "2"),
        ("--limit", "0"),
        ("--sample", "0"),
        ("--chunk-size", "0"),
        ("--hard", "nan"),
    ],
)
def test_out_of_range_filter_settings_are_one_line(net, tmp_path, capsys, option, value):
    output = tmp_path / "run"
    assert main(filter_args(net, output, option, value)) == 1
    assert option in no_internal_error(capsys)
    assert not output.exists()


def test_corrupt_refuses_a_bad_chunk_size_and_empty_or_foreign_directories(
    net, tmp_path, dataset, empty_dataset, capsys
) -> None:
    args = ["--net", net, "--weak", net, "--no-progress"]
    assert main(["puzzles", "corrupt", str(dataset), *args, "--chunk-size", "0"]) == 1
    assert "--chunk-size" in no_internal_error(capsys)
    assert main(["puzzles", "corrupt", str(empty_dataset), *args]) == 1
    assert "no selected puzzles" in no_internal_error(capsys)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "run.json").write_text('{"format": "leelalab.run/1"}')
    for command in (
        ["puzzles", "corrupt", str(foreign), *args],
        ["puzzles", "show", str(foreign)],
        ["puzzles", "export", str(foreign), str(tmp_path / "x.jsonl")],
        ["plot", "training", str(foreign), "--output", str(tmp_path / "f.pdf")],
    ):
        assert main(command) == 1, command
        no_internal_error(capsys)
    assert not (tmp_path / "x.jsonl").exists() and not (tmp_path / "f.pdf").exists()


def test_a_truncated_settings_file_is_one_line(net, tmp_path, dataset, capsys) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    text = (copy / "settings.json").read_text()
    (copy / "settings.json").write_text(text[: len(text) // 2])
    assert main(["puzzles", "show", str(copy)]) == 1
    assert "settings.json" in no_internal_error(capsys)


def test_show_lists_the_ids_then_draws_one_into_a_new_folder(net, tmp_path, dataset, capsys):
    assert main(["puzzles", "show", str(dataset)]) == 0
    captured = capsys.readouterr()
    ids = [line.split()[0] for line in captured.out.splitlines()[2:]]
    selected = [
        json.loads(line)["id"]
        for line in (dataset / "dataset.jsonl").read_text().splitlines()
        if json.loads(line)["selected"]
    ]
    assert ids == selected and len(ids) > 5 and "--id" in captured.err
    figure = tmp_path / "new" / "folder" / "puzzle.pdf"
    show = ["puzzles", "show", str(dataset), "--id", ids[0], "--net", net]
    assert main([*show, "--output", str(figure)]) == 0
    assert figure.is_file() and figure.with_suffix(".png").is_file()
    capsys.readouterr()
    before = figure.read_bytes()
    assert main([*show, "--output", str(figure)]) == 1
    assert "--overwrite" in no_internal_error(capsys)
    assert figure.read_bytes() == before
    assert main([*show, "--output", str(figure), "--overwrite"]) == 0


def test_show_lists_nothing_for_an_empty_dataset(empty_dataset, capsys) -> None:
    assert main(["puzzles", "show", str(empty_dataset)]) == 0
    assert "no selected puzzles" in capsys.readouterr().err
    assert main(["puzzles", "show", str(empty_dataset), "--id", "x", "--output", "f.pdf"]) == 1
    assert "'x'" in no_internal_error(capsys)


def test_export_checks_its_input_before_touching_the_output(
    net, tmp_path, dataset, empty_dataset, capsys
) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("keep me")
    missing = tmp_path / "missing"
    assert main(["puzzles", "export", str(missing), str(target), "--overwrite"]) == 1
    assert "missing" in no_internal_error(capsys)
    assert target.read_text() == "keep me"
    assert main(["puzzles", "export", str(dataset), str(target)]) == 1
    assert "--overwrite" in no_internal_error(capsys)
    nested = tmp_path / "a" / "b.jsonl"
    assert main(["puzzles", "export", str(empty_dataset), str(nested)]) == 0
    assert nested.read_text() == ""


def test_a_resumed_filter_says_so(net, tmp_path, capsys) -> None:
    output = tmp_path / "run"
    assert main(filter_args(net, output, "--limit", "12", "--chunk-size", "4")) == 0
    (output / "run.json").unlink()
    (output / "dataset.jsonl").unlink()
    (output / "chunks" / "00002.jsonl").unlink()
    capsys.readouterr()
    assert main(filter_args(net, output, "--limit", "12", "--chunk-size", "4")) == 0
    assert f"resuming {output}: 2 of 3 chunks done" in capsys.readouterr().err


def test_distill_output_is_checked_first(net, tmp_path, capsys) -> None:
    wrong = tmp_path / "weak.txt"
    assert main(["distill", "--net", net, "--output", str(wrong), "--positions", "10"]) == 1
    assert ".pb.gz" in no_internal_error(capsys)
    existing = tmp_path / "weak.pb.gz"
    existing.write_bytes(b"keep me")
    assert main(["distill", "--net", net, "--output", str(existing), "--positions", "10"]) == 1
    assert "--overwrite" in no_internal_error(capsys)
    assert existing.read_bytes() == b"keep me"


def test_filter_overwrite_replaces_the_corruptions_too(net, tmp_path, capsys) -> None:
    # corruptions.jsonl belongs to the dataset: a new filter run must not keep the old one.
    output = tmp_path / "run"
    loose = ["--hard", "1", "--correct", "0", "--forcing", "0"]
    assert main(filter_args(net, output, "--limit", "3", *loose)) == 0
    args = ["puzzles", "corrupt", str(output), "--net", net, "--weak", net, "--no-progress"]
    assert main(args) == 0
    assert "corruptions.jsonl" in json.loads((output / "run.json").read_text())["outputs"]
    (output / "notes.txt").write_text("mine")
    assert main(filter_args(net, output, "--limit", "4", *loose, "--overwrite")) == 0
    assert not (output / "corruptions.jsonl").exists()
    assert (output / "notes.txt").read_text() == "mine"


def test_out_of_range_distill_settings_are_one_line(net, tmp_path, capsys) -> None:
    output = tmp_path / "weak.pb.gz"
    assert main(["distill", "--net", net, "--output", str(output), "--positions", "5"]) == 1
    assert "--positions" in no_internal_error(capsys)
    assert main(["distill", "--net", net, "--output", str(output), "--epochs", "0"]) == 1
    assert "--epochs" in no_internal_error(capsys)
    assert not output.exists()


def test_a_filter_run_of_an_older_leelalab_is_still_complete(net, tmp_path, capsys) -> None:
    # Records written before the one run record had no "format" and no "outputs".
    output = tmp_path / "run"
    assert main(filter_args(net, output, "--limit", "6")) == 0
    record = json.loads((output / "run.json").read_text())
    for key in ("format", "outputs"):
        del record[key]
    (output / "run.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert main(filter_args(net, output, "--limit", "6")) == 0
    assert "already holds this run" in capsys.readouterr().err
    (output / "notes.txt").write_text("mine")
    assert main(filter_args(net, output, "--limit", "7", "--overwrite")) == 0
    assert (output / "notes.txt").read_text() == "mine"
    assert len((output / "dataset.jsonl").read_text().splitlines()) == 7
