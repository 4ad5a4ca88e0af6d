"""Settings of the inside-the-network experiments (``lens run``, ``refutations find``,
``steer``), apart from their modules so that the command line can build its options without
importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from leelalab.runs.experiment import Settings, SettingsError, setting

if TYPE_CHECKING:
    from leelalab.puzzles.refutations import RefutationSettings

DEPTHS = (1, 3, 5)
STRATA_CHOICES = ("paper", "unfiltered", "weak-solved", "all")


@dataclass(frozen=True)
class LensRunSettings(Settings):
    """``leelalab lens run`` settings (the network, dataset and tuned lens are inputs)."""

    limit: int | None = setting(None, "first N puzzles only", minimum=1)
    chunk_size: int = setting(256, "puzzles per chunk", minimum=1)


@dataclass(frozen=True)
class RefutationSearchSettings(Settings):
    """``leelalab refutations find`` settings: which puzzles, which depths, Stockfish's
    thresholds and budget (the filter run and the Stockfish binary are inputs)."""

    depths: tuple[int, ...] = setting(DEPTHS, "odd plies k", minimum=1)
    stratum: str = setting(
        "unfiltered",
        "puzzles drawn from this stratum (all: every puzzle)",
        choices=STRATA_CHOICES,
    )
    min_moves: int = setting(5, "plies the line needs", minimum=1)
    sample: int | None = setting(None, "a seeded random sample of N puzzles", minimum=1)
    nodes: int = setting(10_000, "Stockfish nodes", minimum=1)
    max_candidates: int = setting(60, "edits tried per puzzle and k", minimum=1)
    win_cp: int = setting(200, "the clean line wins by this")
    fail_cp: int = setting(50, "a refuted ply leaves at most this")
    same_cp: int = setting(150, "a control moves evaluations by at most this", minimum=0)
    chunk_size: int = setting(8, "puzzles per chunk", minimum=1)
    seed: int = setting(0, "seed of the sample and of the order edits are tried in")

    def check(self) -> None:
        even = [k for k in self.depths if k % 2 == 0]
        if even:
            raise SettingsError(
                f"--depths must be odd plies (a solver move: 1, 3, 5, …), got {even[0]}"
            )
        if len(set(self.depths)) != len(self.depths):
            raise SettingsError(f"--depths lists a depth twice: {list(self.depths)}")

    def thresholds(self) -> RefutationSettings:
        """Stockfish's thresholds and budget for
        :func:`~leelalab.puzzles.refutations.find_refutation`."""
        from leelalab.puzzles.refutations import RefutationSettings

        shared = ("win_cp", "fail_cp", "same_cp", "max_candidates", "nodes")
        return RefutationSettings(**{name: getattr(self, name) for name in shared})


@dataclass(frozen=True)
class RefutationMeasureSettings(Settings):
    """``leelalab refutations measure`` settings (the networks are inputs)."""

    batch_size: int = setting(256, "positions per network forward", minimum=1)
    seed: int = setting(0, "seed of the bootstrap intervals")


@dataclass(frozen=True)
class SteeringConfig(Settings):
    """Steering settings (validated on construction)."""

    layers: tuple[int, ...] | None = setting(None, "layers (default: every probe's)", minimum=0)
    """Layers to steer after (default: every layer with a saved probe)."""
    scales: tuple[float, ...] = setting(
        (0.5, 1.0, 2.0, 4.0), "steering norms, in mean residual norms per square", minimum=0
    )
    """Steering norms in units of the mean residual norm per square."""
    targets_per_puzzle: int = setting(2, "targets s′ per puzzle", option="--targets", minimum=1)
    random_directions: int = setting(4, "random baselines per target", minimum=1)
    limit: int | None = setting(300, "held-out puzzles at most", minimum=1)
    """Held-out puzzles steered at most (dataset order)."""
    seed: int = setting(0, "seed of targets and random directions")


SteeringSettings = SteeringConfig
"""The experiment contract's name for :class:`SteeringConfig`."""


__all__ = [
    "LensRunSettings",
    "RefutationMeasureSettings",
    "RefutationSearchSettings",
    "SteeringConfig",
    "SteeringSettings",
]
