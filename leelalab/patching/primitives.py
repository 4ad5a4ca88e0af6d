"""Patching and ablation primitives: factories of hook functions.

Each factory returns a function ``fn(tensor, *, hook) -> tensor`` for
:meth:`leelalab.hooks.HookedModule.run_with_hooks`. Inputs are never modified in place:
the hook returns a patched copy. Squares are model-frame squares (see
:mod:`leelalab.lc0.squares`).

Expected shapes:

- square primitives: ``(batch, 64, ...)`` — residual streams, ResNet block outputs,
  per-head outputs ``hook_z``;
- head primitives: ``(batch, 64, heads, d_head)`` — ``blocks.{L}.attn.hook_z``;
- attention-entry primitives: ``(batch, heads, 64_query, 64_key)`` —
  ``blocks.{L}.attn.hook_pattern``. Zeroing a pattern entry happens after the softmax and
  the row is *not* renormalised, as in the look-ahead paper's single-entry ablations.

``squares`` arguments accept an int (same square for the whole batch), a sequence of ints
(the same squares for the whole batch), a ``(batch,)`` integer tensor/array (one square per
batch element: puzzles have their targets on different squares), or a ``(batch, 64)``
boolean mask.

Example — patch the residual stream at the 3rd move's target square from a corrupted run::

    _, corrupted = net.run_with_cache(corrupted_planes, names_filter="blocks.6.hook_resid_post")
    patched = net.run_with_hooks(
        clean_planes,
        fwd_hooks=[("blocks.6.hook_resid_post",
                    replace_at_squares(corrupted["blocks.6.hook_resid_post"], target_squares))],
    )
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from leelalab.hooks import HookFunction, HookPoint

Squares = int | Sequence[int] | np.ndarray | torch.Tensor


def square_mask(squares: Squares, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A ``(batch, 64)`` boolean mask from any accepted ``squares`` form."""
    if isinstance(squares, int | np.integer):
        squares = [int(squares)]
    tensor = torch.as_tensor(
        np.asarray(squares) if not isinstance(squares, torch.Tensor) else squares
    )
    tensor = tensor.to(device)
    if tensor.dtype == torch.bool:
        if tensor.shape != (batch, 64):
            raise ValueError(
                f"a square mask must have shape ({batch}, 64), not {tuple(tensor.shape)}"
            )
        return tensor
    if tensor.numel() and (tensor.min() < 0 or tensor.max() > 63):
        raise ValueError("squares must lie in 0..63")
    mask = torch.zeros(batch, 64, dtype=torch.bool, device=device)
    if isinstance(squares, Sequence):
        mask[:, tensor.long()] = True  # the same squares for every batch element
    else:
        if tensor.shape != (batch,):
            raise ValueError(
                f"per-example squares must have shape ({batch},), not {tuple(tensor.shape)}"
            )
        mask[torch.arange(batch, device=device), tensor.long()] = True
    return mask


def _check_squares_axis(tensor: torch.Tensor, hook: HookPoint) -> None:
    if tensor.dim() < 2 or tensor.shape[1] != 64:
        raise ValueError(
            f"hook {hook.name!r} gives shape {tuple(tensor.shape)}; square primitives need "
            "(batch, 64, ...)"
        )


def _broadcast(mask: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    return mask.reshape(*mask.shape, *([1] * (tensor.dim() - 2)))


def replace_at_squares(source: torch.Tensor, squares: Squares) -> HookFunction:
    """Replace the activation at ``squares`` by ``source``'s (same shape, e.g. a cached run)."""

    def hook_fn(tensor: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
        _check_squares_axis(tensor, hook)
        if source.shape != tensor.shape:
            raise ValueError(
                f"source shape {tuple(source.shape)} != activation {tuple(tensor.shape)}"
            )
        mask = _broadcast(square_mask(squares, tensor.shape[0], tensor.device), tensor)
        return torch.where(mask, source.to(tensor.device, tensor.dtype), tensor)

    return hook_fn


def zero_at_squares(squares: Squares) -> HookFunction:
    """Zero the activation at ``squares``."""

    def hook_fn(tensor: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
        _check_squares_axis(tensor, hook)
        mask = _broadcast(square_mask(squares, tensor.shape[0], tensor.device), tensor)
        return tensor.masked_fill(mask, 0.0)

    return hook_fn


def mean_ablate_at_squares(mean: torch.Tensor, squares: Squares) -> HookFunction:
    """Replace the activation at ``squares`` by ``mean`` (shape ``tensor.shape[2:]`` or
    ``(64, ...)`` for a per-square mean)."""

    def hook_fn(tensor: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
        _check_squares_axis(tensor, hook)
        value = mean.to(tensor.device, tensor.dtype).expand(tensor.shape)
        mask = _broadcast(square_mask(squares, tensor.shape[0], tensor.device), tensor)
        return torch.where(mask, value, tensor)

    return hook_fn


def _check_heads(tensor: torch.Tensor, head: int, hook: HookPoint) -> None:
    if tensor.dim() != 4 or tensor.shape[1] != 64:
        raise ValueError(
            f"hook {hook.name!r} gives shape {tuple(tensor.shape)}; head primitives need "
            "(batch, 64, heads, d_head) such as attn.hook_z"
        )
    if not 0 <= head < tensor.shape[2]:
        raise ValueError(f"head {head} out of range (the layer has {tensor.shape[2]} heads)")


def zero_head(head: int) -> HookFunction:
    """Zero one head's output (``attn.hook_z``)."""

    def hook_fn(tensor: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
        _check_heads(tensor, head, hook)
        out = tensor.clone()
        out[:, :, head] = 0
        return out

    return hook_fn


def mean_ablate_head(head: int, mean: torch.Tensor) -> HookFunction:
    """Replace one head's output by ``mean`` (shape ``(d_head,)`` or ``(64, d_head)``)."""

    def hook_fn(tensor: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
        _check_heads(tensor, head, hook)
        out = tensor.clone()
        out[:, :, head] = mean.to(tensor.device, tensor.dtype)
        return out

    return hook_fn


def replace_head(source: torch.Tensor, head: int) -> HookFunction:
    """Replace one head's output by ``source``'s (same shape as the activation)."""

    def hook_fn(tensor: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
        _check_heads(tensor, head, hook)
        if source.shape != tensor.shape:
            raise ValueError(
                f"source shape {tuple(source.shape)} != activation {tuple(tensor.shape)}"
            )
        out = tensor.clone()
        out[:, :, head] = source[:, :, head].to(tensor.device, tensor.dtype)
        return out

    return hook_fn


def zero_attention_entry(head: int, query: Squares, key: Squares) -> HookFunction:
    """Zero the attention weight from ``query`` to ``key`` in one head (post-softmax).

    ``query``/``key`` are ints or ``(batch,)`` per-example squares.
    """

    def hook_fn(tensor: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
        if tensor.dim() != 4 or tensor.shape[2:] != (64, 64):
            raise ValueError(
                f"hook {hook.name!r} gives shape {tuple(tensor.shape)}; attention entries need "
                "(batch, heads, 64, 64) such as attn.hook_pattern"
            )
        if not 0 <= head < tensor.shape[1]:
            raise ValueError(f"head {head} out of range (the layer has {tensor.shape[1]} heads)")
        batch = tensor.shape[0]
        rows = torch.arange(batch, device=tensor.device)
        q = torch.as_tensor(np.asarray(query), device=tensor.device).long().expand(batch)
        k = torch.as_tensor(np.asarray(key), device=tensor.device).long().expand(batch)
        out = tensor.clone()
        out[rows, head, q, k] = 0
        return out

    return hook_fn


def patch_forward(
    model: Any,
    planes: torch.Tensor,
    source_cache: dict[str, torch.Tensor],
    hook_name: str,
    squares: Squares,
) -> Any:
    """One forward of ``planes`` with ``hook_name`` patched at ``squares`` from the cache."""
    if hook_name not in source_cache:
        raise KeyError(f"{hook_name!r} is not in the source cache")
    with torch.no_grad():
        return model.run_with_hooks(
            planes, fwd_hooks=[(hook_name, replace_at_squares(source_cache[hook_name], squares))]
        )
