"""How long an engine searches: depth, nodes and/or time, validated, with a stable key."""

from __future__ import annotations

import math
from dataclasses import dataclass

import chess.engine


@dataclass(frozen=True)
class Limit:
    """A search limit; at least one of ``depth``, ``nodes`` (positive integers) and ``time``
    (positive seconds) is set, and the search stops at the first one reached.

    Only depth and node limits are reproducible (with one thread and a cleared hash); a time
    limit depends on the machine.
    """

    depth: int | None = None
    nodes: int | None = None
    time: float | None = None

    def __post_init__(self) -> None:
        if self.depth is None and self.nodes is None and self.time is None:
            raise ValueError("a search limit needs a depth, a node count or a time")
        for name in ("depth", "nodes"):
            value = getattr(self, name)
            # bool is an int subclass: Limit(depth=True) is a mistake, not depth 1.
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if self.time is not None:
            if isinstance(self.time, bool) or not isinstance(self.time, int | float):
                raise ValueError(f"time must be a number of seconds, not {self.time!r}")
            if not math.isfinite(self.time) or self.time <= 0:
                raise ValueError(
                    f"time must be a positive finite number of seconds, not {self.time}"
                )
            object.__setattr__(self, "time", float(self.time))

    @property
    def key(self) -> str:
        """A stable text form, e.g. ``depth=12`` or ``depth=10,nodes=5000`` (cache keys,
        settings files)."""
        parts = [
            f"{name}={value!r}"
            for name, value in (("depth", self.depth), ("nodes", self.nodes), ("time", self.time))
            if value is not None
        ]
        return ",".join(parts)

    def to_chess(self) -> chess.engine.Limit:
        return chess.engine.Limit(depth=self.depth, nodes=self.nodes, time=self.time)

    def __str__(self) -> str:
        return self.key


__all__ = ["Limit"]
