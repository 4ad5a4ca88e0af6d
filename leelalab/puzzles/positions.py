"""Positions files: JSONL, one ``{"fen": "...", "moves": ["e2e4", ...]}`` object per line.

``moves`` (optional) are UCI moves played from ``fen`` (or ``"startpos"``); the network sees
them as history, as lc0 would for ``position fen FEN moves ...``. Other keys are ignored;
blank lines are skipped.

Every problem is one :class:`~leelalab.errors.PositionError` naming the file and line, with
long values cut short: a line that is not UTF-8, not JSON (or nested too deeply to parse),
not such an object, or a FEN or move that does not parse or is illegal. A file without any
position is an error too. :func:`count_positions` gives the total for a progress bar.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import chess

from leelalab.errors import PositionError

MAX_LINE_BYTES = 1 << 20
"""Longer lines are refused unread: no position record comes near this."""
MAX_FEN_CHARS = 128
"""Longer than any FEN (the longest legal ones have under 100 characters)."""
MAX_MOVE_CHARS = 8
"""Longer than any UCI move (``e7e8q``)."""
SHOWN_CHARS = 60
"""Characters of a bad value quoted in a message."""


class PositionsFileError(PositionError):
    """A positions file is missing, unreadable or holds no position."""


def shorten(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)``, cut to about ``limit`` characters with its full length noted."""
    text = repr(value)
    if len(text) <= limit:
        return text
    length = f"{len(value):,} characters" if isinstance(value, str) else f"{len(text):,} chars"
    return f"{text[:limit]}… ({length})"


def _cut(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _open(path: Path) -> BinaryIO:
    if not path.is_file():
        raise PositionsFileError(f"{path}: no such positions file")
    try:
        return path.open("rb")
    except OSError as error:
        raise PositionsFileError(f"{path}: cannot be read ({error.strerror or error})") from None


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Numbered non-blank lines, as bytes; an over-long line is an error."""
    with _open(path) as handle:
        number = 0
        while data := handle.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(data) > MAX_LINE_BYTES:
                raise PositionError(
                    f"{path} line {number}: longer than {MAX_LINE_BYTES:,} bytes; not a position "
                    "record"
                )
            if data.strip():
                yield number, data


def count_positions(path: str | os.PathLike[str]) -> int:
    """The number of non-blank lines of a positions file (the total for a progress bar)."""
    return sum(1 for _ in _lines(Path(path)))


def _record(path: Path, number: int, data: bytes) -> tuple[str, list[str]]:
    where = f"{path} line {number}"
    expected = 'expected a JSON object {"fen": "...", "moves": ["e2e4", ...]}'
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PositionError(f"{where}: not UTF-8 text (a binary or corrupt file?)") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise PositionError(f"{where}: not JSON ({error.msg}); {expected}") from None
    except RecursionError:
        raise PositionError(f"{where}: JSON nested too deeply; {expected}") from None
    if not isinstance(record, dict) or "fen" not in record:
        raise PositionError(f"{where}: {expected}, not {shorten(text.strip())}")
    fen, moves = record["fen"], record.get("moves", [])
    if not isinstance(fen, str):
        raise PositionError(f"{where}: the FEN must be a string, not {shorten(fen)}")
    if len(fen) > MAX_FEN_CHARS:
        raise PositionError(f"{where}: {shorten(fen)} is not a FEN")
    if not isinstance(moves, list) or not all(isinstance(m, str) for m in moves):
        raise PositionError(f"{where}: moves must be a list of UCI strings, not {shorten(moves)}")
    for move in moves:
        if len(move) > MAX_MOVE_CHARS:
            raise PositionError(f"{where}: {shorten(move)} is not a UCI move")
    return fen, moves


def read_positions(path: str | os.PathLike[str]) -> Iterator[chess.Board]:
    """Stream the boards of a positions file, in file order (see the module docstring).

    Raises:
        PositionError: a bad line (the message names the file and line).
        PositionsFileError: the file is missing, unreadable or holds no position.
    """
    from leelalab.lc0.encoding import board_from_fen_and_moves

    path = Path(path)
    count = 0
    for number, data in _lines(path):
        fen, moves = _record(path, number, data)
        try:
            board = board_from_fen_and_moves(fen, moves)
        except PositionError as error:
            raise PositionError(f"{path} line {number}: {_cut(str(error))}") from None
        count += 1
        yield board
    if count == 0:
        raise PositionsFileError(f"no positions in {path}")
