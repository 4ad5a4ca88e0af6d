"""``leelalab train``: a student network learns a teacher's policy and W/D/L from self-play.

Each epoch: the teacher's self-play adds ``positions_per_epoch`` fresh positions to a
bounded buffer (the first epoch fills it), the student takes ``steps_per_epoch`` AdamW steps
on batches drawn from the buffer, and is then measured on held-out positions — from games of
a separate self-play stream — against the teacher (top-1 agreement, KL, W/D/L error). A
checkpoint (safetensors + JSON, never pickles) is written after every epoch, so a killed run
resumes from its last epoch and ends with the same weights as an uninterrupted one (on the
same device and thread count).

Losses: policy cross-entropy against the teacher's legal-move distribution (its KL plus the
teacher's entropy), W/D/L cross-entropy, and for students with a moves-left head a Huber loss
on the plies the self-play game actually lasted. The learning rate warms up linearly, then
follows a cosine to ``final_learning_rate``.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from leelalab.errors import LeelaLabError
from leelalab.lc0.weights.file import save_weights
from leelalab.models.base import LeelaNetwork
from leelalab.runs.records import write_run_record
from leelalab.runs.results import sha256_file, write_text_atomically
from leelalab.stats import proportion_ci
from leelalab.training.data import (
    Batch,
    Position,
    ReplayBuffer,
    SelfPlay,
    SelfPlaySettings,
    dumps_compact,
    make_batch,
    position_hashes,
    positions_from_arrays,
    positions_to_arrays,
)
from leelalab.training.students import StudentConfig, describe_student, new_student

CHECKPOINT_TENSORS = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"
VALIDATION_FILE = "validation.safetensors"
VALIDATION_STATE = "validation.json"


class TrainingError(LeelaLabError):
    """Bad training settings, or a checkpoint that does not belong to this run."""


@dataclass(frozen=True)
class TrainConfig:
    student: StudentConfig = field(default_factory=StudentConfig)
    epochs: int = 30
    steps_per_epoch: int = 100
    batch_size: int = 128
    buffer_size: int = 32_768
    """Positions the buffer holds; the first epoch fills it."""
    positions_per_epoch: int = 4_096
    """Fresh self-play positions added before each later epoch."""
    validation_positions: int = 4_096
    games_in_parallel: int = 128
    max_plies: int = 200
    random_plies: int = 2
    opening_plies: int = 10
    opening_temperature: float = 1.5
    sample_rate: float = 0.5
    learning_rate: float = 1e-3
    final_learning_rate: float = 5e-5
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    gradient_clip: float = 10.0
    value_weight: float = 1.0
    moves_left_weight: float = 0.05
    seed: int = 0

    def validate(self) -> None:
        self.student.validate()
        positive = [
            "epochs",
            "steps_per_epoch",
            "batch_size",
            "buffer_size",
            "positions_per_epoch",
            "validation_positions",
            "games_in_parallel",
            "max_plies",
        ]
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise TrainingError(f"{name} must be a positive integer, got {value!r}")
        if self.batch_size > self.buffer_size:
            raise TrainingError(
                f"batch_size {self.batch_size} is larger than buffer_size {self.buffer_size}"
            )
        if not 0 < self.sample_rate <= 1:
            raise TrainingError(f"sample_rate must be in (0, 1], got {self.sample_rate}")
        if self.opening_temperature <= 0:
            raise TrainingError("opening_temperature must be positive")
        for name in ("learning_rate", "final_learning_rate"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise TrainingError(f"{name} must be a positive number, got {value}")
        if self.random_plies < 0 or self.opening_plies < 0 or self.warmup_steps < 0:
            raise TrainingError("random_plies, opening_plies and warmup_steps must be >= 0")

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def selfplay(self, sample_rate: float | None = None) -> SelfPlaySettings:
        return SelfPlaySettings(
            games_in_parallel=self.games_in_parallel,
            max_plies=self.max_plies,
            random_plies=self.random_plies,
            opening_plies=self.opening_plies,
            opening_temperature=self.opening_temperature,
            sample_rate=self.sample_rate if sample_rate is None else sample_rate,
        )

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["student"] = self.student.to_dict()
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> TrainConfig:
        values = dict(record)
        values["student"] = StudentConfig.from_dict(values["student"])
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise TrainingError(f"unknown training settings: {', '.join(sorted(unknown))}")
        return cls(**values)

    def learning_rate_at(self, step: int) -> float:
        """Linear warm-up to ``learning_rate``, then a cosine to ``final_learning_rate``."""
        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return self.final_learning_rate + (self.learning_rate - self.final_learning_rate) * cosine


@dataclass
class Losses:
    total: torch.Tensor
    policy: torch.Tensor
    value: torch.Tensor
    moves_left: torch.Tensor | None
    log_probabilities: torch.Tensor
    wdl: torch.Tensor


def compute_losses(student: LeelaNetwork, batch: Batch, config: TrainConfig) -> Losses:
    output = student(batch.planes)
    logits = output.policy_logits.masked_fill(~batch.legal, float("-inf"))
    log_probabilities = torch.log_softmax(logits, dim=1).masked_fill(~batch.legal, 0.0)
    policy = -(batch.policy * log_probabilities).sum(1).mean()
    value = -(batch.wdl * torch.log(output.wdl.clamp_min(1e-7))).sum(1).mean()
    total = policy + config.value_weight * value
    moves_left = None
    if output.moves_left is not None:
        known = torch.isfinite(batch.moves_left)
        if bool(known.any()):
            moves_left = (
                F.huber_loss(output.moves_left[known], batch.moves_left[known], delta=10.0) / 10.0
            )
            total = total + config.moves_left_weight * moves_left
    return Losses(total, policy, value, moves_left, log_probabilities, output.wdl)


@dataclass
class Agreement:
    """A student measured against its teacher on held-out positions."""

    positions: int
    top1_agreement: float
    top1_ci95: tuple[float, float]
    mean_teacher_prob_of_student_top: float
    policy_kl: float
    """Mean KL(teacher ‖ student) over legal moves, nats."""
    policy_cross_entropy: float
    wdl_mae: float
    """Mean |student − teacher| over the three W/D/L probabilities."""
    moves_left_mae: float | None = None


def measure_agreement(
    student: LeelaNetwork,
    positions: list[Position],
    input_format: int,
    *,
    batch_size: int = 512,
) -> Agreement:
    """Top-1 agreement, KL and W/D/L error of ``student`` against the stored teacher targets."""
    device = student.device
    was_training = student.training
    student.eval()
    agree = 0
    teacher_prob = kl = cross_entropy = wdl_error = 0.0
    moves_left_error, moves_left_count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(positions), batch_size):
            batch = make_batch(positions[start : start + batch_size], input_format, device)
            output = student(batch.planes)
            logits = output.policy_logits.masked_fill(~batch.legal, float("-inf"))
            log_probabilities = torch.log_softmax(logits, dim=1).masked_fill(~batch.legal, 0.0)
            student_top = logits.argmax(1)
            teacher_top = batch.policy.argmax(1)
            agree += int((student_top == teacher_top).sum())
            teacher_prob += float(batch.policy.gather(1, student_top[:, None]).sum())
            teacher_log = torch.log(batch.policy.clamp_min(1e-12))
            kl += float(
                (batch.policy * (teacher_log - log_probabilities))
                .masked_fill(~batch.legal, 0)
                .sum()
            )
            cross_entropy += float(-(batch.policy * log_probabilities).sum())
            wdl_error += float((output.wdl - batch.wdl).abs().mean(1).sum())
            if output.moves_left is not None:
                known = torch.isfinite(batch.moves_left)
                moves_left_error += float(
                    (output.moves_left[known] - batch.moves_left[known]).abs().sum()
                )
                moves_left_count += int(known.sum())
    student.train(was_training)
    n = len(positions)
    interval = proportion_ci(agree, n)
    return Agreement(
        positions=n,
        top1_agreement=agree / n,
        top1_ci95=(float(interval.low), float(interval.high)),
        mean_teacher_prob_of_student_top=teacher_prob / n,
        policy_kl=kl / n,
        policy_cross_entropy=cross_entropy / n,
        wdl_mae=wdl_error / n,
        moves_left_mae=moves_left_error / moves_left_count if moves_left_count else None,
    )


@dataclass
class TrainReport:
    output: str
    epochs: int
    steps: int
    train_positions_generated: int
    held_out: Agreement
    held_out_unseen: Agreement | None
    """The held-out positions whose board never occurred among the training positions."""
    held_out_seen_in_training: int
    history: list[dict[str, Any]]
    seconds: float
    resumed: bool


EpochCallback = Callable[[dict[str, Any]], None]


class _Checkpoint:
    """One directory: the latest epoch's state (atomically replaced) and the held-out set."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def exists(self) -> bool:
        return (self.directory / CHECKPOINT_STATE).is_file()

    def remove(self) -> None:
        """Delete the checkpoint's files (``--overwrite``); other files in the folder stay."""
        for name in CHECKPOINT_FILES:
            for path in (self.directory / name, self.directory / f"{name}.tmp"):
                path.unlink(missing_ok=True)

    def read_state(self) -> dict[str, Any]:
        import json

        path = self.directory / CHECKPOINT_STATE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise TrainingError(f"{path}: unreadable checkpoint ({error})") from None

    def read_tensors(self, state: dict[str, Any]) -> dict[str, np.ndarray]:
        path = self.directory / CHECKPOINT_TENSORS
        if not path.is_file() or sha256_file(path) != state.get("tensors_sha256"):
            raise TrainingError(
                f"{path}: missing or does not match {CHECKPOINT_STATE}; pass --overwrite to "
                "start again"
            )
        return load_file(str(path))

    def write(self, arrays: dict[str, np.ndarray], state: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tensors = self.directory / CHECKPOINT_TENSORS
        temporary = tensors.with_name(tensors.name + ".tmp")
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(temporary))
        state = {**state, "tensors_sha256": sha256_file(temporary)}
        # The JSON names the tensors' hash, so a kill between the two renames is detected.
        temporary.replace(tensors)
        write_text_atomically(self.directory / CHECKPOINT_STATE, dumps_compact(state))

    def read_validation(self) -> list[Position] | None:
        import json

        tensors = self.directory / VALIDATION_FILE
        record = self.directory / VALIDATION_STATE
        if not (tensors.is_file() and record.is_file()):
            return None
        try:
            boards = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise TrainingError(
                f"{record}: unreadable held-out positions ({error}); pass --overwrite to start "
                "again"
            ) from None
        return positions_from_arrays(load_file(str(tensors)), boards)

    def write_validation(self, positions: list[Position]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        arrays, boards = positions_to_arrays(positions)
        tensors = self.directory / VALIDATION_FILE
        save_file(arrays, str(tensors) + ".tmp")
        Path(str(tensors) + ".tmp").replace(tensors)
        write_text_atomically(self.directory / VALIDATION_STATE, dumps_compact(boards))


def _model_arrays(student: LeelaNetwork) -> dict[str, np.ndarray]:
    return {
        f"model.{name}": tensor.detach().cpu().numpy()
        for name, tensor in student.state_dict().items()
    }


def _optimizer_arrays(optimizer: torch.optim.Optimizer) -> tuple[dict[str, np.ndarray], Any]:
    state = optimizer.state_dict()
    arrays = {}
    for index, values in state["state"].items():
        for name, tensor in values.items():
            arrays[f"optimizer.{index}.{name}"] = (
                tensor.detach().cpu().numpy().reshape(tensor.shape)
            )
    return arrays, state["param_groups"]


def _load_optimizer(
    optimizer: torch.optim.Optimizer, arrays: dict[str, np.ndarray], groups: Any
) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in arrays.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = torch.from_numpy(value.copy())
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _generator_state(generator: torch.Generator) -> np.ndarray:
    return generator.get_state().numpy().copy()


ResumeCallback = Callable[[int, int], None]
"""Called with (epochs done, epochs) when a run resumes from its checkpoint."""

CHECKPOINT_FILES = (CHECKPOINT_TENSORS, CHECKPOINT_STATE, VALIDATION_FILE, VALIDATION_STATE)


@dataclass
class _Session:
    """Everything one training run carries from epoch to epoch (and through a checkpoint)."""

    student: LeelaNetwork
    optimizer: torch.optim.Optimizer
    stream: SelfPlay
    buffer: ReplayBuffer
    order: torch.Generator
    input_format: int
    device: torch.device
    seen_hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    epoch: int = 0
    step: int = 0
    generated: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def train(
    teacher: LeelaNetwork,
    output: str | os.PathLike[str],
    config: TrainConfig = TrainConfig(),
    *,
    checkpoints: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
    on_resume: ResumeCallback | None = None,
) -> TrainReport:
    """Train a student of ``config.student`` from ``teacher``; write it to ``output``.

    Writes ``output`` (an lc0 ``.pb.gz``, LINEAR16) and ``output + ".run.json"``; keeps
    resumable state in ``checkpoints`` (default ``output + ".checkpoints"``). A run whose
    checkpoint has the same settings and teacher resumes (``on_resume(epochs done,
    epochs)`` is told); other settings need ``overwrite``, which removes the checkpoint's
    files only (anything else in that folder stays).
    """
    config.validate()
    started = time.perf_counter()
    output = Path(output)
    directory = Path(checkpoints) if checkpoints is not None else Path(f"{output}.checkpoints")
    checkpoint = _Checkpoint(directory)
    identity = {"config": config.to_dict(), "teacher_sha256": teacher.sha256}
    if overwrite:
        checkpoint.remove()
    state = _matching_state(checkpoint, identity)
    session = _new_session(teacher, config, torch.device(device))
    validation = _validation_positions(teacher, config, checkpoint, progress)
    if state is not None:
        _restore(session, checkpoint, state)
        if on_resume is not None:
            on_resume(session.epoch, config.epochs)
    session.student.train()
    while session.epoch < config.epochs:
        record = _train_epoch(session, config, validation, progress)
        _save_checkpoint(session, checkpoint, identity)
        if on_epoch is not None:
            on_epoch(record)
    return _finish(session, teacher, output, config, validation, started, resumed=state is not None)


def _matching_state(checkpoint: _Checkpoint, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint's state when it belongs to this run; None when there is none."""
    if not checkpoint.exists:
        return None
    state = checkpoint.read_state()
    if state.get("identity") != identity:
        raise TrainingError(
            f"{checkpoint.directory} holds a checkpoint of a run with other settings or "
            "another teacher; pass --overwrite to discard it, or another --checkpoints directory"
        )
    return state


def _new_session(teacher: LeelaNetwork, config: TrainConfig, device: torch.device) -> _Session:
    input_format = int(teacher.network_format.input)
    torch.manual_seed(config.seed)
    student = new_student(config.student, input_format, seed=config.seed).to(device)
    optimizer = torch.optim.AdamW(
        student.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    stream = SelfPlay(teacher, config.selfplay(), seed=[config.seed, 0])
    buffer = ReplayBuffer(config.buffer_size)
    order = torch.Generator().manual_seed(config.seed + 1)
    return _Session(student, optimizer, stream, buffer, order, input_format, device)


def _validation_positions(
    teacher: LeelaNetwork, config: TrainConfig, checkpoint: _Checkpoint, progress: bool
) -> list[Position]:
    """The held-out positions: the checkpoint's, or generated (and saved) once."""
    validation = checkpoint.read_validation()
    if validation is None or len(validation) != config.validation_positions:
        # Its own games (another seed), a sparser sample: each game gives fewer positions.
        held_stream = SelfPlay(teacher, config.selfplay(sample_rate=0.25), seed=[config.seed, 1])
        validation = held_stream.generate(
            config.validation_positions, progress=progress, desc="held-out self-play"
        )
        checkpoint.write_validation(validation)
    return validation


def _restore(session: _Session, checkpoint: _Checkpoint, state: dict[str, Any]) -> None:
    """Continue from the checkpoint: weights, optimiser, self-play, buffer, counters."""
    arrays = checkpoint.read_tensors(state)
    session.student.load_state_dict(
        {
            key.removeprefix("model."): torch.from_numpy(value.copy())
            for key, value in arrays.items()
            if key.startswith("model.")
        }
    )
    _load_optimizer(session.optimizer, arrays, state["optimizer_groups"])
    session.stream.load_state(arrays, state["selfplay"])
    session.buffer.load_state(arrays, state["buffer"])
    session.order.set_state(torch.from_numpy(arrays["order_generator"].copy()))
    session.seen_hashes = arrays["seen_hashes"]
    session.epoch, session.step = state["epoch"], state["step"]
    session.generated, session.history = state["generated"], state["history"]


def _train_epoch(
    session: _Session, config: TrainConfig, validation: list[Position], progress: bool
) -> dict[str, Any]:
    """One epoch: fresh self-play into the buffer, the optimiser steps, the held-out
    measurement; returns (and appends to the history) the epoch's record."""
    epoch_started = time.perf_counter()
    wanted = config.buffer_size if session.epoch == 0 else config.positions_per_epoch
    fresh = session.stream.generate(
        wanted, progress=progress, desc=f"self-play {session.epoch + 1}"
    )
    session.generated += len(fresh)
    session.seen_hashes = np.concatenate([session.seen_hashes, position_hashes(fresh)])
    session.buffer.add(fresh)
    generation_seconds = time.perf_counter() - epoch_started
    train_started = time.perf_counter()
    totals = _optimiser_steps(session, config, progress)
    train_seconds = time.perf_counter() - train_started
    held = measure_agreement(session.student, validation, session.input_format)
    session.epoch += 1
    record = {
        "epoch": session.epoch,
        "step": session.step,
        "learning_rate": config.learning_rate_at(session.step - 1),
        **{f"train_{k}": v / config.steps_per_epoch for k, v in totals.items()},
        "held_out_top1": held.top1_agreement,
        "held_out_kl": held.policy_kl,
        "held_out_wdl_mae": held.wdl_mae,
        "held_out_moves_left_mae": held.moves_left_mae,
        "positions_generated": session.generated,
        "generation_seconds": round(generation_seconds, 2),
        "train_seconds": round(train_seconds, 2),
        "train_positions_per_second": round(
            config.steps_per_epoch * config.batch_size / train_seconds, 1
        ),
    }
    session.history.append(record)
    return record


def _optimiser_steps(session: _Session, config: TrainConfig, progress: bool) -> dict[str, float]:
    """``steps_per_epoch`` AdamW steps on batches from the buffer; summed losses."""
    totals = {"loss": 0.0, "policy": 0.0, "value": 0.0, "moves_left": 0.0}
    bar = tqdm(
        total=config.steps_per_epoch,
        desc=f"epoch {session.epoch + 1}/{config.epochs}",
        unit="step",
        disable=not progress,
        leave=False,
    )
    student, optimizer = session.student, session.optimizer
    for positions in session.buffer.batches(
        config.steps_per_epoch, config.batch_size, session.order
    ):
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate_at(session.step)
        batch = make_batch(positions, session.input_format, session.device)
        losses = compute_losses(student, batch, config)
        if not torch.isfinite(losses.total):
            raise TrainingError(
                f"the loss became {float(losses.total)} at step {session.step}; lower the "
                "learning rate"
            )
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), config.gradient_clip)
        optimizer.step()
        session.step += 1
        totals["loss"] += float(losses.total.detach())
        totals["policy"] += float(losses.policy.detach())
        totals["value"] += float(losses.value.detach())
        if losses.moves_left is not None:
            totals["moves_left"] += float(losses.moves_left.detach())
        bar.update(1)
        bar.set_postfix(loss=f"{float(losses.total.detach()):.3f}")
    bar.close()
    return totals


def _save_checkpoint(session: _Session, checkpoint: _Checkpoint, identity: dict[str, Any]) -> None:
    arrays = _model_arrays(session.student)
    optimizer_arrays, groups = _optimizer_arrays(session.optimizer)
    arrays.update(optimizer_arrays)
    stream_arrays, stream_record = session.stream.state()
    buffer_arrays, buffer_record = session.buffer.state()
    arrays.update(stream_arrays)
    arrays.update(buffer_arrays)
    arrays["order_generator"] = _generator_state(session.order)
    arrays["seen_hashes"] = session.seen_hashes
    checkpoint.write(
        arrays,
        {
            "identity": identity,
            "input_format": session.input_format,
            "epoch": session.epoch,
            "step": session.step,
            "generated": session.generated,
            "history": session.history,
            "optimizer_groups": groups,
            "selfplay": stream_record,
            "buffer": buffer_record,
        },
    )


def _finish(
    session: _Session,
    teacher: LeelaNetwork,
    output: Path,
    config: TrainConfig,
    validation: list[Position],
    started: float,
    *,
    resumed: bool,
) -> TrainReport:
    """Measure the trained student, write it and its run record."""
    student, input_format = session.student, session.input_format
    student.eval()
    held = measure_agreement(student, validation, input_format)
    seen = np.isin(position_hashes(validation), session.seen_hashes)
    unseen = [p for p, s in zip(validation, seen, strict=True) if not s]
    held_unseen = measure_agreement(student, unseen, input_format) if unseen else None
    output.parent.mkdir(parents=True, exist_ok=True)
    path = save_weights(student.to_lc0(), output)
    seconds = time.perf_counter() - started
    report = TrainReport(
        output=str(path),
        epochs=session.epoch,
        steps=session.step,
        train_positions_generated=session.generated,
        held_out=held,
        held_out_unseen=held_unseen,
        held_out_seen_in_training=int(seen.sum()),
        history=session.history,
        seconds=round(seconds, 1),
        resumed=resumed,
    )
    record = {
        "command": "leelalab train",
        "teacher": {"source": teacher.source, "sha256": teacher.sha256},
        "config": config.to_dict(),
        "student": describe_student(student),
        "report": asdict(report),
        "output_sha256": sha256_file(path),
        "hardware": {
            "device": str(session.device),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "training_seconds_total": round(
            sum(h["generation_seconds"] + h["train_seconds"] for h in session.history), 1
        ),
    }
    write_run_record(path, record, seconds=seconds)
    return report


def load_checkpoint_student(directory: str | os.PathLike[str]) -> tuple[LeelaNetwork, dict]:
    """The student (float32, eval mode) and the state JSON of a run's latest checkpoint."""
    checkpoint = _Checkpoint(Path(directory))
    if not checkpoint.exists:
        raise TrainingError(f"{directory}: no training checkpoint ({CHECKPOINT_STATE}) there")
    state = checkpoint.read_state()
    config = TrainConfig.from_dict(state["identity"]["config"])
    arrays = checkpoint.read_tensors(state)
    input_format = int(state.get("input_format", 1))
    student = new_student(config.student, input_format, seed=config.seed)
    student.load_state_dict(
        {
            key.removeprefix("model."): torch.from_numpy(value.copy())
            for key, value in arrays.items()
            if key.startswith("model.")
        }
    )
    return student.eval(), state


def export_checkpoint(directory: str | os.PathLike[str], output: str | os.PathLike[str]) -> Path:
    """Write the latest checkpoint's student as an lc0 file (to look at a run in progress)."""
    student, _ = load_checkpoint_student(directory)
    return save_weights(student.to_lc0(), output)


__all__ = [
    "Agreement",
    "export_checkpoint",
    "load_checkpoint_student",
    "TrainConfig",
    "TrainReport",
    "TrainingError",
    "compute_losses",
    "measure_agreement",
    "train",
]
