"""A batch of positions prepared once for a network: planes, legal moves, legal softmax.

:class:`PositionBatch` takes python-chess boards (their move stacks are the history, as
:func:`leelalab.lc0.encoding.encode_boards` reads them) and an lc0 input format, and
holds everything experiments used to rebuild separately: the input planes (one
``encode_boards`` call for the whole batch), each board's canonical transform, its legal
moves with their indices into the 1858 policy entries, and the legal mask.

Numeric convention (the one used everywhere in leelalab):

- :func:`legal_log_softmax`: log-probabilities over the legal moves, **−inf on illegal
  entries**, computed in the dtype of the logits given. Network logits are float32, so
  lens and anomaly KLs are float32; the patching metrics cast the logits to float64 first
  (their effects are differences of nearly equal log-odds) and so get float64. Keeping the
  dtype of the input, rather than forcing one, is what keeps every committed result
  byte-identical: each caller computed in exactly that dtype before.
- :func:`legal_kl`: ``KL(p ‖ q) = Σ p (log p − log q)`` over the legal entries only (illegal
  entries are excluded, never ``0 · (−inf − −inf) = NaN``), in the inputs' dtype, not
  clamped: rounding can make it a few ulps negative for nearly equal distributions.
- :meth:`PositionBatch.probabilities` (and :meth:`~PositionBatch.policies`, what
  ``leelalab eval`` reports): float64 probabilities ``exp(l − max l) / Σ`` over the legal
  logits of each row, bit for bit what :func:`leelalab.models.evaluation.legal_policy`
  returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import chess
import numpy as np
import torch

from leelalab.lc0 import encoding, policy_map
from leelalab.lc0.encoding import HistoryMode

NUM_MOVES = policy_map.NUM_MOVES


def legal_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Log-probabilities over the legal moves, ``-inf`` elsewhere, in ``logits``' dtype.

    ``mask`` (bool, True on legal entries) broadcasts against ``logits`` ``[..., 1858]``.
    """
    return torch.log_softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)


def legal_kl(log_p: torch.Tensor, log_q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``KL(p ‖ q)`` per row (nats) over the legal entries, from :func:`legal_log_softmax`
    outputs; illegal entries are excluded (``mask`` broadcasts)."""
    terms = log_p.exp() * (log_p - log_q)
    return torch.where(mask, terms, torch.zeros_like(terms)).sum(-1)


@dataclass(frozen=True, eq=False)
class PositionBatch:
    """Positions encoded for one lc0 input format (see the module docstring).

    Attributes:
        boards: the positions, in input order.
        input_format: the lc0 input format the planes and move indices are for.
        planes: float32 ``[B, 112, 8, 8]`` network inputs.
        transforms: int64 ``[B]`` canonical transforms (all 0 for non-canonical formats).
        moves: each board's legal moves, in ``board.legal_moves`` order.
        indices: each board's int64 policy indices of ``moves`` (same order).
    """

    boards: list[chess.Board]
    input_format: int
    planes: np.ndarray
    transforms: np.ndarray
    moves: list[list[chess.Move]]
    indices: list[np.ndarray]

    @classmethod
    def encode(
        cls,
        boards: Sequence[chess.Board],
        input_format: int,
        history: HistoryMode = "lc0",
    ) -> PositionBatch:
        """Encode ``boards`` (their move stacks are the history) for ``input_format``."""
        boards = list(boards)
        transforms = encoding.board_transforms(boards, input_format)
        planes = encoding.encode_boards(boards, input_format, history, transforms=transforms)
        moves, indices = [], []
        for board, transform in zip(boards, transforms.tolist(), strict=True):
            legal = list(board.legal_moves)
            moves.append(legal)
            indices.append(policy_map.legal_move_indices(board, legal, transform))
        return cls(boards, int(input_format), planes, transforms, moves, indices)

    def __len__(self) -> int:
        return len(self.boards)

    @cached_property
    def legal(self) -> np.ndarray:
        """bool ``[B, 1858]``: True at each board's legal moves."""
        mask = np.zeros((len(self.boards), NUM_MOVES), dtype=bool)
        rows = np.repeat(np.arange(len(self.indices)), [len(i) for i in self.indices])
        mask[rows, self._flat_indices] = True
        return mask

    @cached_property
    def _flat_indices(self) -> np.ndarray:
        return np.concatenate(self.indices) if self.indices else np.zeros(0, dtype=np.int64)

    def mask(self, device: torch.device | str | None = None) -> torch.Tensor:
        """:attr:`legal` as a bool tensor on ``device``."""
        return torch.from_numpy(self.legal).to(device)

    def log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """:func:`legal_log_softmax` of ``logits`` ``[..., B, 1858]`` with this batch's
        legal moves."""
        return legal_log_softmax(logits, self.mask(logits.device))

    def move_index(self, row: int, move: chess.Move | str) -> int:
        """The policy index of a legal ``move`` (``chess.Move`` or UCI) of board ``row``."""
        return policy_map.move_to_index(self.boards[row], move, int(self.transforms[row]))

    def move_at(self, row: int, index: int) -> chess.Move:
        """The legal move of board ``row`` with policy index ``index``."""
        hits = np.flatnonzero(self.indices[row] == index)
        if hits.size == 0:  # policy_map's error message
            return policy_map.index_to_move(self.boards[row], index, int(self.transforms[row]))
        return self.moves[row][int(hits[0])]

    @cached_property
    def ucis(self) -> list[list[str]]:
        """Each board's legal moves as UCI strings (python-chess's, ``e1g1`` for castling)."""
        return [[move.uci() for move in moves] for moves in self.moves]

    def _probabilities(self, logits: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """The flat float64 legal probabilities of every row, and the rows' start offsets."""
        counts = [len(i) for i in self.indices]
        rows = np.repeat(np.arange(len(counts)), counts)
        legal = logits[rows, self._flat_indices].astype(np.float64)
        starts = np.cumsum([0, *counts]).tolist()
        nonempty = np.asarray(counts) > 0
        if not nonempty.any():
            return legal, starts
        maxima = np.zeros(len(counts))
        maxima[nonempty] = np.maximum.reduceat(legal, np.asarray(starts[:-1])[nonempty])
        exp = np.exp(legal - maxima[rows])
        # One sum per row, each over its contiguous slice: numpy adds them in exactly the
        # order legal_policy's ``p.sum()`` does (a reduceat would not).
        sums = np.array([exp[a:b].sum() for a, b in zip(starts[:-1], starts[1:], strict=True)])
        return exp / sums[rows], starts

    def probabilities(self, logits: np.ndarray) -> list[np.ndarray]:
        """Each board's float64 legal-move probabilities, in :attr:`moves` order.

        ``logits``: float32 ``[B, 1858]``. ``exp(l − max l) / Σ`` over each row's legal
        logits, computed for all rows at once (one gather, one ``exp``, one division); equal
        bit for bit to :func:`leelalab.models.evaluation.legal_policy`.
        """
        flat, starts = self._probabilities(logits)
        return [flat[a:b] for a, b in zip(starts[:-1], starts[1:], strict=True)]

    def policies(self, logits: np.ndarray) -> list[dict[str, float]]:
        """Each board's legal-move probabilities (:meth:`probabilities`), most likely first
        (ties in move order), keyed by UCI: the ``policy`` of ``leelalab eval``."""
        flat, starts = self._probabilities(logits)
        counts = np.diff(starts)
        width = int(counts.max(initial=0))
        # One stable sort for the batch: rows padded with +inf sort their moves first.
        keys = np.full((len(counts), width), np.inf)
        rows = np.repeat(np.arange(len(counts)), counts)
        columns = np.arange(len(flat)) - np.repeat(starts[:-1], counts)
        keys[rows, columns] = -flat
        orders = np.argsort(keys, axis=1, kind="stable").tolist()
        values = flat.tolist()
        out = []
        for ucis, order, start, count in zip(
            self.ucis, orders, starts[:-1], counts.tolist(), strict=True
        ):
            out.append({ucis[i]: values[start + i] for i in order[:count]})
        return out


__all__ = ["PositionBatch", "legal_kl", "legal_log_softmax"]
