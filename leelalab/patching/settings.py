"""Settings of the patching and attention-head experiments, light to import: the CLI
generates its options from them without loading torch.

Every field is validated on construction (one :class:`~leelalab.runs.experiment.SettingsError`
line naming the option), before a dataset is read or an output touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from leelalab.runs.experiment import Settings, setting

DIRECTIONS = ("noising", "denoising")
LIMIT_HELP = "at most this many selected puzzles (default: all)"
CHUNK_HELP = "puzzles per saved chunk"


def _limit() -> int | None:
    return setting(None, LIMIT_HELP, minimum=1)


@dataclass(frozen=True)
class ResidualPatchingSettings(Settings):
    """``patch residual``: every (layer, square) of the residual stream."""

    layers: tuple[int, ...] | None = setting(None, "body layers to patch (default: all)", minimum=0)
    direction: str = setting(
        "noising",
        "noising: clean run, corrupted activations patched in (the paper); denoising: the reverse",
        choices=DIRECTIONS,
    )
    limit: int | None = _limit()
    chunk_size: int = setting(8, CHUNK_HELP, minimum=1)
    max_rows: int = setting(512, "patched rows per forward (memory vs speed)", minimum=1)


@dataclass(frozen=True)
class HeadPatchingSettings(Settings):
    """``patch heads``: every attention head's output."""

    direction: str = setting(
        "noising",
        "noising: clean run, corrupted head outputs patched in; denoising: the reverse",
        choices=DIRECTIONS,
    )
    limit: int | None = _limit()
    chunk_size: int = setting(8, CHUNK_HELP, minimum=1)


@dataclass(frozen=True)
class SingleEntrySettings(Settings):
    """``heads single-entry``: one head's 3rd→1st target attention entry zeroed."""

    layer: int = setting(help="the head's layer", minimum=0)
    head: int = setting(help="the head's index in its layer", minimum=0)
    random_samples: int = setting(
        8, "random other entries zeroed per puzzle, for comparison", minimum=1
    )
    seed: int = setting(0, "seed of the random entries", minimum=0)
    limit: int | None = _limit()
    chunk_size: int = setting(32, CHUNK_HELP, minimum=1)


@dataclass(frozen=True)
class HeadSearchSettings(Settings):
    """``heads search``: the single-entry ablation in every head, ranked."""

    limit: int | None = _limit()
    chunk_size: int = setting(16, CHUNK_HELP, minimum=1)
    top: int = setting(10, "heads listed in the printed ranking", minimum=1)


@dataclass(frozen=True)
class PieceMovementSettings(Settings):
    """``heads piece-movement``: detect piece-movement heads, ablate their flow."""

    threshold: float = setting(
        0.25, "minimum excess attention (over uniform) on a piece type's move squares"
    )
    scoring_positions: int = setting(
        512, "positions used to score each head's piece-movement attention", minimum=1
    )
    min_moves: int = setting(5, "only puzzles with at least this many moves", minimum=1)
    seed: int = setting(0, "seed of the scoring positions and random squares", minimum=0)
    limit: int | None = _limit()
    chunk_size: int = setting(32, CHUNK_HELP, minimum=1)


__all__ = [
    "DIRECTIONS",
    "HeadPatchingSettings",
    "HeadSearchSettings",
    "PieceMovementSettings",
    "ResidualPatchingSettings",
    "SingleEntrySettings",
]
