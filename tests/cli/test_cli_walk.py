"""The whole command line walked (issues 20 and 26).

Every leaf command of ``leelalab`` — found by walking the argparse tree, so a new command is
covered without editing this file — is fed a wrong-kind directory (a folder of unrelated
JSON and HDF5), another command's output and an empty dataset (a filter run of a
header-only CSV) wherever it takes an input. Only two outcomes are accepted: exit 0, or a
non-zero exit with exactly one ``leelalab: error:`` line on stderr.

Every command with ``--overwrite`` is pointed with an invalid input at a previous leelalab
output holding a user's ``notes.txt``: it must fail in one line and leave the folder
byte-identical.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import chess
import h5py
import numpy as np
import pytest

from leelalab.cli import main
from leelalab.cli.main import build_parser
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights, random_transformer_weights
from leelalab.puzzles.dataset import write_pairs_dataset
from positions import PUZZLES_CSV, corrupted_puzzles

CASE_SECONDS = 30
"""A guard, not a budget: every case should fail or finish in well under a second or two."""

NON_INPUT_POSITIONALS = {"output_positional", "kind"}
"""Positionals that are not inputs (an output path; the kind of an anomaly task)."""

OPTION_INPUTS: dict[str, tuple[str, ...]] = {
    "info": (),
    "eval": ("--positions",),
    "demo": ("--puzzles",),
    "puzzles filter": ("--input",),
    "distill": ("--teacher",),
    "plot analyses": ("--dataset", "--patching", "--coupling", "--search"),
    "future-board": ("--dataset",),
    "steer": ("--probes",),
    "lens train": ("--net",),
    "lens run": ("--tuned-lens",),
    "anomaly backdoor": ("--net",),
    "anomaly task": ("--puzzles",),
    "train": ("--teacher",),
}
"""Inputs given by an option rather than a positional."""

EXTRA: dict[str, tuple[str, ...]] = {
    "heads single-entry": ("--layer", "0", "--head", "0"),
}
"""Required or cheapening arguments a command needs besides its inputs."""

NETWORK_OPTIONS = ("--net", "--weak", "--strong", "--teacher", "--source")
"""Network options set to the tiny network unless the case feeds them a bad input."""

FILE_OUTPUTS = {
    "eval": ".jsonl", "convert": ".pb.gz", "train": ".pb.gz", "distill": ".pb.gz",
    "plot training": ".png", "puzzles show": ".png", "puzzles export": ".csv",
    "activations cache": ".h5",
}  # fmt: skip
"""Commands whose --output (or output positional) is a file (or a file stem): its ending."""

ATTENTION_ONLY = ("patch heads", "heads ")
"""Commands that need an attention-body network (given a tiny transformer)."""


def output_path(name: str, folder: Path) -> Path:
    return folder / ("out" + FILE_OUTPUTS.get(name, ""))


def leaf_commands() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]):
        groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not groups:
            yield " ".join(path), parser
        for group in groups:
            seen: set[int] = set()
            for name, sub in group.choices.items():
                if id(sub) not in seen:  # aliases share a parser
                    seen.add(id(sub))
                    yield from walk(sub, (*path, name))

    yield from walk(build_parser(), ())


LEAVES = dict(leaf_commands())


def positionals(parser: argparse.ArgumentParser) -> list[str]:
    return [a.dest for a in parser._actions if not a.option_strings]


def input_slots(name: str, parser: argparse.ArgumentParser) -> list[str]:
    slots = [dest for dest in positionals(parser) if dest not in NON_INPUT_POSITIONALS]
    return slots + list(OPTION_INPUTS.get(name, ()))


def options(parser: argparse.ArgumentParser) -> set[str]:
    return set(parser._option_string_actions)


def argv_for(
    name: str, parser: argparse.ArgumentParser, bad: str, net: str, output: Path
) -> list[str]:
    """The command line of ``name`` with every input slot given ``bad``."""
    slots = input_slots(name, parser)
    argv = name.split()
    for dest in positionals(parser):
        if dest == "kind":
            argv.append("mechanism")  # the kind that reads an input (--puzzles)
        elif dest == "output_positional":
            argv.append(str(output))
        elif dest in slots:
            argv.append(bad)
    opts = options(parser)
    for slot in slots:
        if slot.startswith("--"):
            argv += [slot, bad]
    actions = parser._option_string_actions
    fed = {id(actions[slot]) for slot in slots if slot in actions}
    if "net_positional" in slots:  # the positional network is --net by another name
        fed.add(id(actions["--net"]))
    for option in NETWORK_OPTIONS:
        if option in opts and id(actions[option]) not in fed:
            fed.add(id(actions[option]))
            argv += [option, net]
    if "--output" in opts:
        argv += ["--output", str(output)]
    if "--no-progress" in opts:
        argv.append("--no-progress")
    return argv + list(EXTRA.get(name, ()))


class _Timeout(BaseException):
    """Not an Exception: the CLI's catch-all must not turn it into an error line."""


def run_guarded(argv: list[str]) -> int:
    def expire(*_args: object) -> None:
        raise _Timeout(f"{' '.join(argv)} ran past {CASE_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(CASE_SECONDS)
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse: the table above misses a required argument
        return 2 if exit_.code is None else int(exit_.code) or 0
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def assert_clean(argv: list[str], status: int, err: str) -> None:
    shown = " ".join(argv)
    assert "Traceback" not in err and "internal error" not in err, (shown, err)
    if status != 0:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("leelalab: error:"), (shown, status, err)


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("nets") / "tiny.pb.gz"
    return str(save_weights(random_resnet_weights(blocks=2, filters=8, seed=3), path))


@pytest.fixture(scope="module")
def transformer(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("nets") / "transformer.pb.gz"
    return str(save_weights(random_transformer_weights(layers=2, heads=4, seed=3), path))


def network_for(name: str, request) -> str:
    fixture = "transformer" if name.startswith(ATTENTION_ONLY) else "net"
    return str(request.getfixturevalue(fixture))


@pytest.fixture(scope="module")
def empty_dataset(net, tmp_path_factory) -> Path:
    """A filter run of a header-only puzzle CSV: a dataset with no puzzles."""
    folder = tmp_path_factory.mktemp("empty")
    header = folder / "header.csv"
    header.write_text(PUZZLES_CSV.read_text().splitlines()[0] + "\n")
    directory = folder / "run"
    args = ["puzzles", "filter", "--net", net, "--weak", net, "--input", str(header)]
    assert main([*args, "--output", str(directory), "--no-progress"]) == 0
    return directory


@pytest.fixture(scope="module")
def foreign(tmp_path_factory) -> Path:
    """A folder holding only an unrelated JSON file and an unrelated HDF5 file."""
    folder = tmp_path_factory.mktemp("foreign")
    (folder / "results.json").write_text(json.dumps({"hello": [1, 2, 3]}) + "\n")
    with h5py.File(folder / "data.h5", "w") as handle:
        handle["x"] = np.arange(4.0)
    return folder


MIMICKED = (
    "settings.json", "run.json", "summary.json", "results.json", "task.json", "heads.json",
    "dataset.jsonl", "corruptions.jsonl", "positions.jsonl", "refutations.jsonl",
)  # fmt: skip
"""The names commands look for, each holding well-formed JSON of the wrong shape."""


@pytest.fixture(scope="module")
def mimic(tmp_path_factory) -> Path:
    """A folder that looks like any command's output by its file names, but holds JSON of
    another shape (a record of an unknown format) in each: no command may trust names."""
    folder = tmp_path_factory.mktemp("mimic")
    for name in MIMICKED:
        (folder / name).write_text(
            json.dumps({"id": "00001", "format": "leelalab.other/1", "x": 1}) + "\n"
        )
    return folder


@pytest.fixture(scope="module")
def truncated(tmp_path_factory) -> Path:
    """The same names, each cut off mid-record (an interrupted copy)."""
    folder = tmp_path_factory.mktemp("truncated")
    for name in MIMICKED:
        (folder / name).write_text('{"id": "00001", "format": "leelalab.')
    return folder


@pytest.fixture(scope="module")
def foreign_h5(foreign) -> Path:
    """An HDF5 file of another kind, given where a file (an activation store) goes."""
    return foreign / "data.h5"


@pytest.fixture(scope="module")
def foreign_json(foreign) -> Path:
    """A JSON file of another kind, given where a folder or a file goes."""
    return foreign / "results.json"


@pytest.fixture(scope="module")
def export_run(net, empty_dataset, tmp_path_factory) -> Path:
    """Another command's output: an export of the empty dataset (not a filter run)."""
    output = tmp_path_factory.mktemp("export") / "exported"
    assert main(["puzzles", "export", str(empty_dataset), str(output)]) == 0
    return output


def bad_inputs(request, name: str) -> str:
    return str(request.getfixturevalue(name))


WITH_INPUTS = [name for name, parser in LEAVES.items() if input_slots(name, parser)]


def test_the_walk_finds_every_group() -> None:
    groups = {name.split()[0] for name in LEAVES}
    assert {"puzzles", "patch", "probe", "lens", "analyze", "anomaly", "plot"} <= groups
    assert len(WITH_INPUTS) >= 35, WITH_INPUTS


@pytest.mark.parametrize(
    "bad",
    ["foreign", "mimic", "truncated", "foreign_h5", "foreign_json", "empty_dataset", "export_run"],
)
@pytest.mark.parametrize("name", WITH_INPUTS)
def test_every_command_fails_in_one_line(name, bad, request, tmp_path, capsys) -> None:
    net = network_for(name, request)
    output = output_path(name, tmp_path)
    argv = argv_for(name, LEAVES[name], bad_inputs(request, bad), net, output)
    capsys.readouterr()
    status = run_guarded(argv)
    assert_clean(argv, status, capsys.readouterr().err)
    if status != 0:  # a refused input leaves nothing behind
        assert not output.exists() and not output.with_name(output.name + ".parts").exists()


def previous_output(output: Path, file_output: bool) -> dict[str, bytes]:
    """A previous leelalab output holding a user's file; returns its bytes by file."""
    if file_output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(b"a previous result\n")
        return {output.name: output.read_bytes()}
    output.mkdir(parents=True)
    (output / "settings.json").write_text(json.dumps({"seed": 0}) + "\n")
    (output / "result.json").write_text(json.dumps({"value": 1.0}) + "\n")
    record = {"seed": 0, "format": "leelalab.run/1", "outputs": ["result.json"]}
    (output / "run.json").write_text(json.dumps(record) + "\n")
    (output / "notes.txt").write_text("a user's notes\n")
    return snapshot(output)


def snapshot(folder: Path) -> dict[str, bytes]:
    if folder.is_file():
        return {folder.name: folder.read_bytes()}
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


OVERWRITING = [name for name, parser in LEAVES.items() if "--overwrite" in options(parser)]


def test_overwriting_commands_are_found() -> None:
    assert {"puzzles filter", "anomaly task", "anomaly run", "lens run"} <= set(OVERWRITING)


@pytest.mark.parametrize("invalid", ["foreign", "missing"])
@pytest.mark.parametrize("name", OVERWRITING)
def test_overwrite_with_an_invalid_input_keeps_the_output(
    name, invalid, foreign, request, tmp_path, capsys
) -> None:
    parser = LEAVES[name]
    bad = str(foreign) if invalid == "foreign" else str(tmp_path / "does-not-exist")
    net = network_for(name, request)
    output = output_path(name, tmp_path)
    before = previous_output(output, name in FILE_OUTPUTS)
    writes_into_input = "--output" not in options(parser) and "output_positional" not in (
        positionals(parser)
    )
    # A new command with --overwrite but no input known here: name its input in OPTION_INPUTS.
    assert input_slots(name, parser), name
    # puzzles corrupt writes into its input: the previous output is then the invalid input.
    argv = argv_for(name, parser, str(output) if writes_into_input else bad, net, output)
    argv.append("--overwrite")
    capsys.readouterr()
    status = run_guarded(argv)
    assert_clean(argv, status, capsys.readouterr().err)
    assert status != 0, argv
    assert snapshot(output) == before, argv


# A valid run with --overwrite into a previous output of the same command keeps a user's
# file (the commands that run cheaply on tiny inputs; lens, future-board, steering,
# refutations and anomaly runs have the same test beside their other CLI tests).


@pytest.fixture(scope="module")
def dataset(net, tmp_path_factory) -> Path:
    """A small filter run: the shipped sample's first 20 puzzles, thresholds loose enough
    that a random network selects most of them."""
    directory = tmp_path_factory.mktemp("dataset") / "run"
    args = ["puzzles", "filter", "--net", net, "--weak", net, "--input", str(PUZZLES_CSV)]
    loose = ["--hard", "1", "--correct", "0", "--forcing", "0", "--limit", "20"]
    assert main([*args, *loose, "--output", str(directory), "--no-progress"]) == 0
    return directory


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """A dataset with corruptions (patching's input)."""
    directory = tmp_path_factory.mktemp("pairs")
    write_pairs_dataset(directory, corrupted_puzzles(4, min_moves=5))
    return directory


@pytest.fixture(scope="module")
def store(net, dataset, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("store") / "acts.h5"
    argv = ["activations", "cache", str(dataset), "--net", net, "--output", str(path)]
    assert main([*argv, "--no-progress"]) == 0
    return path


def valid_runs(request, name: str, output: Path) -> list[str]:
    fixture = request.getfixturevalue
    net = str(fixture("net"))
    quiet = "--no-progress"
    return {
        "puzzles corrupt": ["puzzles", "corrupt", str(output), "--net", net, "--weak", net, quiet],
        "patch residual": [
            *["patch", "residual", str(fixture("pairs")), "--net", net, "--layers", "0"],
            *["--output", str(output), quiet],
        ],
        "activations cache": [
            *["activations", "cache", str(fixture("dataset")), "--net", net, "--limit", "4"],
            *["--output", str(output), quiet],
        ],
        "probe train": [
            *["probe", "train", str(fixture("store")), "--seeds", "0", "--epochs", "1"],
            *["--no-control", "--output", str(output), quiet],
        ],
        "analyze themes": [
            *["analyze", "themes", str(fixture("dataset")), "--min-puzzles", "5"],
            *["--output", str(output)],
        ],
        "analyze predictions": [
            "analyze", "predictions", str(fixture("dataset")), "--output", str(output),
        ],
        "puzzles filter": [
            *["puzzles", "filter", "--net", net, "--weak", net, "--input", str(PUZZLES_CSV)],
            *["--limit", "3", "--output", str(output), quiet],
        ],
        "eval": ["eval", net, "--fen", chess.STARTING_FEN, "--output", str(output)],
        "convert": ["convert", net, str(output)],
        "puzzles export": ["puzzles", "export", str(fixture("dataset")), str(output)],
        "anomaly task": [
            *["anomaly", "task", "ood", "--net", net, "--weak", net, "--trusted", "48"],
            *["--pool", "16", "--test", "32", "--per-game", "4", "--max-plies", "24"],
            *["--output", str(output), quiet],
        ],
    }[name]  # fmt: skip


MORE = ["puzzles filter", "eval", "convert", "puzzles export"]
"""Commands that are cheap too, whose valid --overwrite runs are tested elsewhere."""

CHEAP = [
    "puzzles corrupt", "patch residual", "activations cache", "probe train", "analyze themes",
    "analyze predictions", "anomaly task",
]  # fmt: skip


@pytest.mark.parametrize("name", CHEAP)
def test_a_valid_overwrite_keeps_a_users_file(name, request, tmp_path, capsys) -> None:
    if name == "puzzles corrupt":  # corrupt writes into its input: a copy of the dataset
        output = tmp_path / "run"
        shutil.copytree(request.getfixturevalue("dataset"), output)
    else:
        output = output_path(name, tmp_path)
    argv = valid_runs(request, name, output)
    assert run_guarded(argv) == 0, capsys.readouterr().err
    notes = (output if output.is_dir() else output.parent) / "notes.txt"
    notes.write_text("a user's notes\n")
    assert run_guarded([*argv, "--overwrite"]) == 0, capsys.readouterr().err
    assert notes.read_text() == "a user's notes\n"
    assert run_guarded([*argv, "--overwrite"]) == 0, capsys.readouterr().err  # again
    assert notes.read_text() == "a user's notes\n"
    # Work folders of parts or chunks are discarded, the user's file kept.
    assert not list(notes.parent.glob("*.parts")) and not list(notes.parent.glob("*.chunks"))


@pytest.mark.parametrize("name", [n for n in CHEAP if n != "puzzles corrupt"] + MORE)
def test_overwrite_never_replaces_what_is_not_a_leelalab_output(
    name, request, tmp_path, capsys
) -> None:
    """An output path that holds a user's folder (for a command writing a file) or a user's
    file (for a command writing a folder): --overwrite with a valid input keeps it."""
    output = output_path(name, tmp_path)
    if name in FILE_OUTPUTS:
        output.mkdir()
        (output / "notes.txt").write_text("a user's notes\n")
    else:
        output.write_text("a user's notes\n")
    before = snapshot(output)
    argv = [*valid_runs(request, name, output), "--overwrite"]
    capsys.readouterr()
    status = run_guarded(argv)
    assert_clean(argv, status, capsys.readouterr().err)
    assert snapshot(output) == before, argv


def test_the_check_rejects_tracebacks_internal_and_usage_errors(capsys) -> None:
    with pytest.raises(AssertionError):
        assert_clean(["x"], 1, "leelalab: internal error: KeyError: 'layers' (set ...)\n")
    with pytest.raises(AssertionError):
        assert_clean(["x"], 1, "Traceback (most recent call last):\nleelalab: error: x\n")
    with pytest.raises(AssertionError):
        assert_clean(["x"], 1, "leelalab: error: one\nleelalab: error: two\n")
    capsys.readouterr()
    status = run_guarded(["puzzles", "filter"])  # no --output: argparse's usage and error
    err = capsys.readouterr().err
    assert status == 2
    with pytest.raises(AssertionError):
        assert_clean(["puzzles", "filter"], status, err)
    assert_clean(["x"], 1, "leelalab: error: /some/dir: not a filtered dataset\n")


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_damaged_probe_weights_are_one_line(damage, net, dataset, store, tmp_path, capsys):
    # Found by the walk: a truncated .safetensors was an internal error in probe eval and steer.
    from safetensors.numpy import save_file

    probes = tmp_path / "probes"
    train = ["probe", "train", str(store), "--seeds", "0", "--epochs", "1", "--no-control"]
    assert main([*train, "--output", str(probes), "--no-progress"]) == 0
    for weights in probes.glob("*.safetensors"):
        if damage == "truncated":
            weights.write_bytes(weights.read_bytes()[:100])
        else:
            save_file({"other": np.zeros(3, dtype=np.float32)}, str(weights))
    steer = ["steer", str(dataset), "--probes", str(probes), "--net", net, "--limit", "3"]
    for argv in (
        ["probe", "eval", str(probes), str(store)],
        [*steer, "--output", str(tmp_path / "steer"), "--no-progress"],
    ):
        capsys.readouterr()
        assert run_guarded(argv) == 1
        err = capsys.readouterr().err
        assert_clean(argv, 1, err)
        assert ".safetensors" in err, err
    assert not (tmp_path / "steer").exists()
