"""CLI conventions hold for every command: help text and defaults shown, the same option
names for the same things, help when a command is incomplete, one-line errors."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import chess
import pytest

from leelalab.cli import main
from leelalab.cli.main import build_parser
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights

# Commands that run long enough to show progress bars.
LONG_COMMANDS = {
    "eval",
    "demo",
    "distill",
    "puzzles filter",
    "puzzles corrupt",
    "patch residual",
    "patch heads",
    "heads single-entry",
    "heads search",
    "heads piece-movement",
    "activations cache",
    "probe train",
}


def commands(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix} {name}".strip()
                yield full, sub
                yield from commands(sub, full)


def leaf_commands() -> list[tuple[str, argparse.ArgumentParser]]:
    return [
        (name, sub)
        for name, sub in commands(build_parser())
        if not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)
    ]


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        action
        for action in parser._actions
        if action.option_strings and action.help != argparse.SUPPRESS and action.dest != "help"
    ]


@pytest.mark.parametrize("name,parser", leaf_commands(), ids=[n for n, _ in leaf_commands()])
def test_every_option_has_help_and_shows_its_default(name: str, parser) -> None:
    text = parser.format_help()
    for action in options(parser):
        assert action.help, f"{name} {action.option_strings[0]} has no help text"
        default = action.default
        if default is not None and not isinstance(default, bool):
            several = isinstance(default, list | tuple)
            shown = " ".join(map(str, default)) if several else str(default)
            # Compared without whitespace: help wraps long defaults, also after hyphens.
            compact = "".join(text.split())
            assert "".join(f"(default: {shown})".split()) in compact, (name, action.option_strings)
    for action in parser._actions:
        if not action.option_strings and action.help != argparse.SUPPRESS:
            assert action.help, f"{name}: positional {action.dest} has no help text"


@pytest.mark.parametrize("name,parser", leaf_commands(), ids=[n for n, _ in leaf_commands()])
def test_the_same_thing_has_the_same_option_name(name: str, parser) -> None:
    by_dest = {action.dest: action.option_strings for action in options(parser)}
    for action in options(parser):
        if {"--out", "--output"} & set(action.option_strings):
            assert action.dest == "output", f"{name}: {action.option_strings} is not --output"
    if "output" in by_dest:
        assert {"--output", "--out"} <= set(by_dest["output"]), name
    if "net" in by_dest:
        assert "--net" in by_dest["net"], name
    if "strong" in by_dest:
        assert "--net" in by_dest["strong"], name
    if "no_progress" in by_dest:
        assert by_dest["no_progress"] == ["--no-progress"], name
    if "seed" in by_dest:
        assert by_dest["seed"] == ["--seed"], name
    # Commands that write a run directory or a file users keep can be told to replace it;
    # figures and derived tables are simply rewritten.
    rewrites = name.startswith("plot ") or name in {
        "puzzles show",
        "analyze predictions",
        "analyze themes",
    }
    if "output" in by_dest and not rewrites:
        assert "overwrite" in by_dest, f"{name} writes --output but has no --overwrite"
    if name in LONG_COMMANDS:
        assert "no_progress" in by_dest, f"{name} shows progress but has no --no-progress"
    for action in options(parser):
        for choice in action.choices or ():
            assert " " not in str(choice), (name, action.option_strings, choice)


def test_alone_the_command_and_its_groups_print_help(capsys) -> None:
    assert main([]) == 0
    assert "puzzles" in capsys.readouterr().out
    assert main(["puzzles"]) == 0
    out = capsys.readouterr().out
    assert "filter" in out and "corrupt" in out


@pytest.fixture(scope="module")
def tiny_net(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("nets") / "tiny.pb.gz"
    return save_weights(random_resnet_weights(seed=5, blocks=2), path)


def test_old_positional_spellings_still_work(tiny_net: Path, capsys) -> None:
    assert main(["info", str(tiny_net), "--json"]) == 0
    by_position = json.loads(capsys.readouterr().out)
    assert main(["info", "--net", str(tiny_net), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == by_position
    with pytest.raises(SystemExit) as exit_info:
        main(["info", str(tiny_net), "--net", "maia-1900"])
    assert exit_info.value.code == 2


def test_eval_takes_san_as_well_as_uci(tiny_net: Path, capsys) -> None:
    fen = chess.STARTING_FEN
    assert (
        main(["eval", "--net", str(tiny_net), "--fen", fen, "--moves", "e4", "Nf6", "--json"]) == 0
    )
    san = json.loads(capsys.readouterr().out)
    assert main(["eval", str(tiny_net), "--fen", fen, "--moves", "e2e4", "g8f6", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == san
    assert main(["eval", str(tiny_net), "--fen", fen, "--moves", "e4", "Ke2"]) == 1
    assert "neither a legal UCI nor a legal SAN" in capsys.readouterr().err


def test_info_lists_hook_points(tiny_net: Path, capsys) -> None:
    assert main(["info", str(tiny_net), "--hooks"]) == 0
    out = capsys.readouterr().out
    assert "blocks.1.hook_resid_post" in out and "policy_head.hook_logits" in out
    assert main(["info", str(tiny_net), "--hooks", "--json"]) == 0
    assert "blocks.0.hook_conv1" in json.loads(capsys.readouterr().out)["hooks"]


def test_outputs_are_not_replaced_without_overwrite(tiny_net: Path, tmp_path: Path, capsys):
    target = tmp_path / "copy.pb.gz"
    target.write_bytes(b"keep me")
    assert main(["convert", str(tiny_net), str(target)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert target.read_bytes() == b"keep me"
    assert main(["convert", str(tiny_net), str(target), "--overwrite"]) == 0
    assert target.read_bytes() != b"keep me"


def test_an_unexpected_error_is_one_line_without_traceback(monkeypatch, capsys) -> None:
    import leelalab.cli.networks as networks

    def broken(_args):
        raise RuntimeError("something\nwent wrong")

    monkeypatch.setattr(networks, "cmd_info", broken)
    monkeypatch.delenv("LEELALAB_DEBUG", raising=False)
    assert main(["info", "maia-1900"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "internal error: RuntimeError: something went wrong" in err
