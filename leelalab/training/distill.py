"""Distilling a small "weak" ResNet from a teacher network.

The puzzle filter needs a weak baseline that has *not* seen the puzzles: positions come
from the teacher's own sampled self-play (games from the start position, moves sampled
from the teacher's policy), never from puzzle files. The student, a small SE-free ResNet,
learns the teacher's legal-move distribution (cross-entropy) and W/D/L (cross-entropy),
and is exported with leelalab's lc0 writer, so lc0 itself can load it. A held-out split
of the self-play positions measures agreement with the teacher.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass

import chess
import numpy as np
import torch
from tqdm.auto import tqdm

from leelalab.lc0 import policy_map
from leelalab.lc0.weights import enums
from leelalab.lc0.weights.file import NetworkFormat, save_weights
from leelalab.models.base import LeelaNetwork
from leelalab.models.batch import PositionBatch
from leelalab.models.evaluation import run_network
from leelalab.models.resnet import ResNet, ResNetShape
from leelalab.runs.records import sha256_file, write_run_record
from leelalab.training.settings import DistillSettings

DistillConfig = DistillSettings
"""The distillation settings under their older name."""


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


def self_play_game_ids(boards: list[chess.Board], games_in_parallel: int) -> np.ndarray:
    """The game each position of :func:`self_play_positions` came from (ids 0, 1, … in order
    of each game's first position).

    The positions are laid out round by round, one per game slot (position ``k`` is slot
    ``k % games_in_parallel``), and a slot starts a new game from the start position when
    its game ends; the boards keep only the last moves, so the layout is what tells games
    apart. Raises ValueError when the boards are not in that layout (a position that neither
    starts a game nor follows its slot's previous position by one ply).
    """
    if games_in_parallel < 1:
        raise ValueError(f"games_in_parallel must be at least 1, not {games_in_parallel}")
    ids = np.empty(len(boards), dtype=np.int64)
    game_of_slot: dict[int, int] = {}
    ply_of_slot: dict[int, int] = {}
    games = 0
    for k, board in enumerate(boards):
        slot, ply = k % games_in_parallel, board.ply()
        if ply == 0:
            game_of_slot[slot], games = games, games + 1
        elif slot not in game_of_slot or ply != ply_of_slot[slot] + 1:
            raise ValueError(
                f"position {k + 1} (ply {ply}) does not continue its self-play game: not the "
                f"positions of self-play with {games_in_parallel} games in parallel"
            )
        ids[k] = game_of_slot[slot]
        ply_of_slot[slot] = ply
    return ids


def distillation_targets(
    teacher: LeelaNetwork, boards: list[chess.Board], batch: int = 256
) -> tuple[np.ndarray, ...]:
    """What a student learns from ``teacher`` on ``boards`` (``batch`` per forward pass):
    ``(planes, policy, mask, wdl)`` — the input planes (lc0 history), the teacher's
    legal-move distribution over the 1858 policy indices (0 off the legal moves), the
    legal-move mask and the teacher's W/D/L."""
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


_targets = distillation_targets
"""The older, private name of :func:`distillation_targets` (kept for existing imports)."""


def new_student(config: DistillConfig, input_format: int = 1) -> ResNet:
    network_format = NetworkFormat.build(
        input_format,
        enums.NetworkStructure.CLASSICAL_WITH_HEADFORMAT,
        enums.PolicyFormat.CONVOLUTION,
        wdl=True,
        moves_left=False,
        mish=False,
    )
    shape = ResNetShape(
        filters=config.filters, blocks=config.blocks, se_channels=0, value_channels=32,
        value_hidden=128,
    )  # fmt: skip
    return ResNet(network_format, shape)


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
    config: DistillSettings | None = None,
    *,
    progress: bool = True,
) -> DistillReport:
    """Distil ``teacher`` into a small ResNet written to ``output`` (+ ``run.json`` beside it)."""
    config = config or DistillSettings()
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
        torch.from_numpy(a) for a in distillation_targets(teacher, boards, config.batch_size)
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
    record = {
        "teacher": {"source": teacher.source, "sha256": teacher.sha256},
        "config": asdict(config),
        "report": asdict(report),
        "output_sha256": sha256_file(path),
        "torch": torch.__version__,
    }
    write_run_record(path, record, seconds=report.seconds)
    return report
