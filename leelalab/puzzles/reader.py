"""Lichess puzzles (``lichess_db_puzzle.csv`` or ``.csv.zst``), streamed row by row.

Columns: ``PuzzleId,FEN,Moves,Rating,RatingDeviation,Popularity,NbPlays,Themes,GameUrl,
OpeningTags``. ``FEN`` is the position *before* the opponent's move; ``Moves[0]`` is that
move and the solver's moves are at odd indices. Numeric columns may be empty.

Malformed rows (bad FEN, unparsable or illegal move, missing column, empty solution, a
stray quote, a wrong number of fields) are skipped and counted by reason, with their line
numbers, in a :class:`SkipReport`; the rest is processed. A file that cannot be read as a
whole — missing, not UTF-8 text, not zstd, a truncated ``.zst``, no Lichess header — is a
:class:`PuzzleFileError` naming the file (and line), never a partial success.
"""

from __future__ import annotations

import csv
import io
import os
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chess

from leelalab.errors import LeelaLabError

REQUIRED_COLUMNS = ("PuzzleId", "FEN", "Moves")
LICHESS_COLUMNS = (
    "PuzzleId",
    "FEN",
    "Moves",
    "Rating",
    "RatingDeviation",
    "Popularity",
    "NbPlays",
    "Themes",
    "GameUrl",
    "OpeningTags",
)


@dataclass(frozen=True)
class Puzzle:
    """One Lichess puzzle.

    Attributes:
        id: the Lichess puzzle id.
        fen: the position before the opponent's first move.
        moves: the whole line in UCI, starting with the opponent's move.
        rating: puzzle rating, if given.
        themes: Lichess theme tags.
    """

    id: str
    fen: str
    moves: tuple[str, ...]
    rating: int | None = None
    themes: tuple[str, ...] = ()

    def board(self, plies: int = 1) -> chess.Board:
        """The board after the first ``plies`` moves of the line (1 = the puzzle start)."""
        board = chess.Board(self.fen)
        for uci in self.moves[:plies]:
            board.push_uci(uci)
        return board

    @property
    def solution(self) -> tuple[str, ...]:
        """The line after the opponent's move (the solver's moves and the replies)."""
        return self.moves[1:]


EXAMPLE_LINES = 5
"""Line numbers kept per skip reason, for the report."""

MAX_LINE_BYTES = 1 << 16
"""A Lichess row is a few hundred bytes; a longer line is a malformed row, not read whole."""


@dataclass
class SkipReport:
    """Rows read, kept and skipped (by reason, with the first line numbers) while streaming a
    puzzle file, and how far into the file the reading is (for progress bars)."""

    rows: int = 0
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    lines: dict[str, list[int]] = field(default_factory=dict)
    """The first :data:`EXAMPLE_LINES` line numbers (1 = the header) of each skip reason."""
    bytes_read: int = 0
    """Bytes of the file read so far (compressed bytes for ``.zst``)."""
    size: int = 0
    """The file's size in bytes (compressed for ``.zst``)."""

    def to_json(self) -> dict[str, Any]:
        """The counts a run record keeps (``rows`` of a filter run's ``run.json``)."""
        return {
            "read": self.rows,
            "kept": self.kept,
            "skipped": dict(self.skipped),
            "skipped_lines": self.lines,
        }

    @classmethod
    def from_json(cls, rows: dict[str, Any]) -> SkipReport:
        return cls(
            rows=rows.get("read", 0),
            kept=rows.get("kept", 0),
            skipped=Counter(rows.get("skipped", {})),
            lines=rows.get("skipped_lines", {}),
        )

    def skip(self, reason: str, line: int) -> None:
        self.skipped[reason] += 1
        examples = self.lines.setdefault(reason, [])
        if len(examples) < EXAMPLE_LINES:
            examples.append(line)

    def __str__(self) -> str:
        def reason_text(reason: str, count: int) -> str:
            numbers = self.lines.get(reason, [])
            if not numbers:
                return f"{count} {reason}"
            listed = ", ".join(map(str, numbers)) + (", …" if count > len(numbers) else "")
            return f"{count} {reason} (line{'s' if count > 1 else ''} {listed})"

        reasons = "; ".join(reason_text(r, c) for r, c in self.skipped.most_common())
        return f"{self.rows} rows read, {self.kept} kept, {sum(self.skipped.values())} skipped" + (
            f": {reasons}" if reasons else ""
        )


class PuzzleFileError(LeelaLabError):
    """The puzzle file is missing, unreadable, truncated or not a Lichess puzzle CSV."""


class _ZstdReader(io.RawIOBase):
    """Decompressed bytes of a ``.zst`` file that fail on a truncated or corrupt stream.

    zstandard's stream reader reports a frame cut short as a normal end of file; here the
    end of the compressed file inside a frame is an error, so a truncated download is never
    read as a shorter file. Concatenated frames are read one after another.
    """

    def __init__(self, path: Path) -> None:
        import zstandard

        self._path = path
        self._file = path.open("rb")
        self._context = zstandard.ZstdDecompressor()
        self._error = zstandard.ZstdError
        self._frame = self._context.decompressobj()
        self._in_frame = False
        self._pending = b""
        self._offset = 0
        self._finished = False
        self.compressed_position = 0
        """Compressed bytes read from the file so far."""

    def readable(self) -> bool:
        return True

    def _feed(self, block: bytes) -> None:
        out = []
        while block:
            try:
                out.append(self._frame.decompress(block))
            except self._error as error:
                raise PuzzleFileError(
                    f"{self._path}: not a valid zstd file ({error}); near compressed byte "
                    f"{self.compressed_position}"
                ) from None
            if self._frame.eof:
                block = self._frame.unused_data
                self._frame = self._context.decompressobj()
                self._in_frame = False
            else:
                self._in_frame = True
                block = b""
        self._pending = b"".join(out)
        self._offset = 0

    def readinto(self, buffer: Any) -> int:
        while self._offset >= len(self._pending) and not self._finished:
            block = self._file.read(1 << 16)
            self.compressed_position += len(block)
            if not block:
                if self._in_frame:
                    raise PuzzleFileError(
                        f"{self._path}: the zstd stream is truncated (the file ends inside a "
                        "compressed frame); download it again"
                    )
                self._finished = True
                break
            self._feed(block)
        view = memoryview(buffer).cast("B")
        count = min(len(view), len(self._pending) - self._offset)
        view[:count] = self._pending[self._offset : self._offset + count]
        self._offset += count
        return count

    def close(self) -> None:
        self._file.close()
        super().close()


class _Lines:
    """Numbered text lines of a plain or ``.zst`` file, read as bytes and decoded one by one
    (invalid UTF-8 is an error naming the line); tracks the byte position for progress."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.number = 0
        self.too_long = False
        self._bytes = 0
        if path.suffix == ".zst":
            self._zstd: _ZstdReader | None = _ZstdReader(path)
            self._handle: io.BufferedReader = io.BufferedReader(self._zstd, 1 << 20)
        else:
            self._zstd = None
            self._handle = path.open("rb")

    @property
    def position(self) -> int:
        """Bytes of the file read so far (compressed bytes for ``.zst``)."""
        return self._zstd.compressed_position if self._zstd else self._bytes

    def next_line(self) -> str | None:
        """The next line without its line ending, ``None`` at the end of the file. A line
        longer than :data:`MAX_LINE_BYTES` is returned as ``""`` after :attr:`too_long` is
        set (the rest of it is skipped)."""
        self.too_long = False
        data = self._handle.readline(MAX_LINE_BYTES + 1)
        if not data:
            return None
        self.number += 1
        self._bytes += len(data)
        if len(data) > MAX_LINE_BYTES and not data.endswith(b"\n"):
            self.too_long = True
            while rest := self._handle.readline(MAX_LINE_BYTES):
                self._bytes += len(rest)
                if rest.endswith(b"\n"):
                    break
            return ""
        try:
            return data.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise PuzzleFileError(
                f"{self.path}: line {self.number} is not UTF-8 text (a binary or corrupt file?)"
            ) from None

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_lines(path: Path) -> _Lines:
    if not path.is_file():
        raise PuzzleFileError(f"{path}: no such puzzle file")
    try:
        return _Lines(path)
    except OSError as error:
        raise PuzzleFileError(f"{path}: cannot be read ({error.strerror or error})") from None


def _header(lines: _Lines) -> list[str]:
    """The column names of the header line; checks the required columns."""
    path = lines.path
    line = lines.next_line()
    while line is not None and not line.strip() and not lines.too_long:
        line = lines.next_line()
    if line is None:
        raise PuzzleFileError(f"{path}: empty file, not a Lichess puzzle CSV")
    line = line.removeprefix("\ufeff")  # a UTF-8 byte-order mark (spreadsheet exports)
    try:
        columns = next(csv.reader([line], strict=True))
    except csv.Error:
        columns = []
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if lines.too_long or missing:
        raise PuzzleFileError(
            f"{path}: not a Lichess puzzle CSV (its header, line {lines.number}, lacks the "
            f"columns {', '.join(missing or REQUIRED_COLUMNS)})"
        )
    return columns


def check_puzzle_file(path: str | os.PathLike[str]) -> None:
    """Raise :class:`PuzzleFileError` unless ``path`` opens as a Lichess puzzle CSV (its
    header is read; rows are checked as they are streamed)."""
    with _open_lines(Path(path)) as lines:
        _header(lines)


def _parse_row(row: dict[str, str | None]) -> Puzzle:
    """Validate one row; raises ``ValueError(reason)`` naming a skip reason."""
    if any(not row.get(column) for column in REQUIRED_COLUMNS):
        raise ValueError("missing column")
    moves = tuple(str(row["Moves"]).split())
    if len(moves) < 2:
        raise ValueError("empty solution")
    try:
        board = chess.Board(str(row["FEN"]))
    except ValueError:
        raise ValueError("bad FEN") from None
    if not board.is_valid():
        raise ValueError("bad FEN")
    for uci in moves:
        try:
            move = chess.Move.from_uci(uci)
        except ValueError:
            raise ValueError("unparsable move") from None
        if move not in board.legal_moves:
            raise ValueError("illegal move")
        board.push(move)
    rating_text = (row.get("Rating") or "").strip()
    try:
        rating = int(rating_text) if rating_text else None
    except ValueError:
        raise ValueError("bad rating") from None
    return Puzzle(
        id=str(row["PuzzleId"]),
        fen=str(row["FEN"]),
        moves=moves,
        rating=rating,
        themes=tuple((row.get("Themes") or "").split()),
    )


def _fields(line: str, width: int) -> list[str]:
    """One physical line's fields; ``ValueError(reason)`` for a malformed row.

    Lichess rows never hold a newline inside a field, so each line is parsed on its own: an
    unbalanced quote costs its own row, never the rows after it.
    """
    if '"' in line:
        try:
            fields = next(csv.reader([line], strict=True))
        except csv.Error:
            raise ValueError("malformed row (unbalanced quotes)") from None
    else:
        fields = line.split(",")
    if len(fields) != width:
        raise ValueError("malformed row (wrong number of fields)")
    return fields


def iter_puzzles(
    path: str | os.PathLike[str], *, limit: int | None = None, report: SkipReport | None = None
) -> Iterator[Puzzle]:
    """Stream valid puzzles from a Lichess CSV (plain or ``.zst``), never loading it whole.

    A malformed row (bad FEN, illegal move, stray quote, wrong number of fields, …) costs
    only that row: it is skipped and counted, with its line number, in ``report``.

    Args:
        path: the CSV file.
        limit: stop after this many *valid* puzzles.
        report: filled in with row counts, skip reasons and the byte position as rows are
            read.

    Raises:
        PuzzleFileError: the file is missing, unreadable, not UTF-8 text, not zstd (for
            ``.zst``), truncated (``.zst``), or lacks the required columns.
    """
    path = Path(path)
    report = report if report is not None else SkipReport()
    with _open_lines(path) as lines:
        report.size = path.stat().st_size
        columns = _header(lines)
        index = {name: columns.index(name) for name in columns}
        while True:
            if limit is not None and report.kept >= limit:
                return
            line = lines.next_line()
            report.bytes_read = lines.position
            if line is None:
                return
            if not line.strip() and not lines.too_long:
                continue  # blank lines are not rows
            report.rows += 1
            try:
                if lines.too_long:
                    raise ValueError("malformed row (line too long)")
                fields = _fields(line, len(columns))
                puzzle = _parse_row({name: fields[i] for name, i in index.items()})
            except ValueError as reason:
                report.skip(str(reason), lines.number)
                continue
            report.kept += 1
            yield puzzle


def sample_puzzles(
    path: str | os.PathLike[str],
    count: int,
    *,
    seed: int = 0,
    report: SkipReport | None = None,
    progress: bool = False,
) -> list[Puzzle]:
    """A seeded uniform random sample of ``count`` valid puzzles, in file order.

    Reservoir sampling over one streamed pass: memory holds ``count`` puzzles, whatever the
    file size. (The paper's "first 1M rows" is a prefix, not a random sample.) ``progress``
    shows a bar over the file's bytes.
    """
    if count < 1:
        raise ValueError("the sample size must be at least 1")
    from tqdm.auto import tqdm

    rng = random.Random(seed)
    report = report if report is not None else SkipReport()
    reservoir: list[tuple[int, Puzzle]] = []
    bar = tqdm(
        total=Path(path).stat().st_size if Path(path).is_file() else None,
        desc="sampling puzzles",
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not progress,
    )
    for index, puzzle in enumerate(iter_puzzles(path, report=report)):
        if index % 256 == 0:
            bar.update(report.bytes_read - bar.n)
        if len(reservoir) < count:
            reservoir.append((index, puzzle))
        else:
            slot = rng.randrange(index + 1)
            if slot < count:
                reservoir[slot] = (index, puzzle)
    bar.update(report.bytes_read - bar.n)
    bar.close()
    return [puzzle for _, puzzle in sorted(reservoir, key=lambda item: item[0])]


SHIPPED_PUZZLES = Path(__file__).resolve().parents[1] / "data" / "puzzles" / "lichess_sample.csv"
"""The Lichess sample, package data of leelalab (its card is the ``README.md`` beside it)."""


def shipped_puzzles_path() -> Path:
    """The default puzzle input: ``$LEELALAB_PUZZLES`` when set, else the Lichess sample
    shipped inside the package (:data:`SHIPPED_PUZZLES`), wherever the command runs from."""
    candidate = Path(os.environ.get("LEELALAB_PUZZLES") or SHIPPED_PUZZLES)
    if candidate.is_file():
        return candidate
    raise PuzzleFileError(
        f"{candidate}: the shipped puzzle sample was not found; pass --input PATH"
        + (" or fix LEELALAB_PUZZLES" if os.environ.get("LEELALAB_PUZZLES") else "")
    )
