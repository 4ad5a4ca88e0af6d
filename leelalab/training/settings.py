"""The settings of ``leelalab train``, flat and validated: light to import (the CLI builds
its options from them without loading torch), turned into a
:class:`~leelalab.training.trainer.TrainConfig` by :meth:`TrainSettings.config`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from leelalab.runs.experiment import Settings, SettingsError, setting

STUDENT_FIELDS = (
    "family",
    "layers",
    "d_model",
    "heads",
    "ffn_size",
    "smolgen",
    "policy_size",
    "blocks",
    "filters",
    "se_channels",
    "value_channels",
    "value_hidden",
    "moves_left",
    "activation",
)
SCHEDULE_FIELDS = (
    "epochs",
    "steps_per_epoch",
    "batch_size",
    "learning_rate",
    "final_learning_rate",
    "warmup_steps",
    "weight_decay",
)
DATA_FIELDS = (
    "buffer_size",
    "positions_per_epoch",
    "validation_positions",
    "games_in_parallel",
    "max_plies",
    "random_plies",
    "opening_plies",
    "opening_temperature",
    "sample_rate",
)
"""The option groups of ``leelalab train --help``, in order."""


@dataclass(frozen=True)
class TrainSettings(Settings):
    """Everything ``leelalab train`` is told: the student's shape, the schedule, the
    self-play data and the seed (the teacher and the output are its inputs)."""

    seed: int = setting(0, "seed of the student's initialisation, the self-play and the batches")
    # The student (the family's own checks, e.g. heads dividing d-model, are the config's).
    family: str = setting("transformer", "student family: transformer or resnet")
    layers: int = setting(6, "transformer: encoder layers", minimum=1)
    d_model: int = setting(128, "transformer: width", minimum=1)
    heads: int = setting(8, "transformer: attention heads", minimum=1)
    ffn_size: int = setting(256, "transformer: FFN width", minimum=1)
    smolgen: tuple[int, ...] | None = setting(
        None,
        "transformer: add smolgen with these sizes (COMPRESSED HIDDEN GEN; default: none)",
        minimum=1,
        metavar="SIZE",
    )
    policy_size: int | None = setting(
        None, "transformer: attention-policy width (default: d-model)", minimum=1
    )
    blocks: int = setting(2, "resnet: residual blocks", minimum=1)
    filters: int = setting(16, "resnet: filters", minimum=1)
    se_channels: int = setting(0, "resnet: squeeze-excitation width (0: none)", minimum=0)
    value_channels: int = setting(32, "value head channels", minimum=1)
    value_hidden: int = setting(128, "value head hidden units", minimum=1)
    moves_left: bool = setting(
        False, "add a moves-left head (trained on the self-play games' real lengths)"
    )
    activation: str = setting("relu", "relu or mish")
    # The schedule.
    epochs: int = setting(30, "epochs", minimum=1)
    steps_per_epoch: int = setting(100, "optimiser steps", minimum=1)
    batch_size: int = setting(128, "positions per optimiser step", minimum=1)
    learning_rate: float = setting(1e-3, "peak AdamW rate", minimum=0.0, exclusive_minimum=True)
    final_learning_rate: float = setting(
        5e-5, "rate at the end of the cosine", minimum=0.0, exclusive_minimum=True
    )
    warmup_steps: int = setting(100, "linear warm-up steps", minimum=0)
    weight_decay: float = setting(1e-4, "AdamW weight decay", minimum=0.0)
    # The self-play data.
    buffer_size: int = setting(32_768, "positions in the buffer", minimum=1)
    positions_per_epoch: int = setting(4096, "fresh positions per epoch", minimum=1)
    validation_positions: int = setting(4096, "held-out positions", minimum=1)
    games_in_parallel: int = setting(128, "self-play games", minimum=1)
    max_plies: int = setting(200, "games are cut at this ply", minimum=1)
    random_plies: int = setting(2, "each game opens with 0..N random moves", minimum=0)
    opening_plies: int = setting(10, "plies sampled at --opening-temperature", minimum=0)
    opening_temperature: float = setting(
        1.5, "opening sampling temperature", minimum=0.0, exclusive_minimum=True
    )
    sample_rate: float = setting(
        0.5,
        "fraction of positions kept for training",
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
    )

    def check(self) -> None:
        if self.smolgen is not None and len(self.smolgen) != 3:
            raise SettingsError(
                f"--smolgen takes three sizes: COMPRESSED HIDDEN GEN (got {len(self.smolgen)})"
            )

    def config(self) -> Any:
        """The :class:`~leelalab.training.trainer.TrainConfig` of these settings."""
        from leelalab.training.students import StudentConfig
        from leelalab.training.trainer import TrainConfig

        values = self.to_json()
        student = {name: values.pop(name) for name in STUDENT_FIELDS}
        student["smolgen"] = self.smolgen
        student["policy_size"] = self.policy_size or self.d_model
        return TrainConfig(student=StudentConfig(**student), **values)


@dataclass(frozen=True)
class DistillSettings(Settings):
    """``leelalab distill``: a small ResNet learns a teacher's self-play (see
    :mod:`leelalab.training.distill`)."""

    positions: int = setting(40_000, "self-play positions (a tenth held out)", minimum=10)
    games_in_parallel: int = setting(128, "self-play games played at once", minimum=1)
    max_plies: int = setting(160, "self-play games are cut at this ply", minimum=1)
    blocks: int = setting(2, "residual blocks of the student", minimum=1)
    filters: int = setting(16, "channels of the student", minimum=1)
    epochs: int = setting(8, "passes over the positions", minimum=1)
    batch_size: int = setting(256, "positions per optimiser step", minimum=1)
    learning_rate: float = setting(3e-3, "peak Adam rate", minimum=0.0, exclusive_minimum=True)
    seed: int = setting(0, "seed of self-play sampling and training")
