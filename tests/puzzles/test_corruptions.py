"""Corruption candidates and selection."""

from __future__ import annotations

import chess
import pytest

from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.models import build_network
from leelalab.puzzles.corruptions import (
    CorruptionThresholds,
    candidate_edits,
    find_corruption,
    jensen_shannon,
)
from leelalab.puzzles.reader import iter_puzzles, shipped_puzzles_path


def test_candidates_are_valid_one_piece_edits() -> None:
    puzzle = next(iter_puzzles(shipped_puzzles_path()))
    board = puzzle.board(plies=1)
    first = chess.Move.from_uci(puzzle.moves[1])
    candidates = candidate_edits(board, first)
    assert {kind for _, _, kind in candidates} == {"add_pawn", "remove_pawn", "move_piece"}
    for edited, squares, kind in candidates:
        assert edited.is_valid() and first in edited.legal_moves
        assert edited.turn == board.turn
        changed = [s for s in chess.SQUARES if edited.piece_at(s) != board.piece_at(s)]
        assert sorted(chess.square_name(s) for s in changed) == sorted(squares)
        assert len(changed) == (2 if kind == "move_piece" else 1)
        assert not any(board.piece_type_at(s) == chess.KING for s in changed)


def test_jensen_shannon() -> None:
    p = {"a": 0.5, "b": 0.5}
    assert jensen_shannon(p, p) == 0
    assert jensen_shannon({"a": 1.0}, {"b": 1.0}) == pytest.approx(0.6931471805599453)
    assert jensen_shannon(p, {"a": 0.9, "b": 0.1}) == pytest.approx(
        jensen_shannon({"a": 0.9, "b": 0.1}, p)
    )


def test_selected_corruption_satisfies_every_rule() -> None:
    strong = build_network(random_resnet_weights(seed=1, filters=16))
    weak = build_network(random_resnet_weights(seed=2, filters=8))
    # Loose thresholds so that random networks yield corruptions; the rules still apply.
    loose = CorruptionThresholds(
        weak_log_odds_change=5.0, strong_q_drop=-1.0, strong_max_prob=1.0, max_jsd=1.0
    )
    found = 0
    for puzzle in iter_puzzles(shipped_puzzles_path(), limit=3):
        corruption = find_corruption(puzzle, strong, weak, loose)
        if corruption is None:
            continue
        found += 1
        board = chess.Board(corruption.fen)
        assert board.is_valid() and chess.Move.from_uci(puzzle.moves[1]) in board.legal_moves
        assert corruption.weak_log_odds_change < 5.0 and corruption.weak_jsd <= 1.0
    assert found > 0
    strict = CorruptionThresholds(weak_log_odds_change=0.0)  # nothing can change by < 0
    puzzle = next(iter_puzzles(shipped_puzzles_path()))
    assert find_corruption(puzzle, strong, weak, strict) is None


def test_stockfish_check() -> None:
    import shutil
    from pathlib import Path

    if not (shutil.which("stockfish") or Path("/usr/games/stockfish").exists()):
        pytest.skip("Stockfish is not installed (Debian: apt-get install stockfish)")
    from leelalab.puzzles.corruptions import Corruption, stockfish_confirms

    puzzle = next(iter_puzzles(shipped_puzzles_path()))  # 00008: Re7 wins with the Qh6 attack
    clean = puzzle.board(plies=1).copy(stack=False)
    unchanged = Corruption(clean.fen(), [], "none", 0.0, 0.0, 0.0, 0.0)
    without_queen = clean.copy()
    without_queen.remove_piece_at(chess.H6)
    removed = Corruption(without_queen.fen(), ["h6"], "remove", 0.0, 0.0, 0.0, 0.0)
    assert not stockfish_confirms(puzzle, unchanged, depth=10)
    assert stockfish_confirms(puzzle, removed, depth=10)
