"""Settings of the probe experiments, light to import (the CLI builds its options from them
without loading torch)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from leelalab.errors import LeelaLabError
from leelalab.runs.experiment import Results, Settings, SettingsError, setting
from leelalab.runs.records import read_json

R = TypeVar("R", bound="UnversionedResults")

PROBE_KINDS = ("bilinear", "linear", "logistic")
_TARGET = re.compile(r"^move([1-7])_(target|source)$")


class ProbeError(LeelaLabError):
    """Bad probe settings or files."""


@dataclass(frozen=True)
class Schedule:
    """How a probe is optimised: passes, minibatch size, learning rate, read-ahead memory."""

    epochs: int
    batch_size: int
    lr: float
    memory_budget_mb: int


_SQUARE_HELP = "move<k>_target|source, k=1..7"


# The training fields both probe experiments share (the field order of each class is that of
# its config.json, kept as it was).
def _lr() -> Any:
    return setting(1e-2, "learning rate", minimum=0, exclusive_minimum=True)


def _epochs(default: int) -> Any:
    return setting(default, "passes over the training puzzles", minimum=1)


def _batch_size() -> Any:
    return setting(64, "puzzles per optimisation step", minimum=1)


def _test_fraction() -> Any:
    return setting(
        0.3, "puzzles held out for testing", minimum=0, maximum=0.9, exclusive_minimum=True
    )


def _seeds(help: str) -> Any:
    return setting((0, 1, 2), help, minimum=0)


def _control() -> Any:
    return setting(True, "train the control task (--no-control skips it)")


def _memory_budget() -> Any:
    return setting(
        256,
        "RAM for blocks of activations read from the store",
        minimum=1,
        option="--memory-budget",
        metavar="MB",
    )


class _Trained:
    """What both probe settings classes derive from their training fields."""

    epochs: int
    batch_size: int
    lr: float
    memory_budget_mb: int
    seeds: tuple[int, ...]

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.epochs, self.batch_size, self.lr, self.memory_budget_mb)

    def _check_seeds(self) -> None:
        if not self.seeds:
            raise SettingsError("--seeds needs at least one seed")


@dataclass(frozen=True)
class ProbeSettings(Settings, _Trained):
    """Probe and training settings (defaults: the paper's)."""

    target: str = setting("move3_target", f"what to predict: {_SQUARE_HELP}")
    query: str | None = setting("move1_target", "the bilinear probe's query square, or 'none'")
    probe: str = setting("bilinear", "probe family", choices=PROBE_KINDS)
    rank: int = setting(32, "rank of the bilinear probe", minimum=1)
    lr: float = _lr()
    epochs: int = _epochs(5)
    batch_size: int = _batch_size()
    test_fraction: float = _test_fraction()
    seeds: tuple[int, ...] = _seeds("one probe per seed and hook")
    control: bool = _control()
    memory_budget_mb: int = _memory_budget()
    """RAM for activation blocks read from disk while training (bounds memory use)."""

    def check(self) -> None:
        if self.query == "none":
            object.__setattr__(self, "query", None)  # the CLI's spelling of "no query"
        if self.probe == "bilinear" and self.query is None:
            raise ProbeError("the bilinear probe needs a query square (e.g. move1_target)")
        for name in (self.target, self.query):
            if name is not None and _TARGET.match(name) is None:
                raise ProbeError(f"unknown square {name!r}; use move<k>_target / move<k>_source")
        self._check_seeds()


@dataclass(frozen=True)
class ConceptSettings(Settings, _Trained):
    """Concept and future-board probe settings."""

    horizons: tuple[int, ...] = setting(
        (0, 1, 2, 3, 4), "future-board plies to probe (0 = the current board)", minimum=0
    )
    square_concepts: bool = setting(True, "probe the attacked-squares concepts")
    board_concepts: bool = setting(True, "probe material, in-check and gives-check")
    changed_weight: float = setting(
        10.0, "loss weight of the squares whose content changes by ply k", minimum=1
    )
    """Loss weight of the squares whose content changes by ply k (future boards): without it
    a linear probe learns to copy the current board, right on ~95% of the squares, and never
    predicts an arrival (see :mod:`leelalab.probing.concepts`)."""
    epochs: int = _epochs(4)
    batch_size: int = _batch_size()
    lr: float = _lr()
    test_fraction: float = _test_fraction()
    seeds: tuple[int, ...] = _seeds("one probe per seed, target and hook")
    control: bool = _control()
    memory_budget_mb: int = _memory_budget()

    def check(self) -> None:
        self._check_seeds()
        if not (self.horizons or self.square_concepts or self.board_concepts):
            raise SettingsError("nothing to probe: give --horizons or keep a concept family")

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.epochs, self.batch_size, self.lr, self.memory_budget_mb)


@dataclass
class UnversionedResults(Results):
    """Results whose files were written without a ``format`` before the experiment
    contract: such a file loads (as the current format), a file of another format does
    not, and a missing or truncated one is one line."""

    @classmethod
    def load(cls: type[R], path: str | os.PathLike[str]) -> R:
        path = Path(path)
        if path.is_dir():
            path = path / cls.FILE
        data = read_json(path, hint=cls.HINT, what="results file")
        if "format" in data:
            read_json(path, expect_format=cls.FORMAT, hint=cls.HINT, what="results file")
        try:
            return cls.from_json(data)
        except (KeyError, TypeError, ValueError) as error:
            raise SettingsError(f"{path}: malformed {cls.FORMAT} results ({error})") from None
