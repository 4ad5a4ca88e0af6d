"""Training throughput: the trainer's step against a plain forward+backward, in one run.

Peers, timed in interleaved rounds on the same positions (median of the rounds reported):

- ``plain forward+backward``: ``student(planes)``, a scalar of its outputs, ``backward()``;
  inputs and targets ready as tensors (the floor of any training step);
- ``trainer step``: what ``leelalab train`` does per step: build the batch from stored
  positions (encode the boards, scatter the sparse teacher policies), the losses, backward,
  gradient clipping and the AdamW update;
- ``trainer step, MKL linears`` (attention bodies): the same step with plain ``nn.Linear``
  layers (MKL's float32 products) instead of oneDNN's (:class:`InferenceLinear`);
- ``teacher self-play``: positions/s that the teacher's self-play evaluates (each game
  advanced one ply per teacher forward; with ``sample_rate`` r, r of them enter the buffer),
  the data side of an epoch.

Usage: ``python scripts/bench_train.py [--layers 6 --d-model 128 ...] [--threads 1]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from leelalab.inference.networks import load_network
from leelalab.models.base import InferenceLinear
from leelalab.training.data import SelfPlay, SelfPlaySettings, make_batch
from leelalab.training.students import StudentConfig, new_student
from leelalab.training.trainer import TrainConfig, compute_losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="maia-1900")
    parser.add_argument("--family", default="transformer")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--ffn-size", type=int, default=256)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4, help="steps per round and peer")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    teacher = load_network(args.teacher)
    student_config = StudentConfig(
        family=args.family,
        layers=args.layers,
        d_model=args.d_model,
        heads=args.heads,
        ffn_size=args.ffn_size,
        policy_size=args.d_model,
        blocks=args.blocks,
        filters=args.filters,
        moves_left=True,
    )
    config = TrainConfig(student=student_config, batch_size=args.batch_size)
    stream = SelfPlay(teacher, SelfPlaySettings(sample_rate=1.0), seed=0)
    positions = stream.generate(args.batch_size * args.steps)
    batches = [
        positions[i : i + args.batch_size] for i in range(0, len(positions), args.batch_size)
    ]
    ready = [make_batch(batch, 1) for batch in batches]
    student = new_student(student_config, seed=0)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
    mkl_student = new_student(student_config, seed=0)
    for module in mkl_student.modules():
        if type(module) is InferenceLinear:
            module.__class__ = torch.nn.Linear
    mkl_optimizer = torch.optim.AdamW(mkl_student.parameters(), lr=1e-4)

    def plain() -> None:
        for batch in ready:
            output = student(batch.planes)
            loss = output.policy_logits.mean() + output.wdl.mean()
            if output.moves_left is not None:
                loss = loss + output.moves_left.mean()
            student.zero_grad(set_to_none=True)
            loss.backward()

    def trainer_step(network: torch.nn.Module = student, adamw: Any = optimizer) -> None:
        for chosen in batches:
            batch = make_batch(chosen, 1)
            losses = compute_losses(network, batch, config)
            adamw.zero_grad(set_to_none=True)
            losses.total.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), config.gradient_clip)
            adamw.step()

    plies = max(1, len(positions) // stream.settings.games_in_parallel)

    def selfplay() -> None:
        for _ in range(plies):
            stream.step()

    peers: dict[str, Callable[[], None]] = {
        "plain forward+backward": plain,
        "trainer step": trainer_step,
        "trainer step, MKL linears": lambda: trainer_step(mkl_student, mkl_optimizer),
        "teacher self-play": selfplay,
    }
    timings: dict[str, list[float]] = {name: [] for name in peers}
    for run in peers.values():
        run()  # warm-up
    for _ in range(args.rounds):
        for name, run in peers.items():
            start = time.perf_counter()
            run()
            count = (
                plies * stream.settings.games_in_parallel
                if name == "teacher self-play"
                else len(positions)
            )
            timings[name].append(count / (time.perf_counter() - start))
    speeds = {name: statistics.median(values) for name, values in timings.items()}
    parameters = sum(p.numel() for p in student.parameters())
    print(
        f"student: {args.family} {parameters:,} parameters   batch {args.batch_size}   "
        f"threads {args.threads}   torch {torch.__version__}"
    )
    print(f"median of {args.rounds} interleaved rounds of {len(positions)} positions\n")
    print(f"{'peer':<30}{'pos/s':>8}  {'vs plain fwd+bwd':>16}")
    for name, speed in speeds.items():
        ratio = speed / speeds["plain forward+backward"]
        print(f"{name:<30}{speed:>8.0f}  {ratio:>15.2f}x")


if __name__ == "__main__":
    main()
