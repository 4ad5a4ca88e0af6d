"""The puzzle-scoring rule on hand-made lines."""

from __future__ import annotations

import chess
import pytest

from leelalab.analyses.scoring import (
    gives_mate,
    score_puzzle,
    score_record,
    solver_moves,
    solver_positions,
)
from leelalab.puzzles.reader import Puzzle

# Scholar's mate: the FEN is before Black's blunder 3…Nf6??, then 4.Qxf7#.
SCHOLAR = "r1bqkbnr/pppp1ppp/2n5/4p2Q/2B1P3/8/PPPP1PPP/RNB1K1NR b KQkq - 3 3"
# 3…Nf6?? 4.Qxf7# — a one-move line; the alternative Bxf7+ is not mate.
ONE_MOVE = Puzzle("one", SCHOLAR, ("g8f6", "h5f7"))


def test_solver_positions_carry_the_line_as_history() -> None:
    boards = solver_positions(ONE_MOVE)
    assert len(boards) == 1 and boards[0].move_stack == [chess.Move.from_uci("g8f6")]
    assert boards[0].root().fen() == chess.Board(SCHOLAR).fen()
    assert solver_moves(ONE_MOVE) == ["h5f7"]


def test_the_line_move_solves_and_a_non_mating_alternative_fails() -> None:
    assert score_puzzle(ONE_MOVE, ["h5f7"]).solved
    score = score_puzzle(ONE_MOVE, ["c4f7"])  # Bxf7+ is check, not mate
    assert not score.solved and score.correct == (False,)


def test_a_different_mating_move_counts() -> None:
    # A back rank with two mates, Ra8# and Qb8#; the opponent's move first is c7-c6.
    start = "6k1/2p2ppp/8/8/8/8/5PPP/RQ4K1 b - - 0 1"
    board = chess.Board(start)
    board.push_uci("c7c6")
    mates = sorted(m.uci() for m in board.legal_moves if gives_mate(board, m.uci()))
    assert mates == ["a1a8", "b1b8"]
    puzzle = Puzzle("mate", start, ("c7c6", "a1a8"))
    assert score_puzzle(puzzle, ["a1a8"]).solved
    assert score_puzzle(puzzle, ["b1b8"]).solved  # the other mate counts
    assert not score_puzzle(puzzle, ["b1b7"]).solved


def test_a_wrong_later_move_fails_the_puzzle_but_not_the_first_move() -> None:
    # 1…h6 2.Qb3 (line) Kh7 3.Qxf7 — made-up two-move line; the 2nd prediction is wrong.
    start = "6k1/5ppp/8/8/8/8/5PPP/1Q4K1 b - - 0 1"
    board = chess.Board(start)
    line = ["h7h6", "b1b3", "g8h7", "b3f7"]
    for uci in line:
        assert chess.Move.from_uci(uci) in board.legal_moves
        board.push_uci(uci)
    puzzle = Puzzle("two", start, tuple(line))
    score = score_puzzle(puzzle, ["b1b3", "b3b7"])
    assert score.correct == (True, False)
    assert score.first_correct and score.later_correct is False and not score.solved
    right = score_puzzle(puzzle, ["b1b3", "b3f7"])
    assert right.solved and right.later_correct is True
    wrong_first = score_puzzle(puzzle, ["b1b2", "b3f7"])
    assert wrong_first.correct == (False, True) and not wrong_first.solved


def test_a_mate_before_the_end_of_the_line_solves_it() -> None:
    # The line's first move is slow but a mate exists: Lichess (and DeepMind's rule) accept
    # a mate whenever it is played.
    start = "6k1/2p2ppp/8/8/8/8/5PPP/RQ4K1 b - - 0 1"
    line = ("c7c6", "g1h1", "c6c5", "a1a7")
    puzzle = Puzzle("early", start, line)
    score = score_puzzle(puzzle, ["a1a8", "h1g1"])
    assert score.correct[0] and score.solved


def test_predictions_must_match_the_solver_moves() -> None:
    with pytest.raises(ValueError, match="solver moves"):
        score_puzzle(ONE_MOVE, ["h5f7", "e1e2"])
    assert not score_puzzle(ONE_MOVE, [None]).solved


def test_score_record_reads_the_filter_top_moves_at_solver_plies() -> None:
    record = {
        "id": "r",
        "fen": "6k1/5ppp/8/8/8/8/5PPP/1Q4K1 b - - 0 1",
        "moves": ["h7h6", "b1b3", "g8h7", "b3f7"],
        "strong_top_moves": ["b1b3", "h7h8", "b3f7"],  # plies 0, 1, 2: solver at 0 and 2
    }
    assert score_record(record).solved
    record["strong_top_moves"] = ["b1b3", "g8h7", "b3b7"]
    assert score_record(record).correct == (True, False)
