"""The puzzle pipeline's settings: light to import (the CLI builds its options from them
without loading torch), validated on construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from leelalab.runs.experiment import Settings, setting


@dataclass(frozen=True)
class Thresholds(Settings):
    """Filter thresholds (defaults: the look-ahead paper's), validated."""

    hard: float = setting(
        0.05,
        "the weak network's probability of the 1st move must be below this",
        minimum=0.0,
        maximum=1.0,
    )
    correct: float = setting(
        0.5,
        "the strong network's probability of every solver move must be above this",
        minimum=0.0,
        maximum=1.0,
    )
    forcing: float = setting(
        0.7,
        "the weak network's probability of the opponent's reply must be above this",
        minimum=0.0,
        maximum=1.0,
    )
    min_pv_plies: int = setting(3, "plies after the opponent's first move", minimum=1)


HISTORY_MODES = ("lc0", "none", "repeat")


@dataclass(frozen=True)
class FilterSettings(Settings):
    """The settings of one filtering run (``leelalab puzzles filter``), validated."""

    hard: float = setting(0.05, "hard: weak P(1st move) below this", minimum=0.0, maximum=1.0)
    correct: float = setting(
        0.5,
        "correct: strong P(every own move of the line) above this",
        minimum=0.0,
        maximum=1.0,
    )
    forcing: float = setting(
        0.7, "forcing: weak P(opponent's reply) above this", minimum=0.0, maximum=1.0
    )
    min_pv_plies: int = setting(3, "lines need at least this many plies", minimum=1)
    strong_history: str = setting(
        "lc0", "history planes for the strong network", choices=HISTORY_MODES
    )
    weak_history: str = setting("lc0", "history planes for the weak network", choices=HISTORY_MODES)
    limit: int | None = setting(None, "only the first N valid puzzles", minimum=1)
    sample: int | None = setting(
        None, "a seeded uniform random sample of N puzzles (see --seed)", minimum=1
    )
    seed: int = setting(0, "seed of --sample")
    chunk_size: int = setting(1024, "puzzles per resumable chunk", minimum=1)
    batch_size: int = setting(256, "positions per network forward", minimum=1)

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(self.hard, self.correct, self.forcing, self.min_pv_plies)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> FilterSettings:
        """Settings from the keyword arguments :func:`filter_puzzles` took before it took a
        settings object (``thresholds=Thresholds(...)`` included)."""
        options = dict(options)
        thresholds = options.pop("thresholds", None)
        if thresholds is not None:
            options.update(asdict(thresholds))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"filter_puzzles() got unexpected arguments: {', '.join(unknown)}")
        return cls(**options)


@dataclass(frozen=True)
class CorruptSettings(Settings):
    """How ``leelalab puzzles corrupt`` runs (the corruption thresholds are separate)."""

    stockfish: str | None = setting(
        None,
        "the Stockfish binary that must confirm each corruption ('stockfish': found on PATH "
        "or in /usr/games; None: no check)",
    )
    chunk_size: int = setting(8, "puzzles per resumable chunk", minimum=1)

    @classmethod
    def from_options(
        cls, settings: CorruptSettings | None, options: dict[str, Any]
    ) -> CorruptSettings:
        """``settings``, or the keyword arguments ``corrupt_dataset`` took before it took a
        settings object (``stockfish=True`` meaning "find it")."""
        if settings is not None:
            if options:
                raise TypeError("pass either a CorruptSettings object or keyword settings")
            return settings
        if options.get("stockfish") is True:
            options = {**options, "stockfish": "stockfish"}
        return cls(**options)
