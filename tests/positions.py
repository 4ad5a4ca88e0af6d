"""Positions for tests: along the shipped puzzles' lines, random games, edge cases."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import chess

PUZZLES_CSV = (
    Path(__file__).resolve().parents[1] / "leelalab" / "data" / "puzzles" / "lichess_sample.csv"
)


def puzzle_line_boards(
    count: int, *, seed: int = 0, max_puzzles: int | None = None
) -> list[chess.Board]:
    """Boards along the shipped puzzles' lines, with the moves played as history.

    Each board's root is the puzzle FEN and its move stack the line so far, so the
    history mixes real positions with copies lc0 synthesises from the FEN.
    """
    boards: list[chess.Board] = []
    with PUZZLES_CSV.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    random.Random(seed).shuffle(rows)
    for row in rows[:max_puzzles]:
        board = chess.Board(row["FEN"])
        for uci in row["Moves"].split():
            board.push_uci(uci)
            boards.append(board.copy())
            if len(boards) >= count:
                return boards
    return boards


def random_playout_boards(count: int, *, seed: int = 0, max_plies: int = 80) -> list[chess.Board]:
    """Boards from seeded random games from the start position (history included)."""
    rng = random.Random(seed)
    boards: list[chess.Board] = []
    while len(boards) < count:
        board = chess.Board()
        for _ in range(rng.randrange(1, max_plies)):
            moves = list(board.legal_moves)
            if not moves:
                break
            board.push(rng.choice(moves))
        boards.append(board)
    return boards


EDGE_CASE_LINES: list[tuple[str, list[str]]] = [
    # castling, each side, each colour
    (
        "r3k2r/pppq1ppp/2npbn2/2b1p3/2B1P3/2NPBN2/PPPQ1PPP/R3K2R w KQkq - 4 9",
        ["e1g1", "e8c8", "d2e2"],
    ),
    (
        "r3k2r/pppq1ppp/2npbn2/2b1p3/2B1P3/2NPBN2/PPPQ1PPP/R3K2R w KQkq - 4 9",
        ["e1c1", "e8g8", "h2h3"],
    ),
    ("r3k2r/pppq1ppp/2npbn2/2b1p3/2B1P3/2NPBN2/PPPQ1PPP/R3K2R b KQkq - 4 9", ["h8g8", "a1b1"]),
    # en passant available in the root FEN, and arising after a move
    ("rnbqkbnr/ppp1p1pp/8/3pPp2/8/8/PPPP1PPP/RNBQKBNR w KQkq f6 0 3", []),
    ("rnbqkbnr/ppp1p1pp/8/3pPp2/8/8/PPPP1PPP/RNBQKBNR w KQkq f6 0 3", ["e5f6"]),
    ("rnbqkbnr/pppp1ppp/8/8/4p3/8/PPPPPPPP/RNBQKBNR w KQkq - 0 3", ["d2d4", "e4d3"]),
    # promotions and under-promotions, both colours
    ("8/1P4k1/8/8/8/8/5Kp1/8 w - - 0 60", ["b7b8n", "g2g1r"]),
    ("2r5/1P4k1/8/8/8/8/5Kp1/7R b - - 0 60", ["g2h1q", "b7c8b"]),
    ("2r5/1P4k1/8/8/8/8/5Kp1/7R w - - 0 60", ["b7c8n"]),
    # black to move, high rule-50 counters
    ("8/8/3k4/8/8/3K4/8/4R3 b - - 97 120", []),
    ("8/8/3k4/8/8/3K4/8/4R3 w - - 45 120", ["e1e2", "d6c5", "e2e1"]),
    # repetitions
    (chess.STARTING_FEN, ["g1f3", "g8f6", "f3g1", "f6g8", "g1f3", "g8f6", "f3g1", "f6g8"]),
    (
        "r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3",
        ["f3g1", "c6b8", "g1f3", "b8c6", "f3g1"],
    ),
]


def edge_case_boards() -> list[chess.Board]:
    """Every prefix of every edge-case line."""
    boards = []
    for fen, moves in EDGE_CASE_LINES:
        board = chess.Board(fen)
        boards.append(board.copy())
        for uci in moves:
            board.push_uci(uci)
            boards.append(board.copy())
    return boards


def corrupted_puzzles(count: int, *, min_moves: int = 3, seed: int = 0) -> list:
    """Shipped puzzles as ``DatasetPuzzle``s with a seeded random valid one-piece edit."""
    from leelalab.puzzles.dataset import random_edit_pairs
    from leelalab.puzzles.reader import iter_puzzles

    return random_edit_pairs(iter_puzzles(PUZZLES_CSV), count, min_moves=min_moves, seed=seed)
