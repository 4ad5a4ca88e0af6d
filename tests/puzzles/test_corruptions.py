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
    from leelalab.engines import EngineNotFoundError, find_stockfish

    try:
        find_stockfish()
    except EngineNotFoundError:
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


def test_a_stored_corruption_rescores_to_its_recorded_numbers_en_passant_included() -> None:
    """The corrupted board keeps the en-passant square of the opponent's double push even
    when no capture is legal: lc0 sees it (and un-pushes the pawn to fill the history). The
    record used to store ``fen()``, which drops the square, so the stored position scored
    differently from the one the search had scored."""
    from leelalab.models.evaluation import evaluate
    from leelalab.puzzles.reader import Puzzle

    strong = build_network(random_resnet_weights(seed=1, filters=16))
    weak = build_network(random_resnet_weights(seed=2, filters=8))
    # Black plays ...d7-d5 (en-passant square d6, but no white pawn can take en passant);
    # white's first move is exd5.
    puzzle = Puzzle(
        "ep", "r1bqkbnr/pppppppp/2n5/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 2", ("d7d5", "e4d5")
    )
    board = puzzle.board(plies=1)
    assert board.ep_square == chess.D6 and not board.has_legal_en_passant()
    loose = CorruptionThresholds(
        weak_log_odds_change=5.0, strong_q_drop=-1.0, strong_max_prob=1.0, max_jsd=1.0
    )
    corruption = find_corruption(puzzle, strong, weak, loose)
    assert corruption is not None and corruption.fen.split()[3] == "d6"
    stored = chess.Board(corruption.fen)
    clean = evaluate(strong, board.copy(stack=False))[0]
    again = evaluate(strong, stored)[0]
    assert again.policy["e4d5"] == pytest.approx(corruption.strong_prob, rel=1e-5, abs=1e-7)
    assert clean.q - again.q == pytest.approx(corruption.strong_q_drop, abs=1e-5)
    # The FEN without the square is another position for the network.
    dropped = evaluate(strong, chess.Board(stored.fen()))[0]
    assert stored.fen().split()[3] == "-"
    assert abs(dropped.policy["e4d5"] - corruption.strong_prob) > 1e-4


def test_jensen_shannon_is_the_same_in_every_process() -> None:
    # String hashing (and so set order) changes between processes; the float sum must not.
    import subprocess
    import sys

    script = (
        "import random; from leelalab.puzzles.corruptions import jensen_shannon as j; "
        "r = random.Random(0); moves = [f'm{i}' for i in range(300)]; "
        "p = {m: r.random() for m in moves}; q = {m: r.random() for m in moves[50:]}; "
        "s, t = sum(p.values()), sum(q.values()); "
        "print(repr(j({m: v / s for m, v in p.items()}, {m: v / t for m, v in q.items()})))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={**__import__("os").environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in (1, 2, 3, 4)
    }
    assert len(outputs) == 1
