"""Tuned lens training settings, apart from :mod:`leelalab.probing.lens` so that the
command line can build its options without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

from leelalab.runs.experiment import Settings, SettingsError, setting


@dataclass(frozen=True)
class TunedLensConfig(Settings):
    """Tuned lens training settings (validated: an out-of-range value is one line)."""

    positions: int = setting(24_000, "self-play positions", minimum=1)
    """Self-play positions generated (the games of about ``held_out_fraction`` of them held
    out, see :func:`held_out_split`)."""
    held_out_fraction: float = setting(
        0.1,
        "fraction held out",
        option="--held-out",
        metavar="FRACTION",
        minimum=0,
        exclusive_minimum=True,
    )
    epochs: int = setting(2, "passes over the positions", minimum=1)
    batch_size: int = setting(128, "positions per training step", minimum=1)
    learning_rate: float = setting(
        1e-3, "Adam learning rate", option="--lr", metavar="LR", minimum=0, exclusive_minimum=True
    )
    value_weight: float = setting(1.0, "weight of the W/D/L KL vs the policy KL", minimum=0)
    """Weight of the W/D/L KL relative to the policy KL."""
    games_in_parallel: int = setting(128, "self-play games played side by side", minimum=1)
    max_plies: int = setting(160, "plies per self-play game at most", minimum=1)
    seed: int = setting(0, "seed of self-play, split and training")

    def check(self) -> None:
        # A fraction of 1 or more holds out every game and trains on nothing (an identity
        # lens would be written).
        if not self.held_out_fraction < 1:
            raise SettingsError(
                f"--held-out must be less than 1 (got {self.held_out_fraction}): "
                "the lens would train on nothing"
            )


TunedLensSettings = TunedLensConfig
"""The experiment contract's name for :class:`TunedLensConfig`."""


__all__ = ["TunedLensConfig", "TunedLensSettings"]
