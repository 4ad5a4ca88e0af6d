"""Clean/corrupted puzzle pairs prepared for a network, and the patching metrics.

Shared by residual-stream patching (:mod:`leelalab.patching.residual`) and the attention
analyses (:mod:`leelalab.patching.heads`).

Metrics (per run, of the *clean top move*: the clean run's most likely legal move):

- ``log_odds``: ``log(p / (1 − p))`` of the clean top move, ``p`` from the policy softmax over
  the legal moves of the board that was run (``p`` is clamped to ``[1e-12, 1 − 1e-12]``; a
  move illegal on the corrupted board has ``p = 0``);
- ``wl``: ``W − L`` of the value head (side to move's view);
- ``kl``: ``KL(base ‖ patched)`` of the legal policy: how much a patch changes the policy.

Sign convention, everywhere in leelalab's patching results: **positive means that the
clean activation at the patched site supports the clean top move.** Noising (run clean,
patch in corrupted activations): ``effect = metric(clean) − metric(patched)``, the
look-ahead paper's "log-odds reduction". Denoising (run corrupted, patch in clean
activations): ``effect = metric(patched) − metric(corrupted)``. ``kl`` is non-negative in
both directions. The *normalised* effect divides by the gap ``metric(clean) −
metric(corrupted)``: the fraction of the corruption's effect that one site carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from leelalab.errors import LeelaLabError
from leelalab.lc0 import encoding, squares
from leelalab.lc0.weights.enums import InputFormat
from leelalab.models.base import LeelaNetwork, NetworkOutput
from leelalab.models.batch import PositionBatch, legal_kl, legal_log_softmax
from leelalab.puzzles.dataset import DatasetPuzzle

Direction = Literal["noising", "denoising"]
DIRECTIONS: tuple[Direction, ...] = ("noising", "denoising")
METRICS = ("log_odds", "wl", "kl")

_LOG_EPS = 1e-12


@dataclass
class PreparedPairs:
    """A batch of clean/corrupted pairs encoded for one network.

    Arrays are indexed by puzzle; ``*_legal`` are ``(batch, 1858)`` boolean masks in the
    network's policy order; ``real_of_model[b, m]`` is the real square at model square ``m``.
    """

    puzzles: list[DatasetPuzzle]
    clean_planes: torch.Tensor
    corrupted_planes: torch.Tensor
    clean_legal: torch.Tensor
    corrupted_legal: torch.Tensor
    real_of_model: np.ndarray

    def __len__(self) -> int:
        return len(self.puzzles)

    def base_and_source(self, direction: Direction) -> tuple[torch.Tensor, torch.Tensor]:
        if direction == "noising":
            return self.clean_planes, self.corrupted_planes
        return self.corrupted_planes, self.clean_planes

    def base_legal(self, direction: Direction) -> torch.Tensor:
        return self.clean_legal if direction == "noising" else self.corrupted_legal


def same_frame(network: LeelaNetwork, puzzle: DatasetPuzzle) -> bool:
    """Whether the clean and corrupted boards share the network's square frame.

    Always true for non-canonical input formats. Canonicalising formats (3, 4, 5, 132, 133)
    may pick a different symmetry for the corrupted board; square-by-square patching is
    then meaningless and such puzzles are left out.
    """
    fmt = InputFormat(network.network_format.input)
    corrupted = puzzle.corrupted_board
    if corrupted is None:
        return False
    if not fmt.is_canonical:
        return True
    return encoding.choose_transform(puzzle.clean_board) == encoding.choose_transform(corrupted)


def prepare_pairs(network: LeelaNetwork, puzzles: Sequence[DatasetPuzzle]) -> PreparedPairs:
    """Encode the clean and corrupted boards of ``puzzles`` for ``network``."""
    missing = [p.id for p in puzzles if p.corrupted_board is None]
    if missing:
        raise LeelaLabError(f"puzzles without a corruption: {', '.join(missing[:5])}")
    fmt = int(network.network_format.input)
    clean = PositionBatch.encode([p.clean_board for p in puzzles], fmt)
    corrupted = PositionBatch.encode([p.corrupted_board for p in puzzles], fmt)  # type: ignore[misc]
    device = network.device
    return PreparedPairs(
        list(puzzles),
        torch.from_numpy(clean.planes).to(device),
        torch.from_numpy(corrupted.planes).to(device),
        clean.mask(device),
        corrupted.mask(device),
        np.stack([squares.permutation(board, fmt) for board in clean.boards]),
    )


def log_odds(log_probs: torch.Tensor, move_index: torch.Tensor) -> torch.Tensor:
    """``log(p / (1 − p))`` of one move per row."""
    log_p = log_probs.gather(1, move_index[:, None])[:, 0]
    p = log_p.exp().clamp(_LOG_EPS, 1 - _LOG_EPS)
    return torch.log(p) - torch.log1p(-p)


def kl_divergence(base_log_probs: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """``KL(base ‖ other)`` per row over the base's legal moves (its finite entries)."""
    return legal_kl(base_log_probs, log_probs, torch.isfinite(base_log_probs))


@dataclass
class RunMetrics:
    """Metric values of one batch of runs (float64 tensors of shape ``(rows,)``)."""

    log_probs: torch.Tensor
    log_odds: torch.Tensor
    wl: torch.Tensor

    @classmethod
    def of(cls, output: NetworkOutput, legal: torch.Tensor, move_index: torch.Tensor) -> RunMetrics:
        # float64: the effects are differences of nearly equal log-odds
        log_probs = legal_log_softmax(output.policy_logits.double(), legal)
        wdl = output.wdl.double()
        return cls(log_probs, log_odds(log_probs, move_index), wdl[:, 0] - wdl[:, 2])


def clean_top_moves(output: NetworkOutput, clean_legal: torch.Tensor) -> torch.Tensor:
    """The clean run's most likely legal move (policy index) per row."""
    return legal_log_softmax(output.policy_logits.double(), clean_legal).argmax(dim=-1)


def effects(
    base: RunMetrics, patched: RunMetrics, rows: torch.Tensor, direction: Direction
) -> dict[str, torch.Tensor]:
    """Effects of patched runs against their base runs (``rows``: each patched run's puzzle)."""
    sign = 1.0 if direction == "noising" else -1.0
    return {
        "log_odds": sign * (base.log_odds[rows] - patched.log_odds),
        "wl": sign * (base.wl[rows] - patched.wl),
        "kl": kl_divergence(base.log_probs[rows], patched.log_probs),
    }
