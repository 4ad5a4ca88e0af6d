"""Lichess puzzles (``lichess_db_puzzle.csv`` or ``.csv.zst``), streamed row by row.

Columns: ``PuzzleId,FEN,Moves,Rating,RatingDeviation,Popularity,NbPlays,Themes,GameUrl,
OpeningTags``. ``FEN`` is the position *before* the opponent's move; ``Moves[0]`` is that
move and the solver's moves are at odd indices. Numeric columns may be empty.

Malformed rows (bad FEN, unparsable or illegal move, missing column, empty solution) are
skipped and counted by reason in a :class:`SkipReport`; the rest is processed.
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

import chess

from leelalab.errors import LeelaLabError

REQUIRED_COLUMNS = ("PuzzleId", "FEN", "Moves")


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


@dataclass
class SkipReport:
    """Rows read, kept and skipped (by reason) while streaming a puzzle file."""

    rows: int = 0
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        reasons = ", ".join(f"{count} {reason}" for reason, count in self.skipped.most_common())
        return f"{self.rows} rows read, {self.kept} kept, {sum(self.skipped.values())} skipped" + (
            f" ({reasons})" if reasons else ""
        )


class PuzzleFileError(LeelaLabError):
    """The puzzle file is missing or is not a Lichess puzzle CSV."""


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".zst":
        import zstandard

        raw = path.open("rb")
        reader = zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
        return io.TextIOWrapper(reader, encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


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


def iter_puzzles(
    path: str | os.PathLike[str], *, limit: int | None = None, report: SkipReport | None = None
) -> Iterator[Puzzle]:
    """Stream valid puzzles from a Lichess CSV (plain or ``.zst``), never loading it whole.

    Args:
        path: the CSV file.
        limit: stop after this many *valid* puzzles.
        report: filled in with row counts and skip reasons as rows are read.

    Raises:
        PuzzleFileError: the file is missing or lacks the required columns.
    """
    path = Path(path)
    if not path.is_file():
        raise PuzzleFileError(f"{path}: no such puzzle file")
    report = report if report is not None else SkipReport()
    with _open_text(path) as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise PuzzleFileError(f"{path}: not a Lichess puzzle CSV (missing columns {missing})")
        for row in reader:
            if limit is not None and report.kept >= limit:
                return
            report.rows += 1
            try:
                puzzle = _parse_row(row)
            except ValueError as reason:
                report.skipped[str(reason)] += 1
                continue
            report.kept += 1
            yield puzzle


def sample_puzzles(
    path: str | os.PathLike[str], count: int, *, seed: int = 0, report: SkipReport | None = None
) -> list[Puzzle]:
    """A seeded uniform random sample of ``count`` valid puzzles, in file order.

    Reservoir sampling over one streamed pass: memory holds ``count`` puzzles, whatever the
    file size. (The paper's "first 1M rows" is a prefix, not a random sample.)
    """
    if count < 1:
        raise ValueError("the sample size must be at least 1")
    rng = random.Random(seed)
    reservoir: list[tuple[int, Puzzle]] = []
    for index, puzzle in enumerate(iter_puzzles(path, report=report)):
        if len(reservoir) < count:
            reservoir.append((index, puzzle))
        else:
            slot = rng.randrange(index + 1)
            if slot < count:
                reservoir[slot] = (index, puzzle)
    return [puzzle for _, puzzle in sorted(reservoir, key=lambda item: item[0])]


def shipped_puzzles_path() -> Path:
    """The Lichess sample shipped in the repository's ``puzzles/`` folder.

    Looked up in ``$LEELALAB_PUZZLES``, then ``./puzzles/``, then next to the package source
    (an editable or in-repository install).
    """
    candidates = []
    if os.environ.get("LEELALAB_PUZZLES"):
        candidates.append(Path(os.environ["LEELALAB_PUZZLES"]))
    candidates.append(Path("puzzles") / "lichess_sample.csv")
    candidates.append(Path(__file__).resolve().parents[1] / "puzzles" / "lichess_sample.csv")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise PuzzleFileError(
        "the shipped puzzle sample was not found; pass --puzzles PATH or set LEELALAB_PUZZLES"
    )
