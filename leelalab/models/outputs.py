"""The raw outputs every network returns (the type shared by modules and evaluation)."""

from __future__ import annotations

from typing import NamedTuple

import torch


class NetworkOutput(NamedTuple):
    """Raw network outputs for a batch, in the side-to-move frame.

    Attributes:
        policy_logits: ``(batch, 1858)`` raw logits in lc0's policy index (no softmax:
            entries of illegal moves are meaningless).
        wdl: ``(batch, 3)`` win/draw/loss probabilities for the side to move. For a
            classical (tanh) value head, ``((1 + v) / 2, 0, (1 - v) / 2)``.
        moves_left: ``(batch,)`` predicted plies left, or ``None`` without an MLH head.
    """

    policy_logits: torch.Tensor
    wdl: torch.Tensor
    moves_left: torch.Tensor | None
