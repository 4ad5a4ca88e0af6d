"""Throughput of leelalab.lc0.encoding.encode_boards against a naive per-square Python encoder.

Both encode the same positions along the shipped puzzles' lines (puzzle FEN as root, the moves
played so far as history), input format 1 with lc0's history rules. The naive reference
replays every game from its root and fills planes square by square with ``piece_at``; the
script checks that both produce identical planes before printing boards/s and the ratio.

    python scripts/bench_encoding.py [--positions 4096] [--repeats 3]
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable
from pathlib import Path

import chess
import numpy as np

from leelalab.lc0.encoding import HistoryMode, board_from_fen_and_moves, encode_boards

PUZZLES = (
    Path(__file__).resolve().parents[1] / "leelalab" / "data" / "puzzles" / "lichess_sample.csv"
)


def puzzle_boards(count: int) -> list[chess.Board]:
    """Positions along the puzzle lines, with the moves so far as history."""
    boards: list[chess.Board] = []
    with PUZZLES.open(newline="") as handle:
        for row in csv.DictReader(handle):
            moves = row["Moves"].split()
            for k in range(len(moves) + 1):
                boards.append(board_from_fen_and_moves(row["FEN"], moves[:k]))
                if len(boards) == count:
                    return boards
    return boards


def _lc0_key(board: chess.Board, is_root: bool) -> tuple[object, ...]:
    # lc0 0.31: a root FEN's ep square is kept as is; after a move only if a pawn can capture.
    ep = board.ep_square if (is_root or board.has_pseudo_legal_en_passant()) else None
    return (board.board_fen(), board.turn, board.clean_castling_rights(), ep)


def naive_encode(board: chess.Board) -> np.ndarray:
    """Input format 1, lc0 history rules, one square at a time. float32 [112, 8, 8]."""
    planes = np.zeros((112, 8, 8), dtype=np.float32)
    root = board.root()
    positions = [root.copy()]
    replay = root.copy()
    for move in board.move_stack:
        replay.push(move)
        positions.append(replay.copy(stack=False))
    keys = [_lc0_key(p, i == 0) for i, p in enumerate(positions)]
    reps = [0] * len(positions)
    for j, pos in enumerate(positions):
        if pos.halfmove_clock >= 4:
            for k in range(j - 2, -1, -2):
                if keys[k] == keys[j]:
                    reps[j] = reps[k] + 1
                    break
                if positions[k].halfmove_clock < 2:
                    break
    us = board.turn
    root_is_startpos = keys[0] == _lc0_key(chess.Board(), True)
    for slot in range(8):
        idx = len(positions) - 1 - slot
        if idx < 0 and root_is_startpos:
            break
        pos = positions[max(idx, 0)]
        for square in chess.SQUARES:
            piece = pos.piece_at(square)
            if piece is None:
                continue
            rank, file = divmod(square, 8)
            if idx < 0 and root.ep_square is not None and piece.piece_type == chess.PAWN:
                # Synthesised copy of a root with an ep square: un-push the pawn.
                ep_file, pusher = chess.square_file(root.ep_square), not root.turn
                if file == ep_file and piece.color == pusher and rank == (3 if pusher else 4):
                    rank = 1 if pusher else 6
            rank = 7 - rank if us == chess.BLACK else rank
            plane = 13 * slot + piece.piece_type - 1 + (0 if piece.color == us else 6)
            planes[plane, rank, file] = 1
        if reps[max(idx, 0)] >= 1:
            planes[13 * slot + 12] = 1
    them = not us
    rights = (
        board.has_queenside_castling_rights(us),
        board.has_kingside_castling_rights(us),
        board.has_queenside_castling_rights(them),
        board.has_kingside_castling_rights(them),
        us == chess.BLACK,
    )
    for offset, flag in enumerate(rights):
        planes[104 + offset] = float(flag)
    planes[109] = board.halfmove_clock
    planes[111] = 1
    return planes


def best_rate(
    encode: Callable[[list[chess.Board]], object], boards: list[chess.Board], repeats: int
) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        encode(boards)
        best = min(best, time.perf_counter() - start)
    return len(boards) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    boards = puzzle_boards(args.positions)

    fast = encode_boards(boards, 1, "lc0")
    naive = np.stack([naive_encode(b) for b in boards])
    mismatches = int((fast != naive).any(axis=(1, 2, 3)).sum())
    print(f"positions: {len(boards)} along the puzzle lines; naive != vectorised: {mismatches}")

    naive_rate = best_rate(lambda bs: [naive_encode(b) for b in bs], boards, 1)
    print(f"{'encoder':<36}{'boards/s':>10}{'vs naive':>10}")
    print(f"{'naive per-square (format 1, lc0)':<36}{naive_rate:>10.0f}{1.0:>9.1f}x")
    runs: list[tuple[int, HistoryMode]] = [
        (1, "lc0"),
        (1, "none"),
        (1, "repeat"),
        (4, "lc0"),
        (5, "lc0"),
    ]
    for fmt, history in runs:

        def run(bs: list[chess.Board], f: int = fmt, h: HistoryMode = history) -> object:
            return encode_boards(bs, f, h)

        rate = best_rate(run, boards, args.repeats)
        name = f"encode_boards (format {fmt}, {history})"
        print(f"{name:<36}{rate:>10.0f}{rate / naive_rate:>9.1f}x")


if __name__ == "__main__":
    main()
