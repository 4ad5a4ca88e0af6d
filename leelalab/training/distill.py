"""Distilling a small "weak" ResNet from a teacher network.

The puzzle filter needs a weak baseline that has *not* seen the puzzles: positions come
from the teacher's own sampled self-play (games from the start position, moves sampled
from the teacher's policy), never from puzzle files. The student, a small SE-free ResNet,
learns the teacher's legal-move distribution (cross-entropy) and W/D/L (cross-entropy),
and is exported with leelalab's lc0 writer, so lc0 itself can load it. A held-out split
of the self-play positions measures agreement with the teacher.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import chess
import numpy as np
import torch
from tqdm.auto import tqdm

from leelalab.lc0 import policy_map
from leelalab.lc0.weights.enums import (
    DefaultActivation,
    InputFormat,
    MovesLeftFormat,
    NetworkStructure,
    OutputFormat,
    PolicyFormat,
    ValueFormat,
)
from leelalab.lc0.weights.file import NetworkFormat, save_weights
from leelalab.models.base import LeelaNetwork
from leelalab.models.batch import PositionBatch
from leelalab.models.evaluation import run_network
from leelalab.models.resnet import ResNet


@dataclass(frozen=True)
class DistillConfig:
    positions: int = 40_000
    """Self-play positions generated (a tenth is held out)."""
    games_in_parallel: int = 128
    max_plies: int = 160
    blocks: int = 2
    filters: int = 16
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 3e-3
    seed: int = 0


@dataclass
class DistillReport:
    train_positions: int
    held_out_positions: int
    top1_agreement: float
    """How often the student's top move is the teacher's, on held-out positions."""
    mean_teacher_prob_of_student_top: float
    policy_kl: float
    """Mean KL(teacher || student) over legal moves, held out."""
    wdl_mae: float
    loss_first_epoch: float
    loss_last_epoch: float
    seconds: float


def self_play_positions(
    teacher: LeelaNetwork,
    count: int,
    *,
    games_in_parallel: int = 128,
    max_plies: int = 160,
    seed: int = 0,
    progress: bool = True,
) -> list[chess.Board]:
    """Positions from the teacher's sampled self-play (temperature 1), with move history."""
    rng = np.random.default_rng(seed)
    input_format = int(teacher.network_format.input)
    positions: list[chess.Board] = []
    games = [chess.Board() for _ in range(games_in_parallel)]
    bar = tqdm(total=count, desc="self-play", unit="pos", disable=not progress)
    while len(positions) < count:
        batch = PositionBatch.encode(games, input_format)
        logits = run_network(teacher, batch.planes).policy_logits.float().cpu().numpy()
        probabilities = batch.probabilities(logits)
        for index, board in enumerate(games):
            positions.append(board.copy(stack=7))
            bar.update(1)
            moves = batch.moves[index]
            board.push(moves[int(rng.choice(len(moves), p=probabilities[index]))])
            if board.is_game_over(claim_draw=False) or board.ply() >= max_plies:
                games[index] = chess.Board()
    bar.close()
    return positions[:count]


def _targets(
    teacher: LeelaNetwork, boards: list[chess.Board], batch: int
) -> tuple[np.ndarray, ...]:
    input_format = int(teacher.network_format.input)
    planes_all, policy_all, mask_all, wdl_all = [], [], [], []
    for start in range(0, len(boards), batch):
        positions = PositionBatch.encode(boards[start : start + batch], input_format)
        output = run_network(teacher, positions.planes)
        logits = output.policy_logits.float().cpu().numpy()
        policy = np.zeros((len(positions), policy_map.NUM_MOVES), np.float32)
        for i, p in enumerate(positions.probabilities(logits)):
            policy[i, positions.indices[i]] = p
        planes_all.append(positions.planes)
        policy_all.append(policy)
        mask_all.append(positions.legal)
        wdl_all.append(output.wdl.float().cpu().numpy())
    return (
        np.concatenate(planes_all),
        np.concatenate(policy_all),
        np.concatenate(mask_all),
        np.concatenate(wdl_all),
    )


def new_student(config: DistillConfig, input_format: int = 1) -> ResNet:
    network_format = NetworkFormat(
        input=InputFormat(input_format),
        output=OutputFormat.WDL,
        network=NetworkStructure.CLASSICAL_WITH_HEADFORMAT,
        policy=PolicyFormat.CONVOLUTION,
        value=ValueFormat.WDL,
        moves_left=MovesLeftFormat.NONE,
        default_activation=DefaultActivation.RELU,
    )
    return ResNet(
        network_format,
        filters=config.filters,
        blocks=config.blocks,
        se_channels=0,
        policy_channels=0,
        value_channels=32,
        value_hidden=128,
        value_outputs=3,
        moves_left_channels=0,
        moves_left_hidden=0,
    )


def _losses(
    student: ResNet, planes, policy, mask, wdl
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    output = student(planes)
    logits = output.policy_logits.masked_fill(~mask, float("-inf"))
    log_probs = torch.log_softmax(logits, dim=1).masked_fill(~mask, 0.0)
    policy_loss = -(policy * log_probs).sum(1).mean()
    value_loss = -(wdl * torch.log(output.wdl.clamp_min(1e-7))).sum(1).mean()
    return policy_loss + value_loss, log_probs, output.wdl


def distill(
    teacher: LeelaNetwork,
    output: str | os.PathLike[str],
    config: DistillConfig = DistillConfig(),
    *,
    progress: bool = True,
) -> DistillReport:
    """Distil ``teacher`` into a small ResNet written to ``output`` (+ ``run.json`` beside it)."""
    started = time.perf_counter()
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    boards = self_play_positions(
        teacher,
        config.positions,
        games_in_parallel=config.games_in_parallel,
        max_plies=config.max_plies,
        seed=config.seed,
        progress=progress,
    )
    planes, policy, mask, wdl = (
        torch.from_numpy(a) for a in _targets(teacher, boards, config.batch_size)
    )
    order = torch.randperm(len(boards), generator=torch.Generator().manual_seed(config.seed))
    held = order[: len(boards) // 10]
    train = order[len(boards) // 10 :]
    student = new_student(config, int(teacher.network_format.input)).train()
    optimizer = torch.optim.Adam(student.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs)
    epoch_losses = []
    generator = torch.Generator().manual_seed(config.seed + 1)
    for _ in tqdm(range(config.epochs), desc="distil", unit="epoch", disable=not progress):
        shuffled = train[torch.randperm(len(train), generator=generator)]
        total, batches = 0.0, 0
        for start in range(0, len(shuffled), config.batch_size):
            index = shuffled[start : start + config.batch_size]
            loss, _, _ = _losses(student, planes[index], policy[index], mask[index], wdl[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            batches += 1
        schedule.step()
        epoch_losses.append(total / batches)
    student.eval()
    with torch.no_grad():
        _, log_probs, student_wdl = _losses(
            student, planes[held], policy[held], mask[held], wdl[held]
        )
        teacher_policy = policy[held]
        student_top = log_probs.masked_fill(~mask[held], float("-inf")).argmax(1)
        agreement = (student_top == teacher_policy.argmax(1)).float().mean()
        teacher_log = torch.log(teacher_policy.clamp_min(1e-12))
        kl = (teacher_policy * (teacher_log - log_probs)).masked_fill(~mask[held], 0).sum(1).mean()
        report = DistillReport(
            train_positions=len(train),
            held_out_positions=len(held),
            top1_agreement=float(agreement),
            mean_teacher_prob_of_student_top=float(
                teacher_policy.gather(1, student_top[:, None]).mean()
            ),
            policy_kl=float(kl),
            wdl_mae=float((student_wdl - wdl[held]).abs().mean()),
            loss_first_epoch=epoch_losses[0],
            loss_last_epoch=epoch_losses[-1],
            seconds=round(time.perf_counter() - started, 1),
        )
    path = save_weights(student.to_lc0(), output)
    run = {
        "teacher": {"source": teacher.source, "sha256": teacher.sha256},
        "config": asdict(config),
        "report": asdict(report),
        "output_sha256": __import__("hashlib").sha256(path.read_bytes()).hexdigest(),
        "torch": torch.__version__,
    }
    Path(str(path) + ".run.json").write_text(json.dumps(run, indent=2))
    return report
