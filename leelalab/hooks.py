"""Named hook points on network activations, in the style of TransformerLens's hook core.

Every interesting activation of a leelalab network passes through a :class:`HookPoint`, an
identity module with a readable dotted name (``"blocks.3.hook_resid_post"``). A hook is a
function ``fn(tensor, *, hook) -> tensor | None``: it may read the activation (caching) or
return a replacement (patching, ablation). :class:`HookedModule` adds ``run_with_hooks``,
``run_with_cache`` and the ``hooks(...)`` context manager; hooks are always removed in a
``finally`` block, so an exception never leaves a network patched.

Square convention: hook tensors that have a square axis use the network's own frame
(side to move at the bottom; for black to move the board is mirrored vertically), squares
``0 = a1 … 63 = h8`` of that frame. See :mod:`leelalab.lc0.squares` for conversions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import torch
from torch import nn


class HookFunction(Protocol):
    def __call__(self, tensor: torch.Tensor, *, hook: HookPoint) -> torch.Tensor | None: ...


NamesFilter = str | Sequence[str] | Callable[[str], bool] | None


class HookPoint(nn.Module):
    """An identity module whose output hooks can read or replace."""

    def __init__(self) -> None:
        super().__init__()
        self.name: str = ""
        self._hook_functions: list[HookFunction] = []

    @property
    def layer(self) -> int | None:
        """The block/layer index in the hook's name, if any (``blocks.3.x`` → 3)."""
        match = re.search(r"blocks\.(\d+)\.", self.name)
        return int(match.group(1)) if match else None

    @property
    def active(self) -> bool:
        return bool(self._hook_functions)

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        for function in self._hook_functions:
            result = function(tensor, hook=self)
            if result is not None:
                tensor = result
        return tensor

    def on_squares(self, planes: torch.Tensor) -> torch.Tensor:
        """Pass a ``[batch, C, 8, 8]`` conv activation through the hook as ``[batch, 64, C]``.

        Without hooks this costs nothing: the layout change happens only when a hook is
        attached, and the result is converted back to ``[batch, C, 8, 8]``.
        """
        if not self._hook_functions:
            return planes
        batch, channels = planes.shape[:2]
        squares = planes.permute(0, 2, 3, 1).reshape(batch, 64, channels)
        squares = self(squares)
        return squares.reshape(batch, 8, 8, channels).permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def _matcher(names: NamesFilter) -> Callable[[str], bool]:
    if names is None:
        return lambda _name: True
    if isinstance(names, str):
        return lambda name: name == names
    if callable(names):
        return names
    wanted = set(names)
    return lambda name: name in wanted


class HookedModule(nn.Module):
    """Base class of leelalab networks: finds its hook points and runs hooks on them.

    Subclasses call :meth:`setup_hooks` at the end of ``__init__``.
    """

    hook_dict: dict[str, HookPoint]

    def setup_hooks(self) -> None:
        self.hook_dict = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                self.hook_dict[name] = module

    @property
    def hook_names(self) -> list[str]:
        """Every hook point's name, in forward order."""
        return list(self.hook_dict)

    def _resolve(self, names: NamesFilter) -> list[HookPoint]:
        if isinstance(names, str) and names not in self.hook_dict:
            raise KeyError(f"no hook point named {names!r}; see `.hook_names`")
        if isinstance(names, Sequence) and not isinstance(names, str):
            missing = [name for name in names if name not in self.hook_dict]
            if missing:
                raise KeyError(f"no hook points named {missing}; see `.hook_names`")
        match = _matcher(names)
        return [hook for name, hook in self.hook_dict.items() if match(name)]

    @contextmanager
    def hooks(
        self, fwd_hooks: Sequence[tuple[NamesFilter, HookFunction]] = ()
    ) -> Iterator[HookedModule]:
        """Attach ``(names, function)`` hooks for the duration of a ``with`` block."""
        attached: list[tuple[HookPoint, HookFunction]] = []
        try:
            for names, function in fwd_hooks:
                for hook in self._resolve(names):
                    hook._hook_functions.append(function)
                    attached.append((hook, function))
            yield self
        finally:
            for hook, function in reversed(attached):
                hook._hook_functions.remove(function)

    def reset_hooks(self) -> None:
        """Remove every hook (normally unnecessary: hooks are removed automatically)."""
        for hook in self.hook_dict.values():
            hook._hook_functions.clear()

    def run_with_hooks(
        self,
        *args: Any,
        fwd_hooks: Sequence[tuple[NamesFilter, HookFunction]] = (),
        **kwargs: Any,
    ) -> Any:
        """One forward pass with temporary hooks."""
        with self.hooks(fwd_hooks):
            return self(*args, **kwargs)

    def run_with_cache(
        self,
        *args: Any,
        names_filter: NamesFilter = None,
        detach: bool = True,
        device: torch.device | str | None = None,
        **kwargs: Any,
    ) -> tuple[Any, dict[str, torch.Tensor]]:
        """One forward pass that also returns the activations at the selected hook points.

        Returns:
            ``(outputs, cache)`` where ``cache[name]`` is the activation at that hook.
        """
        cache: dict[str, torch.Tensor] = {}

        def save(tensor: torch.Tensor, *, hook: HookPoint) -> None:
            value = tensor.detach() if detach else tensor
            cache[hook.name] = value.to(device) if device is not None else value

        outputs = self.run_with_hooks(*args, fwd_hooks=[(names_filter, save)], **kwargs)
        return outputs, cache
