"""Settings of the probe experiment, light to import (the CLI builds ``probe train``'s
options from them without loading torch)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from leelalab.errors import LeelaLabError
from leelalab.runs.experiment import Settings, SettingsError, setting

PROBE_KINDS = ("bilinear", "linear", "logistic")
_TARGET = re.compile(r"^move([1-7])_(target|source)$")
_SQUARE_HELP = "move<k>_target|source, k=1..7"


class ProbeError(LeelaLabError):
    """Bad probe settings or files."""


@dataclass(frozen=True)
class CacheSettings(Settings):
    """``activations cache``: what is cached, and how it is stored."""

    dtype: str = setting("float16", "storage precision", choices=("float16", "float32"))
    batch_size: int = setting(64, "positions per forward pass", minimum=1)
    part_size: int = setting(512, "puzzles per resumable part", minimum=1)
    limit: int | None = setting(None, "at most this many puzzles (default: all)", minimum=1)
    selected_only: bool = setting(False, "only selected puzzles (default: all puzzles)")
    min_moves: int = setting(1, "only puzzles with at least this many moves", minimum=1)
    random_init: int | None = setting(
        None,
        "cache a copy of the network re-initialised with this seed (the probe baseline)",
        minimum=0,
        metavar="SEED",
    )


@dataclass(frozen=True)
class Schedule:
    """How a probe is optimised: passes, minibatch size, learning rate, read-ahead memory."""

    epochs: int
    batch_size: int
    lr: float
    memory_budget_mb: int


@dataclass(frozen=True)
class ProbeSettings(Settings):
    """Probe and training settings (defaults: the paper's)."""

    target: str = setting("move3_target", f"what to predict: {_SQUARE_HELP}")
    query: str | None = setting("move1_target", "the bilinear probe's query square, or 'none'")
    probe: str = setting("bilinear", "probe family", choices=PROBE_KINDS)
    rank: int = setting(32, "rank of the bilinear probe", minimum=1)
    lr: float = setting(1e-2, "learning rate", minimum=0, exclusive_minimum=True)
    epochs: int = setting(5, "passes over the training puzzles", minimum=1)
    batch_size: int = setting(64, "puzzles per optimisation step", minimum=1)
    test_fraction: float = setting(
        0.3, "puzzles held out for testing", minimum=0, maximum=0.9, exclusive_minimum=True
    )
    seeds: tuple[int, ...] = setting((0, 1, 2), "one probe per seed and hook", minimum=0)
    control: bool = setting(True, "train the control task (--no-control skips it)")
    memory_budget_mb: int = setting(
        256,
        "RAM for blocks of activations read from the store",
        minimum=1,
        option="--memory-budget",
        metavar="MB",
    )
    """RAM for activation blocks read from disk while training (bounds memory use)."""

    def check(self) -> None:
        if self.query == "none":
            object.__setattr__(self, "query", None)  # the CLI's spelling of "no query"
        if self.probe == "bilinear" and self.query is None:
            raise ProbeError("the bilinear probe needs a query square (e.g. move1_target)")
        for name in (self.target, self.query):
            if name is not None and _TARGET.match(name) is None:
                raise ProbeError(f"unknown square {name!r}; use move<k>_target / move<k>_source")
        if not self.seeds:
            raise SettingsError("--seeds needs at least one seed")

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.epochs, self.batch_size, self.lr, self.memory_budget_mb)


ProbeConfig = ProbeSettings
"""The name probe settings had before the experiment contract (``config.json`` files and
:mod:`leelalab.analyses.steering` construct it from a JSON object)."""
