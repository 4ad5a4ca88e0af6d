"""Positions JSONL files: boards in order; each bad line is one short error naming the file
and line; an empty file is an error; the count for progress bars."""

from __future__ import annotations

import json
from pathlib import Path

import chess
import pytest

from leelalab.errors import PositionError
from leelalab.puzzles.positions import (
    PositionsFileError,
    count_positions,
    read_positions,
)

FEN = "rnbqkbnr/ppp1p1pp/8/3pPp2/8/8/PPPP1PPP/RNBQKBNR w KQkq f6 0 3"


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_boards_in_order_with_history(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "p.jsonl",
        [
            json.dumps({"fen": "startpos", "moves": ["e2e4", "e7e5"]}),
            "",
            json.dumps({"fen": FEN, "id": "extra keys are ignored"}),
            json.dumps({"fen": FEN, "moves": ["e5f6"]}),
        ],
    )
    boards = list(read_positions(path))
    assert count_positions(path) == len(boards) == 3
    assert [m.uci() for m in boards[0].move_stack] == ["e2e4", "e7e5"]
    assert boards[1].fen(en_passant="fen") == FEN and boards[1].ep_square == chess.F6
    assert boards[2].root().fen(en_passant="fen") == FEN and len(boards[2].move_stack) == 1


def _error(tmp_path: Path, content: bytes) -> str:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps({"fen": "startpos"}).encode() + b"\n" + content + b"\n")
    with pytest.raises(PositionError) as info:
        list(read_positions(path))
    return str(info.value)


def test_each_bad_line_is_one_short_error_with_file_and_line(tmp_path: Path) -> None:
    where = f"{tmp_path / 'bad.jsonl'} line 2: "
    cases = {
        "invalid UTF-8": (b'{"fen": "caf\xe9"}', "not UTF-8 text"),
        "not JSON": (b'{"fen": ', "not JSON"),
        "deep nesting": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        "not an object": (b"[1, 2]", "expected a JSON object"),
        "no fen": (b'{"moves": []}', "expected a JSON object"),
        "fen not a string": (b'{"fen": 3}', "the FEN must be a string"),
        "moves not a list": (b'{"fen": "startpos", "moves": "e2e4"}', "moves must be a list"),
        "bad FEN": (b'{"fen": "not a fen"}', "invalid FEN"),
        "illegal move": (b'{"fen": "startpos", "moves": ["e2e5"]}', "is illegal"),
        "megabyte FEN": (json.dumps({"fen": "r" * 1_000_000}).encode(), "is not a FEN"),
        "long move": (json.dumps({"fen": "startpos", "moves": ["e2" * 5000]}).encode(), "UCI"),
    }
    for name, (content, expected) in cases.items():
        message = _error(tmp_path, content)
        assert message.startswith(where), name
        assert expected in message, (name, message)
        assert len(message) < 400 + len(where), (name, len(message))
    assert "1,000,000 characters" in _error(tmp_path, cases["megabyte FEN"][0])


def test_empty_missing_and_overlong(tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty.jsonl", ["", "  "])
    assert count_positions(empty) == 0
    with pytest.raises(PositionsFileError, match=f"no positions in {empty}"):
        list(read_positions(empty))
    with pytest.raises(PositionsFileError, match="no such positions file"):
        list(read_positions(tmp_path / "missing.jsonl"))
    long = tmp_path / "long.jsonl"
    long.write_bytes(b'{"fen": "' + b"x" * (2 << 20) + b'"}\n')
    with pytest.raises(PositionError, match="line 1: longer than"):
        list(read_positions(long))
