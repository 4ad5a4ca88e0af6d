"""Future-board and concept probe settings, apart from :mod:`leelalab.probing.concepts` so
that the command line can build its options without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

from leelalab.runs.experiment import Settings, SettingsError, setting


@dataclass(frozen=True)
class ConceptConfig(Settings):
    """Concept and future-board probe settings (validated on construction)."""

    horizons: tuple[int, ...] = setting((0, 1, 2, 3, 4), "plies k ahead", minimum=0)
    square_concepts: bool = setting(True, "train the attacked-square probes")
    board_concepts: bool = setting(True, "train the material and check probes")
    changed_weight: float = setting(
        10.0,
        "loss weight of squares whose content changes by ply k (1: plain cross-entropy)",
        minimum=0,
        exclusive_minimum=True,
    )
    """Loss weight of the squares whose content changes by ply k (future boards): without it
    a linear probe learns to copy the current board, right on ~95% of the squares, and never
    predicts an arrival (see the module docstring)."""
    epochs: int = setting(4, "passes over the puzzles", minimum=1)
    batch_size: int = setting(64, "puzzles per training step", minimum=1)
    lr: float = setting(1e-2, "Adam learning rate", minimum=0, exclusive_minimum=True)
    test_fraction: float = setting(
        0.3, "share of puzzles held out", minimum=0, exclusive_minimum=True
    )
    seeds: tuple[int, ...] = setting((0, 1, 2), "split seeds")
    control: bool = setting(True, "train the control task (targets moved between puzzles)")
    memory_budget_mb: int = setting(256, "activations held in memory at once (MiB)", minimum=1)

    def check(self) -> None:
        if not self.test_fraction < 1:
            raise SettingsError(f"--test-fraction must be less than 1 (got {self.test_fraction})")
        if not self.seeds:
            raise SettingsError("--seeds needs at least one seed")


ConceptSettings = ConceptConfig
"""The experiment contract's name for :class:`ConceptConfig`."""


__all__ = ["ConceptConfig", "ConceptSettings"]
