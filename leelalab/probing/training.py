"""The one probe training loop: seeded Adam over minibatches streamed from an activation store.

Square probes (:mod:`leelalab.probing.probes`) and concept probes
(:mod:`leelalab.probing.concepts`) differ in their module and their loss, not in how they
are trained or applied: both go through :func:`fit_probe` and :func:`map_rows`, so a fix to
the loop (seeding, memory budget, progress) reaches every probe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from leelalab.probing.settings import Schedule
from leelalab.probing.store import ActivationStore

Loss = Callable[[nn.Module, torch.Tensor, np.ndarray], torch.Tensor]
"""``loss(probe, activations, rows)``: the minibatch loss (``rows`` index the labels)."""


def fit_probe(
    make_probe: Callable[[], nn.Module],
    loss: Loss,
    store: ActivationStore,
    hook: str,
    rows: np.ndarray,
    schedule: Schedule,
    seed: int,
    bar: Any = None,
) -> nn.Module:
    """Train a new probe on ``rows`` of ``hook``; returns it in eval mode.

    The torch seed is set before ``make_probe()`` (the initialisation), and epoch ``e``
    shuffles with seed ``seed * 1000 + e``: a probe is a function of its seed. ``bar`` (a
    tqdm bar) advances by every minibatch's rows.
    """
    torch.manual_seed(seed)
    probe = make_probe()
    optimiser = torch.optim.Adam(probe.parameters(), lr=schedule.lr)
    for epoch in range(schedule.epochs):
        for x, batch_rows in store.iter_minibatches(
            hook,
            rows,
            schedule.batch_size,
            seed=seed * 1000 + epoch,
            memory_budget_bytes=schedule.memory_budget_mb * 2**20,
        ):
            value = loss(probe, x, batch_rows)
            optimiser.zero_grad()
            value.backward()
            optimiser.step()
            if bar is not None:
                bar.update(len(batch_rows))
    return probe.eval()


def map_rows(
    function: Callable[[torch.Tensor, np.ndarray], torch.Tensor],
    store: ActivationStore,
    hook: str,
    rows: np.ndarray,
    batch_size: int = 512,
    bar: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``function(activations, rows)`` over ``rows`` in file order, without gradients:
    the outputs concatenated, and the rows in the same order."""
    outputs, order = [], []
    if rows.size == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    with torch.no_grad():
        for x, batch_rows in store.iter_minibatches(hook, rows, batch_size, seed=None):
            outputs.append(function(x, batch_rows).numpy())
            order.append(batch_rows)
            if bar is not None:
                bar.update(len(batch_rows))
    return np.concatenate(outputs), np.concatenate(order)


def constant(predictions: np.ndarray) -> bool:
    """Whether a probe predicted one class for everything it was shown: a degenerate fit
    (its accuracy is the share of that class, not anything read from the activations)."""
    return predictions.size > 1 and bool(np.all(predictions == predictions.flat[0]))


__all__ = ["Loss", "Schedule", "constant", "fit_probe", "map_rows"]
