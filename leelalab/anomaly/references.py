"""Reference networks' outputs on a task, compared with the network under study.

For every position: ``kl`` = KL(π_M ‖ π_m) over the legal moves, ``dq`` = |Q_M − Q_m|,
``q`` = Q_m, ``top`` = m's most likely move (UCI). M's outputs come from the feature file;
m runs once per position, in resumable chunks (``TASK/references/<name>/``), with a
``run.json`` beside the merged ``outputs.h5``.

The *student* reference is distilled from M on the task's trusted positions only
(:func:`distil_student`): the same small ResNet as the shipped weak network (the shared
``new_student`` of :mod:`leelalab.training.distill`), trained on M's legal-move
distribution and W/D/L for those positions (a tenth held out to report agreement).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from leelalab.anomaly.errors import AnomalyError
from leelalab.anomaly.features import FeatureStore, task_sha256
from leelalab.anomaly.positions import Task
from leelalab.lc0 import policy_map
from leelalab.lc0.weights.file import save_weights
from leelalab.models.base import LeelaNetwork
from leelalab.models.batch import PositionBatch, legal_kl, legal_log_softmax
from leelalab.models.evaluation import run_network
from leelalab.runs.experiment import Settings, setting
from leelalab.runs.records import read_run_record, write_run_record
from leelalab.runs.results import (
    ChunkPlan,
    read_h5,
    run_in_chunks,
    sha256_file,
)
from leelalab.training.distill import DistillConfig, new_student
from leelalab.training.distill import distillation_targets as _targets


def _reference_chunk(
    store: FeatureStore, task: Task, reference: LeelaNetwork, rows: list[int]
) -> dict[str, Any]:
    index = np.asarray(rows, dtype=np.int64)
    logits_m = torch.from_numpy(store.read("outputs/policy_logits", index))
    packed = store.read("outputs/legal", index)
    legal = torch.from_numpy(np.unpackbits(packed, axis=1)[:, : policy_map.NUM_MOVES].astype(bool))
    wdl_m = store.read("outputs/wdl", index)
    positions = PositionBatch.encode(task.boards(rows), int(reference.network_format.input))
    output = run_network(reference, positions.planes)
    log_p = legal_log_softmax(logits_m, legal)
    log_q = legal_log_softmax(output.policy_logits.float().cpu(), legal)
    best = log_q.argmax(1).tolist()
    tops = [positions.move_at(row, index).uci() for row, index in enumerate(best)]
    wdl = output.wdl.float().cpu().numpy()
    q_m, q = wdl_m[:, 0] - wdl_m[:, 2], wdl[:, 0] - wdl[:, 2]
    return {
        # Clamped: a score of 0 for an unchanged policy, never a rounding −1e-9.
        "kl": legal_kl(log_p, log_q, legal).clamp_min(0.0).numpy().astype(np.float64),
        "dq": np.abs(q_m - q).astype(np.float64),
        "q": q.astype(np.float64),
        "top": tops,
    }


def reference_outputs(
    task: Task,
    features: str | os.PathLike[str],
    reference: LeelaNetwork,
    name: str,
    *,
    chunk_size: int = 1024,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Compute (or reuse) ``name``'s outputs on every position of ``task``."""
    store = FeatureStore(features)
    if not store.has_outputs:
        raise AnomalyError(f"{store.path} has no network outputs to compare with")
    output = task.directory / "references" / name
    settings = {
        "reference": reference.source,
        "reference_sha256": reference.sha256,
        "network_sha256": store.settings.get("network_sha256"),
        "task_sha256": task_sha256(task),
    }
    path = run_in_chunks(
        list(range(len(task.positions))),
        output,
        settings,
        lambda rows: _reference_chunk(store, task, reference, rows),
        ChunkPlan(
            results_file="outputs.h5",
            attrs={"settings": json.dumps(settings)},
            chunk_size=chunk_size,
            description=f"reference {name}",
        ),
        progress=progress,
    )
    arrays, _ = read_h5(path)
    return arrays


@dataclass(frozen=True)
class StudentSettings(Settings):
    """How the task's student is distilled. Its shape is the shipped weak network's (a
    ResNet of ``blocks`` × ``filters``, :func:`leelalab.training.distill.new_student`); the
    lab's general student shapes are :class:`leelalab.training.students.StudentConfig`."""

    blocks: int = setting(2, "residual blocks of the student", minimum=1)
    filters: int = setting(16, "filters of the student", minimum=1)
    epochs: int = setting(30, "epochs of the student distilled on trusted positions", minimum=1)
    batch_size: int = setting(256, "student training batch size", minimum=1)
    learning_rate: float = setting(3e-3, "student Adam learning rate (cosine decay)",
                                   minimum=0, exclusive_minimum=True)  # fmt: skip
    seed: int = setting(0, "seed of the student's initialisation and shuffling")


def distil_student(
    network: LeelaNetwork,
    task: Task,
    output: str | os.PathLike[str] | None = None,
    config: StudentSettings = StudentSettings(),
    *,
    progress: bool = True,
) -> Path:
    """Distil a small student from ``network`` on the task's trusted positions only (or
    reuse one distilled with the same settings). Writes ``output`` (default
    ``TASK/student.pb.gz``) and its ``.run.json``."""
    started = time.perf_counter()
    path = Path(output) if output is not None else task.directory / "student.pb.gz"
    run_path = Path(str(path) + ".run.json")
    settings = {
        "teacher": network.source,
        "teacher_sha256": network.sha256,
        "task_sha256": task_sha256(task),
        "trusted_positions": int(task.indices("trusted").size),
        "config": asdict(config),
    }
    if path.is_file() and run_path.is_file():
        stored = read_run_record(path)
        if all(stored.get(k) == v for k, v in settings.items() if k != "teacher"):
            return path
        raise AnomalyError(f"{path} is a student of other settings; delete it to re-distil")
    torch.manual_seed(config.seed)
    boards = task.boards(task.indices("trusted"))
    if len(boards) < 20:
        raise AnomalyError(
            f"{task.directory}: {len(boards)} trusted positions cannot train a student"
        )
    planes, policy, mask, wdl = (torch.from_numpy(a) for a in _targets(network, boards, 256))
    order = torch.randperm(len(boards), generator=torch.Generator().manual_seed(config.seed))
    held, train = order[: len(boards) // 10], order[len(boards) // 10 :]
    distill_config = DistillConfig(blocks=config.blocks, filters=config.filters)
    student = new_student(distill_config, int(network.network_format.input)).train()
    optimizer = torch.optim.Adam(student.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs)
    generator = torch.Generator().manual_seed(config.seed + 1)
    losses = []

    def loss_of(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = student(planes[index])
        legal = mask[index]
        log_probs = legal_log_softmax(out.policy_logits, legal)
        # Cross-entropy over the legal moves (0 · −inf would be NaN on the illegal ones).
        cross = torch.where(legal, policy[index] * log_probs, torch.zeros_like(log_probs))
        policy_loss = -cross.sum(1).mean()
        value_loss = -(wdl[index] * torch.log(out.wdl.clamp_min(1e-7))).sum(1).mean()
        return policy_loss + value_loss, log_probs, out.wdl

    for _ in tqdm(range(config.epochs), desc="student", unit="epoch", disable=not progress):
        shuffled = train[torch.randperm(len(train), generator=generator)]
        total, batches = 0.0, 0
        for start in range(0, len(shuffled), config.batch_size):
            loss, _, _ = loss_of(shuffled[start : start + config.batch_size])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, batches = total + float(loss.detach()), batches + 1
        schedule.step()
        losses.append(total / batches)
    student.eval()
    with torch.no_grad():
        _, log_probs, student_wdl = loss_of(held)
        top = log_probs.masked_fill(~mask[held], float("-inf")).argmax(1)
        agreement = float((top == policy[held].argmax(1)).float().mean()) if len(held) else None
        wdl_error = float((student_wdl - wdl[held]).abs().mean()) if len(held) else None
    save_weights(student.to_lc0(), path)
    write_run_record(
        path,
        settings,
        started=started,
        train_positions=len(train),
        held_out_positions=len(held),
        held_out_top1_agreement=agreement,
        held_out_wdl_mean_abs_error=wdl_error,
        losses=losses,
        output_sha256=sha256_file(path),
    )
    return path


__all__ = ["StudentSettings", "distil_student", "reference_outputs"]
