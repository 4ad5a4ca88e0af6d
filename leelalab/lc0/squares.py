"""Real chess squares ↔ model squares: the one place that knows the network's frame.

Networks see the board from the side to move. For black to move the board is mirrored
vertically (rank r → 7 − r, files unchanged: a mirror, not a rotation), and the
canonicalising input formats (3, 4, 5, 132, 133) then apply a per-position symmetry
(flip files, mirror ranks, transpose; see :func:`leelalab.lc0.encoding.choose_transform`).
Hook tensors with a square axis are in that *model* frame. Use these helpers instead of
flipping by hand:

>>> board = chess.Board(); board.push_uci("e2e4")      # black to move
>>> chess.square_name(model_square(board, chess.E7))
'e2'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import chess
import numpy as np
import torch

from leelalab.lc0 import encoding, policy_map
from leelalab.lc0.weights.enums import InputFormat

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)


def _transform(board: chess.Board, input_format: int) -> int:
    return encoding.choose_transform(board) if InputFormat(input_format).is_canonical else 0


def permutation(board: chess.Board, input_format: int = 1) -> np.ndarray:
    """``perm[m]`` is the real square shown at model square ``m`` (int64 ``[64]``)."""
    transform = _transform(board, input_format)
    flip = 0 if board.turn == chess.WHITE else 56
    to_model = np.array(
        [policy_map.transform_square(real ^ flip, transform) for real in range(64)], np.int64
    )
    inverse = np.empty(64, np.int64)
    inverse[to_model] = np.arange(64)
    return inverse


def model_square(board: chess.Board, square: int, input_format: int = 1) -> int:
    """The model-frame square where real ``square`` appears for ``board``."""
    flip = 0 if board.turn == chess.WHITE else 56
    return policy_map.transform_square(square ^ flip, _transform(board, input_format))


def real_square(board: chess.Board, square: int, input_format: int = 1) -> int:
    """The real square shown at model-frame ``square`` (inverse of :func:`model_square`)."""
    return int(permutation(board, input_format)[square])


def model_squares(
    boards: Sequence[chess.Board], squares: Sequence[int], input_format: int = 1
) -> np.ndarray:
    """:func:`model_square` for one square per board (int64 ``[batch]``)."""
    if len(boards) != len(squares):
        raise ValueError(f"{len(boards)} boards but {len(squares)} squares")
    return np.array(
        [
            model_square(board, int(s), input_format)
            for board, s in zip(boards, squares, strict=True)
        ],
        dtype=np.int64,
    )


def _take(values: ArrayLike, order: np.ndarray, axis: int) -> ArrayLike:
    if values.shape[axis] != 64:
        raise ValueError(f"axis {axis} has {values.shape[axis]} entries, expected 64 squares")
    if isinstance(values, torch.Tensor):
        return values.index_select(axis, torch.as_tensor(order, device=values.device))
    return np.take(values, order, axis=axis)


def to_absolute(
    values: ArrayLike, board: chess.Board, input_format: int = 1, axis: int = -1
) -> ArrayLike:
    """Reorder a model-frame square axis so that index ``s`` is real square ``s``."""
    perm = permutation(board, input_format)
    inverse = np.empty(64, np.int64)
    inverse[perm] = np.arange(64)  # real square -> model square
    return _take(values, inverse, axis)


def to_model(
    values: ArrayLike, board: chess.Board, input_format: int = 1, axis: int = -1
) -> ArrayLike:
    """Reorder a real-square axis into the model frame (inverse of :func:`to_absolute`)."""
    return _take(values, permutation(board, input_format), axis)
