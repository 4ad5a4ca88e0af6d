"""Chunk jobs that run networks: in this process they use the networks already loaded; on a
Ray worker they load them once, from their files, when the worker starts.

A job is pickled to every Ray worker, so it carries a :class:`NetworkSpec` (file, device,
dtype) per network rather than the module itself; the loaded modules stay with the driver
and are used as they are by the local executor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from leelalab.errors import LeelaLabError
from leelalab.inference.networks import load_network
from leelalab.models.base import LeelaNetwork
from leelalab.runs.executor import ChunkJob


@dataclass(frozen=True)
class NetworkSpec:
    """How a worker rebuilds a network: its file, device and dtype."""

    source: str
    sha256: str | None
    device: str
    dtype: str

    @classmethod
    def of(cls, network: LeelaNetwork) -> NetworkSpec | None:
        """The spec of a network loaded from a file, or ``None`` for one built in memory."""
        if not getattr(network, "source", None):
            return None
        dtype = str(network.dtype).removeprefix("torch.")
        return cls(str(network.source), network.sha256, str(network.device), dtype)

    def load(self) -> LeelaNetwork:
        network = load_network(self.source, device=self.device, dtype=getattr(torch, self.dtype))
        if self.sha256 is not None and network.sha256 not in (None, self.sha256):
            raise LeelaLabError(
                f"{self.source}: the file on this worker differs from the driver's "
                f"(sha256 {network.sha256} vs {self.sha256})"
            )
        return network


class NetworkJob(ChunkJob):
    """A chunk job over named networks. Subclasses implement :meth:`compute` (and may
    override :meth:`prepare` to build per-worker state from the networks)."""

    def __init__(self, **networks: LeelaNetwork) -> None:
        self._networks: dict[str, LeelaNetwork] | None = dict(networks)
        self.specs = {name: NetworkSpec.of(network) for name, network in networks.items()}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_networks"] = None  # workers load their own
        return state

    def portable(self) -> str | None:
        missing = [name for name, spec in self.specs.items() if spec is None]
        if missing:
            return (
                f"the {', '.join(missing)} network was built in memory, not loaded from a file; "
                "a Ray worker can only load networks from files"
            )
        return None

    def setup(self) -> Any:
        if self._networks is not None:
            networks = self._networks
        else:
            networks = {name: spec.load() for name, spec in self.specs.items() if spec}
        return self.prepare(networks)

    def prepare(self, networks: dict[str, LeelaNetwork]) -> Any:
        return networks
