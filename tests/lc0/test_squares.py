"""The model frame: black's mirror and the canonical transforms, checked against the encoder."""

from __future__ import annotations

import chess
import numpy as np
import pytest
import torch

from leelalab.lc0 import encoding, policy_map
from leelalab.lc0.squares import (
    model_square,
    model_squares,
    permutation,
    real_square,
    to_absolute,
    to_model,
)
from leelalab.lc0.weights import InputFormat
from positions import puzzle_line_boards, random_playout_boards

FORMATS = [fmt for fmt in InputFormat if fmt != 0]
PAWNLESS = [
    "8/8/8/8/8/8/7K/k7 w - - 0 1",
    "7k/8/8/8/8/8/1Q6/K7 b - - 0 1",
    "8/5k2/8/8/8/2K5/8/r7 b - - 0 44",
    "8/8/2k5/8/8/8/6K1/3R4 w - - 0 70",
]


def _boards() -> list[chess.Board]:
    return (
        puzzle_line_boards(150, seed=4)
        + random_playout_boards(50, seed=2)
        + [chess.Board(fen) for fen in PAWNLESS]
    )


def test_black_is_mirrored_not_rotated() -> None:
    board = chess.Board()
    board.push_uci("e2e4")
    assert model_square(board, chess.E7) == chess.E2
    assert model_square(board, chess.A8) == chess.A1
    assert model_square(board, chess.H1) == chess.H8
    assert model_square(chess.Board(), chess.E2) == chess.E2


@pytest.mark.parametrize("input_format", FORMATS)
def test_inverse_and_permutation(input_format: int) -> None:
    for board in _boards()[::5]:
        perm = permutation(board, input_format)
        assert sorted(perm.tolist()) == list(range(64))
        for square in range(64):
            assert (
                real_square(board, model_square(board, square, input_format), input_format)
                == square
            )
            assert perm[model_square(board, square, input_format)] == square


@pytest.mark.parametrize("input_format", FORMATS)
def test_agrees_with_the_encoder(input_format: int) -> None:
    """Slot-0 piece planes at model_square(s) hold exactly the piece on real square s."""
    transforms_seen = set()
    for board in _boards():
        planes = encoding.encode_board(board, input_format, "none")[:12].reshape(12, 64)
        transforms_seen.add(
            encoding.choose_transform(board) if InputFormat(input_format).is_canonical else 0
        )
        for square in range(64):
            piece = board.piece_at(square)
            column = planes[:, model_square(board, square, input_format)]
            if piece is None:
                assert not column.any()
            else:
                ours = piece.color == board.turn
                expected = (0 if ours else 6) + piece.piece_type - 1
                assert column.nonzero()[0].tolist() == [expected]
    if InputFormat(input_format).is_canonical:
        assert len(transforms_seen) >= 3


@pytest.mark.parametrize("input_format", [1, 3])
def test_agrees_with_the_policy_index(input_format: int) -> None:
    for board in _boards()[::7]:
        transform = encoding.choose_transform(board) if input_format >= 3 else 0
        for move in list(board.legal_moves)[:20]:
            if move.promotion not in (None, chess.KNIGHT) or board.is_castling(move):
                continue
            name = chess.square_name(model_square(board, move.from_square, input_format))
            name += chess.square_name(model_square(board, move.to_square, input_format))
            assert policy_map.move_to_index(board, move, transform) == policy_map.MOVE_INDEX[name]


def test_reordering_arrays_and_tensors() -> None:
    board = chess.Board("8/5k2/8/8/8/2K5/8/r7 b - - 0 44")
    values = np.arange(64 * 2).reshape(2, 64)
    absolute = to_absolute(values, board, 3)
    for square in range(64):
        assert absolute[0, square] == values[0, model_square(board, square, 3)]
    np.testing.assert_array_equal(to_model(absolute, board, 3), values)
    tensor = torch.arange(64.0).reshape(64, 1)
    assert torch.equal(to_model(to_absolute(tensor, board, 3, axis=0), board, 3, axis=0), tensor)
    with pytest.raises(ValueError, match="64 squares"):
        to_absolute(np.zeros(10), board)


def test_model_squares_for_a_batch() -> None:
    white, black = chess.Board(), chess.Board()
    black.push_uci("e2e4")
    np.testing.assert_array_equal(model_squares([white, black], [chess.E2, chess.E7]), [12, 12])
    with pytest.raises(ValueError):
        model_squares([white], [1, 2])
