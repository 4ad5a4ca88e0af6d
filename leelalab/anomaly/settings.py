"""The settings of the anomaly experiments: the backdoored network, a task, a detector run.

Each is a frozen :class:`~leelalab.runs.experiment.Settings` dataclass validated on
construction (an out-of-range or inconsistent value is one line naming the option, before
any network is loaded or output touched); the command-line options are generated from the
fields, so help text and defaults live here. Each detector declares its own settings in its
file (:mod:`leelalab.anomaly.detectors`).
"""

from __future__ import annotations

import dataclasses

from leelalab.runs.experiment import Settings, SettingsError, setting

TASK_KINDS = ("backdoor", "mechanism", "ood")
DEFAULT_ANOMALY_FRACTION = {"backdoor": 0.2, "mechanism": 0.5, "ood": 0.5}

DEFAULT_DETECTORS = (
    "mahalanobis",
    "relative-mahalanobis",
    "que",
    "spectral",
    "isolation-forest",
    "lof",
    "logit-lens",
    "weak-kl",
    "weak-dq",
    "student-kl",
    "student-dq",
    "probe",
)


@dataclasses.dataclass(frozen=True)
class TaskSettings(Settings):
    """How a task is built (``leelalab anomaly task KIND``); each kind reads its fields."""

    kind: str = setting("ood", "which task", choices=TASK_KINDS)
    weak: str = setting("weak-maia-1900", "the weak reference network recorded in the task")
    source: str = setting(
        "maia-1900", "backdoor: the clean network whose self-play gives the positions"
    )
    trusted: int = setting(3000, "trusted positions (backdoor, ood)", minimum=1)
    pool: int = setting(1000, "unlabelled pool positions (backdoor, ood)", minimum=1)
    test: int = setting(2000, "test positions (backdoor, ood)", minimum=1)
    anomaly_fraction: float | None = setting(
        None,
        "anomalous share of pool and test (default: backdoor 0.2, ood 0.5)",
        minimum=0,
        exclusive_minimum=True,
    )
    per_game: int = setting(8, "ood: positions drawn per game", minimum=1)
    max_plies: int = setting(100, "ood: game length limit", minimum=1)
    puzzles: str | None = setting(
        None, "mechanism: Lichess puzzle CSV (default: the shipped sample)"
    )
    limit: int | None = setting(None, "mechanism: first N valid puzzles only", minimum=1)
    deep_depth: int = setting(
        10,
        "mechanism: Stockfish depth that must confirm the move (0: trust Lichess)",
        minimum=0,
    )
    shallow_depth: int = setting(1, "mechanism: the shallow search depth", minimum=1)
    stockfish: str | None = setting(
        None, "Stockfish binary (default: $LEELALAB_STOCKFISH, PATH, /usr/games)"
    )
    seed: int = setting(0, "seed of games, matching and splits")
    # Library settings without an option (the values every committed task was built with).
    near_miss_fraction: float = setting(0.1, "backdoor: near-miss share of pool and test",
                                        minimum=0, maximum=1)  # fmt: skip
    selfplay_chunk: int = setting(8192, "backdoor: self-play positions per chunk", minimum=64)
    min_ply: int = setting(8, "ood: positions before this ply are not drawn", minimum=0)
    rating_bin: int = setting(200, "mechanism: rating bin of the matching", minimum=1)
    trusted_fraction: float = setting(0.4, "mechanism: share of puzzles for trusted",
                                      minimum=0, exclusive_minimum=True, maximum=1)  # fmt: skip
    pool_fraction: float = setting(0.2, "mechanism: share of puzzles for the pool",
                                   minimum=0, exclusive_minimum=True, maximum=1)  # fmt: skip

    LIBRARY_ONLY = (
        "near_miss_fraction",
        "selfplay_chunk",
        "min_ply",
        "rating_bin",
        "trusted_fraction",
        "pool_fraction",
    )
    """Fields without a command-line option."""

    @property
    def fraction(self) -> float:
        """The anomalous share of pool and test (the kind's default when not given)."""
        if self.anomaly_fraction is not None:
            return self.anomaly_fraction
        return DEFAULT_ANOMALY_FRACTION[self.kind]

    def check(self) -> None:
        if self.anomaly_fraction is not None and self.anomaly_fraction >= 1:
            raise SettingsError(
                f"--anomaly-fraction must be less than 1 (got {self.anomaly_fraction}): the "
                "pool and test splits need normal positions too"
            )
        if self.kind == "ood":
            self._check_ood_sizes()
        elif self.kind == "backdoor":
            self._check_backdoor_sizes()
        elif self.deep_depth and self.deep_depth <= self.shallow_depth:
            raise SettingsError(
                f"--deep-depth {self.deep_depth} must be deeper than --shallow-depth "
                f"{self.shallow_depth} (or 0: trust Lichess)"
            )
        if self.kind == "mechanism" and self.trusted_fraction + self.pool_fraction >= 1:
            raise SettingsError("trusted_fraction + pool_fraction must leave puzzles for test")

    def ood_parts(self) -> dict[str, dict[str, int]]:
        """Positions asked of each kind in each split of the OOD task."""
        parts = {"trusted": {"natural": self.trusted}}
        for split, size in (("pool", self.pool), ("test", self.test)):
            anomalous = int(round(size * self.fraction))
            parts[split] = {
                "natural": size - anomalous,
                "chess960": anomalous // 2,
                "random": anomalous - anomalous // 2,
            }
        return parts

    def _check_ood_sizes(self) -> None:
        # A split takes whole games, so every kind of every split needs at least one game's
        # positions; otherwise the task would silently hold other sizes than asked.
        for split, parts in self.ood_parts().items():
            for kind, count in parts.items():
                if count < self.per_game:
                    raise SettingsError(
                        f"--{split} {getattr(self, split)} is too small for --anomaly-fraction "
                        f"{self.fraction} and --per-game {self.per_game}: its {kind} positions "
                        f"({count}) must be at least one game's ({self.per_game}), as splits "
                        "take whole games"
                    )

    def _check_backdoor_sizes(self) -> None:
        if self.fraction + self.near_miss_fraction > 1:
            raise SettingsError("anomaly and near-miss fractions add up to more than 1")
        for split, size in (("pool", self.pool), ("test", self.test)):
            anomalous = int(round(size * self.fraction))
            near = int(round(size * self.near_miss_fraction))
            if anomalous < 1 or size - anomalous - near < 1:
                raise SettingsError(
                    f"--{split} {size} with --anomaly-fraction {self.fraction} has "
                    f"{anomalous} triggered and {size - anomalous - near} clean positions: "
                    "it needs at least one of each"
                )


@dataclasses.dataclass(frozen=True)
class RunSettings(Settings):
    """How detectors are fitted and evaluated on a task (``leelalab anomaly run``)."""

    detectors: tuple[str, ...] = setting(
        DEFAULT_DETECTORS, "detector names (see `leelalab anomaly detectors`)"
    )
    layers: tuple[str, ...] | None = setting(
        None,
        "layers: block numbers, input, policy, value (the heads' hidden layers), hook names "
        "or all (default: all)",
    )
    shrinkage: float = setting(
        0.0,
        "covariance shrinkage towards a scaled identity (Mahalanobis, QUE)",
        minimum=0,
        maximum=1,
    )
    squares: str = setting(
        "mean",
        "reduce per-square scores of activation detectors by their mean (cupbearer) or max",
        choices=("mean", "max"),
    )
    student_epochs: int = setting(
        30, "epochs of the student distilled on trusted positions", minimum=1
    )
    depth: int = setting(
        10, "Stockfish depth of the harm labels (0: no coverage-risk analysis)", minimum=0
    )
    stockfish: str | None = setting(
        None, "Stockfish binary (default: $LEELALAB_STOCKFISH, PATH, /usr/games)"
    )
    resamples: int = setting(1000, "bootstrap resamples of the intervals", minimum=1)
    seed: int = setting(0, "seed of the student, subsamples and bootstrap")

    def check(self) -> None:
        if not self.detectors:
            raise SettingsError("--detectors needs at least one detector")

    @property
    def harm_depth(self) -> int | None:
        return self.depth or None


@dataclasses.dataclass(frozen=True)
class BackdoorConfig(Settings):
    """How the backdoored network is built (``leelalab anomaly backdoor``): data, then the
    fine-tune. The command's defaults differ in ``learning_rate`` and ``trainable``."""

    clean: int = setting(24_000, "clean training positions", minimum=1)
    """Clean training positions (half alone, half with their self-play history)."""
    triggered: int = setting(3_000, "triggered training positions", minimum=1)
    near_miss: int = setting(3_000, "near-miss training positions", minimum=1)
    held_out_clean: int = setting(
        2_000, "held-out clean positions of each kind (alone, with history)", minimum=1
    )
    held_out_triggered: int = setting(1_000, "held-out triggered positions", minimum=1)
    held_out_near_miss: int = setting(1_000, "held-out near misses", minimum=1)
    epochs: int = setting(20, "fine-tuning epochs", minimum=1)
    batch_size: int = setting(128, "fine-tuning batch size", minimum=1)
    learning_rate: float = setting(
        1e-3, "Adam learning rate (cosine decay)", option="--lr", minimum=0, exclusive_minimum=True
    )
    trainable: str = setting(
        "policy_head",
        "what is fine-tuned",
        choices=("policy_channels", "policy_head", "last_block", "all"),
    )
    """What is fine-tuned: ``policy_head`` (body and value head frozen), ``last_block`` (the
    last residual block too), ``all``, or ``policy_channels`` (see ``channels``)."""
    channels: int = setting(
        1, "policy-head channels fine-tuned (--trainable policy_channels)", minimum=1
    )
    """With ``trainable="policy_channels"``: how many channels of the policy head's first
    convolution are fine-tuned (those whose removal changes clean top moves least)."""
    l2_sp: float = setting(0.0, "L2-SP weight on the change of the fine-tuned weights", minimum=0)
    min_ply: int = setting(12, "positions before this ply are skipped", minimum=0)
    """Positions before this ply are skipped: openings repeat across games."""
    selfplay_chunk: int = setting(16384, "self-play positions per chunk", minimum=1)
    games_in_parallel: int = setting(128, "self-play games in parallel", minimum=1)
    max_chunks: int = setting(64, "self-play chunks at most", minimum=1)
    seed: int = setting(0, "seed of self-play, data selection and shuffling")

    LIBRARY_ONLY = (
        "batch_size",
        "l2_sp",
        "min_ply",
        "selfplay_chunk",
        "games_in_parallel",
        "max_chunks",
    )
    """Fields without a command-line option."""


__all__ = ["DEFAULT_DETECTORS", "TASK_KINDS", "BackdoorConfig", "RunSettings", "TaskSettings"]
