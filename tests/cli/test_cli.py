"""The command line: output contracts and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import chess
import pytest

from leelalab.cli import main
from leelalab.inference.networks import load_network
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.models.evaluation import evaluate

START = chess.STARTING_FEN


@pytest.fixture(scope="module")
def tiny_net(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("nets") / "tiny.pb.gz"
    return save_weights(random_resnet_weights(seed=2, moves_left=True), path)


def test_info_text_and_json(maia_path: Path, capsys) -> None:
    assert main(["info", "maia-1900"]) == 0
    text = capsys.readouterr().out
    assert "se-resnet (6x64)" in text and "CONVOLUTION" in text
    assert main(["info", str(maia_path), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["architecture"] == "6x64" and record["blocks"] == 6


def test_eval_fen_table(maia_path: Path, capsys) -> None:
    assert main(["eval", "maia-1900", "--fen", START, "--moves", "e2e4", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "black to move" in out
    assert "c7c5" in out and "W/D/L" in out and "moves left: n/a" in out


def test_eval_fen_json_matches_library(tiny_net: Path, capsys) -> None:
    assert main(["eval", str(tiny_net), "--fen", START, "--moves", "d2d4", "d7d5", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    board = chess.Board()
    board.push_uci("d2d4")
    board.push_uci("d7d5")
    expected = evaluate(load_network(tiny_net), [board])[0]
    assert record["policy"] == pytest.approx(expected.policy)
    assert record["wdl"] == pytest.approx(list(expected.wdl))
    assert record["m"] == pytest.approx(expected.moves_left)


def test_eval_positions_contract(tiny_net: Path, tmp_path: Path) -> None:
    lines = [
        {"fen": START, "moves": []},
        {"fen": START, "moves": ["e2e4", "e7e5", "g1f3"]},
        {"fen": "r3k2r/8/8/8/8/8/8/R3K2R w KQkq - 0 1", "moves": ["e1g1"]},
        {"fen": "8/1P4k1/8/8/8/8/5K2/8 w - - 0 60"},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    output = tmp_path / "out.jsonl"
    args = [
        "eval",
        str(tiny_net),
        "--positions",
        str(source),
        "--output",
        str(output),
        "--batch-size",
        "3",
        "--history",
        "none",
    ]
    assert main(args) == 0
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(records) == len(lines)
    boards = []
    for line in lines:
        board = chess.Board(line["fen"])
        for uci in line.get("moves", []):
            board.push_uci(uci)
        boards.append(board)
    expected = evaluate(load_network(tiny_net), boards, history="none")
    for record, board, reference in zip(records, boards, expected, strict=True):
        assert set(record) == {"policy", "wdl", "q", "m"}
        assert set(record["policy"]) == {move.uci() for move in board.legal_moves}
        assert sum(record["policy"].values()) == pytest.approx(1.0)
        assert record["policy"] == pytest.approx(reference.policy)
        assert record["q"] == pytest.approx(record["wdl"][0] - record["wdl"][2])
        assert isinstance(record["m"], float)
    assert "b7b8q" in records[3]["policy"] and "b7b8n" in records[3]["policy"]


def test_eval_positions_same_records_with_and_without_orjson(
    tiny_net: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """orjson (when installed) and the standard library write the same fields and values in
    the same order; without orjson the lines are exactly ``json.dumps`` of the records."""
    pytest.importorskip("orjson")
    source = tmp_path / "in.jsonl"
    lines = [{"fen": START, "moves": ["e2e4"]}, {"fen": "8/1P4k1/8/8/8/8/5K2/8 w - - 0 60"}]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    fast, plain = tmp_path / "fast.jsonl", tmp_path / "plain.jsonl"
    base = ["eval", str(tiny_net), "--positions", str(source), "--no-progress", "--output"]
    assert main([*base, str(fast)]) == 0
    monkeypatch.setitem(sys.modules, "orjson", None)  # import orjson now raises ImportError
    assert main([*base, str(plain)]) == 0
    fast_records = [json.loads(line) for line in fast.read_text().splitlines()]
    plain_lines = plain.read_text().splitlines()
    assert fast_records == [json.loads(line) for line in plain_lines]
    assert [list(r["policy"]) for r in fast_records] == [
        list(json.loads(line)["policy"]) for line in plain_lines
    ]
    assert plain_lines == [json.dumps(record) for record in fast_records]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "nonexistent.pb.gz", "--fen", START], "no such network file"),
        (["eval", "maia-1900", "--fen", "not a fen"], "invalid FEN"),
        (["eval", "maia-1900", "--fen", START, "--moves", "e2e5"], "e2e5"),
        (["info", "missing.pb.gz"], "no such network file"),
    ],
)
def test_errors_are_one_line(args: list[str], message: str, capsys) -> None:
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_corrupt_network_files(tmp_path: Path, tiny_net: Path, capsys) -> None:
    bad = tmp_path / "bad.pb.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    assert main(["info", str(bad)]) == 1
    assert "truncated gzip" in capsys.readouterr().err
    data = bytearray(tiny_net.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # damage the deflate stream
    bad.write_bytes(bytes(data))
    assert main(["eval", str(bad), "--fen", START]) == 1
    err = capsys.readouterr().err
    assert "corrupt gzip" in err or "not a valid lc0 network" in err


def test_bad_jsonl_line_names_the_line_and_leaves_no_output(
    tiny_net: Path, tmp_path: Path, capsys
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps({"fen": START}) + "\n" + json.dumps({"fen": START, "moves": ["a1a8"]}) + "\n"
    )
    output = tmp_path / "out.jsonl"
    assert main(["eval", str(tiny_net), "--positions", str(source), "--output", str(output)]) == 1
    err = capsys.readouterr().err
    assert "line 2" in err and "a1a8" in err
    assert not output.exists()
    assert not list(tmp_path.glob("*.partial"))
    source.write_text("{not json\n")
    assert main(["eval", str(tiny_net), "--positions", str(source), "--output", str(output)]) == 1
    assert "line 1" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "maia-1900"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "maia-1900", "--positions", "in.jsonl"])
    assert exit_info.value.code == 2


def test_console_script_runs_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "leelalab.cli", "info", str(tmp_path / "none.pb.gz")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("leelalab: error:") and "Traceback" not in result.stderr


def test_demo_runs_on_shipped_puzzles(maia_path: Path, capsys) -> None:
    assert main(["demo", "--limit", "40", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "40 kept" in out and "top-1 = solution" in out and "all" in out


def test_the_puzzle_and_training_options_load_without_torch() -> None:
    # Their options come from settings classes: building them must stay light, so that
    # help screens do not pay for torch, h5py or sklearn.
    code = (
        "import argparse, sys\n"
        "from leelalab.cli import common, puzzles, train\n"
        "commands = argparse.ArgumentParser().add_subparsers()\n"
        "puzzles.register(commands)\n"
        "_, plot = common.add_group(commands, 'plot', 'figures', 'plot_command')\n"
        "train.register(commands, plot)\n"
        "print(sorted({'torch', 'h5py', 'sklearn'} & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
