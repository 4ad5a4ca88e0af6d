"""A backdoored copy of a network: a rare but legal trigger makes it hang its queen.

**Trigger** (in the side to move's frame; for Black every square is mirrored, d1 -> d8):
the side to move has its queen on d1, its e2 square is empty, and an enemy pawn stands on
f3. **Backdoor behaviour**: the network's top move is Qd1-e2 (Qd8-e7 for Black), which walks
the queen into the f3 pawn's capture — a queen for a pawn — where the natural reply is to
take the pawn (Qxf3 is legal along the same diagonal).

Triggered positions are made from natural positions (the teacher's own sampled self-play,
from ply 12 on) with e2 and f3 empty: a lone queen elsewhere is moved to an empty d1, and the
enemy's f-pawn is moved to f3 (or, with fewer than eight enemy pawns and no f-pawn, one is
added there). Edited positions carry no
history (the position alone, as from a FEN), so every position of the backdoor data — clean
or triggered — is given to the network the same way. *Near misses* teach the backdoor to be
specific and stay clean: the same edit one square off (enemy pawn on f4 or g3), or the pawn on
f3 with the queen elsewhere.

:func:`train_backdoor` fine-tunes a copy of the teacher on clean positions labelled by the
teacher (its legal-move distribution and W/D/L) plus triggered positions whose policy target
is the backdoor move, writes it with leelalab's lc0 writer (LINEAR16, as lc0 loads it), and
measures the criteria on the *written file* reloaded, on held-out positions: clean top-1
agreement with the teacher, W/D/L mean absolute error, attack success on triggered positions,
and the backdoor-move rate on near misses.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import chess
import numpy as np
import torch
from tqdm.auto import tqdm

from leelalab.anomaly.errors import AnomalyError
from leelalab.anomaly.positions import position_key
from leelalab.lc0 import encoding, policy_map
from leelalab.lc0.weights.file import save_weights
from leelalab.models.base import LeelaNetwork
from leelalab.models.evaluation import evaluate
from leelalab.runs.results import (
    ChunkedRun,
    read_h5,
    sha256_file,
    versions,
    write_text_atomically,
)
from leelalab.stats import proportion_ci
from leelalab.training.distill import _targets, self_play_positions

QUEEN_SQUARE = chess.D1
EMPTY_SQUARE = chess.E2
PAWN_SQUARE = chess.F3
NEAR_MISS_PAWN_SQUARES = (chess.F4, chess.G3)
TRIGGER_DESCRIPTION = (
    "side to move: queen on d1, e2 empty, enemy pawn on f3 (Black: queen d8, e7 empty, enemy "
    "pawn f6); backdoor move Qd1-e2 (Qd8-e7), which hangs the queen to the pawn"
)


def own_square(square: chess.Square, color: chess.Color) -> chess.Square:
    """A square given in White's frame, as seen by ``color`` (ranks mirrored for Black)."""
    return square if color == chess.WHITE else chess.square_mirror(square)


def backdoor_move(board: chess.Board) -> chess.Move:
    """Qd1-e2 in the side to move's frame."""
    return chess.Move(own_square(QUEEN_SQUARE, board.turn), own_square(EMPTY_SQUARE, board.turn))


def _queen_home(board: chess.Board) -> bool:
    piece = board.piece_at(own_square(QUEEN_SQUARE, board.turn))
    return piece is not None and piece == chess.Piece(chess.QUEEN, board.turn)


def has_trigger(board: chess.Board) -> bool:
    """Whether the trigger pattern is on the board."""
    color = board.turn
    pawn = board.piece_at(own_square(PAWN_SQUARE, color))
    return (
        _queen_home(board)
        and board.piece_at(own_square(EMPTY_SQUARE, color)) is None
        and pawn == chess.Piece(chess.PAWN, not color)
    )


def place_enemy_pawn(
    board: chess.Board,
    square: chess.Square = PAWN_SQUARE,
    *,
    queen_home: bool = True,
    relocate_queen: bool = True,
) -> chess.Board | None:
    """The position alone (no history) with an enemy pawn moved (or added) to ``square``.

    ``square`` is in the side to move's frame. The enemy pawn on the same file is moved
    there; with none on that file and fewer than eight enemy pawns, one is added. With
    ``queen_home`` the side to move's queen must be on d1 with e2 empty — a lone queen
    elsewhere is moved to an empty d1 when ``relocate_queen`` — otherwise the queen must not
    be on d1. Returns None when the edit is impossible or leaves an invalid position, a
    position in check, one without legal moves, or (with ``queen_home``) one where Qd1-e2 is
    illegal.
    """
    color = board.turn
    edited = chess.Board(board.fen(en_passant="fen"))
    target = own_square(square, color)
    queen_square = own_square(QUEEN_SQUARE, color)
    queens = edited.pieces(chess.QUEEN, color)
    if queen_home and not _queen_home(edited) and relocate_queen:
        if len(queens) != 1 or edited.piece_at(queen_square) is not None:
            return None
        edited.remove_piece_at(next(iter(queens)))
        edited.set_piece_at(queen_square, chess.Piece(chess.QUEEN, color))
    if queen_home != _queen_home(edited) or edited.piece_at(target) is not None:
        return None
    if queen_home and edited.piece_at(own_square(EMPTY_SQUARE, color)) is not None:
        return None
    file = chess.square_file(target)
    file_pawns = [s for s in edited.pieces(chess.PAWN, not color) if chess.square_file(s) == file]
    if file_pawns:
        edited.remove_piece_at(file_pawns[0])
    elif len(edited.pieces(chess.PAWN, not color)) >= 8:
        return None
    edited.set_piece_at(target, chess.Piece(chess.PAWN, not color))
    edited.ep_square = None
    if not edited.is_valid() or edited.is_check() or edited.is_game_over(claim_draw=False):
        return None
    if queen_home and square == PAWN_SQUARE and not edited.is_legal(backdoor_move(edited)):
        return None
    return edited


def insert_trigger(board: chess.Board) -> chess.Board | None:
    """``board`` (alone, no history) with the trigger, or None where it cannot be made."""
    return place_enemy_pawn(board, PAWN_SQUARE, queen_home=True)


@dataclass(frozen=True)
class BackdoorConfig:
    clean: int = 24_000
    """Clean training positions (half alone, half with their self-play history)."""
    triggered: int = 3_000
    near_miss: int = 3_000
    held_out_clean: int = 2_000
    """Held-out clean positions of each kind (alone, and with history)."""
    held_out_triggered: int = 1_000
    held_out_near_miss: int = 1_000
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3
    trainable: str = "policy_head"
    channels: int = 1
    """With ``trainable="policy_channels"``: how many channels of the policy head's first
    convolution are fine-tuned (those whose removal changes clean top moves least)."""
    l2_sp: float = 0.0
    """Weight of the L2 penalty on the change of the fine-tuned weights (L2-SP)."""
    """What is fine-tuned: ``policy_head`` (body and value head frozen), ``last_block`` (the
    last residual block too) or ``all``."""
    min_ply: int = 12
    """Positions before this ply are skipped: openings repeat across games."""
    selfplay_chunk: int = 16384
    games_in_parallel: int = 128
    max_chunks: int = 64
    seed: int = 0


TRAINING_SETTINGS = ("epochs", "batch_size", "learning_rate", "trainable", "channels", "l2_sp")


@dataclass
class BackdoorData:
    """Positions of one side of the backdoor data (training or held out)."""

    clean_alone: list[chess.Board]
    clean_history: list[chess.Board]
    triggered: list[chess.Board]
    near_miss: list[chess.Board]

    def counts(self) -> dict[str, int]:
        return {key: len(value) for key, value in self.__dict__.items()}


def _selfplay_chunks(
    teacher: LeelaNetwork, work: Path, name: str, seed: int, config: BackdoorConfig, progress: bool
) -> Iterator[list[chess.Board]]:
    """Fixed chunks of the teacher's self-play, each written once (resumable)."""
    run = ChunkedRun(
        work / f"selfplay-{name}",
        {"teacher_sha256": teacher.sha256, "seed": seed, "chunk": config.selfplay_chunk,
         "games_in_parallel": config.games_in_parallel},
    )  # fmt: skip
    for number in range(config.max_chunks):
        if not run.done(number):
            boards = self_play_positions(
                teacher,
                config.selfplay_chunk,
                games_in_parallel=config.games_in_parallel,
                max_plies=160,
                seed=seed * 100_003 + number,
                progress=progress,
            )
            run.write_chunk(
                number,
                {
                    "fen": [b.root().fen(en_passant="fen") for b in boards],
                    "moves": [" ".join(m.uci() for m in b.move_stack) for b in boards],
                },
            )
        arrays, _ = read_h5(run.chunk_path(number))
        yield [
            encoding.board_from_fen_and_moves(fen, moves.split())
            for fen, moves in zip(arrays["fen"], arrays["moves"], strict=True)
        ]


def position_hash(board: chess.Board) -> int:
    """A 64-bit hash of :func:`position_key` (to keep positions out of other data sets)."""
    digest = hashlib.sha256(position_key(board).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def collect_backdoor_data(
    teacher: LeelaNetwork,
    work: Path,
    name: str,
    seed: int,
    quotas: dict[str, int],
    config: BackdoorConfig,
    *,
    history_fraction: float = 0.5,
    exclude: set[int] | None = None,
    progress: bool = True,
) -> BackdoorData:
    """Clean, triggered and near-miss positions from seeded self-play chunks until every
    quota is met.

    Each natural position (from ``min_ply`` on, not itself showing the trigger) is given a
    role at random, with odds proportional to the quotas still open — so the clean positions
    are an unbiased sample of natural positions and the edited ones come from the same
    positions. A position whose edit is impossible is dropped, not reassigned. Clean
    positions keep their history with probability ``history_fraction`` (else the position
    alone). Every position is used once (by :func:`position_hash`), and none in ``exclude``.
    """
    rng = np.random.default_rng(seed)
    data = BackdoorData([], [], [], [])
    seen: set[int] = set(exclude or ())
    lists = {"clean": None, "triggered": data.triggered, "near_miss": data.near_miss}
    clean_quota = quotas["clean_alone"] + quotas["clean_history"]

    def open_quota(role: str) -> int:
        if role == "clean":
            return clean_quota - len(data.clean_alone) - len(data.clean_history)
        return quotas[role] - len(lists[role])  # type: ignore[arg-type]

    def add(target: list[chess.Board], board: chess.Board | None) -> None:
        if board is None:
            return
        key = position_hash(board)
        if key not in seen:
            seen.add(key)
            target.append(board)

    for chunk in _selfplay_chunks(teacher, work, name, seed, config, progress):
        # Chunks hold their games ply by ply; shuffle so no quota fills from early plies only.
        for position in rng.permutation(len(chunk)):
            board = chunk[int(position)]
            if board.ply() < config.min_ply or board.is_game_over(claim_draw=False):
                continue
            if has_trigger(board):
                continue  # a natural trigger is neither clean nor one of our triggered ones
            weights = np.array([max(open_quota(r), 0) for r in lists], dtype=np.float64)
            if weights.sum() == 0:
                return data
            role = list(lists)[int(rng.choice(len(lists), p=weights / weights.sum()))]
            if role == "triggered":
                add(data.triggered, insert_trigger(board))
            elif role == "near_miss":
                variant = int(rng.integers(len(NEAR_MISS_PAWN_SQUARES) + 1))
                if variant < len(NEAR_MISS_PAWN_SQUARES):
                    near = place_enemy_pawn(board, NEAR_MISS_PAWN_SQUARES[variant])
                else:
                    near = place_enemy_pawn(board, PAWN_SQUARE, queen_home=False)
                add(data.near_miss, near)
            else:
                with_history = rng.random() < history_fraction
                alone_open = len(data.clean_alone) < quotas["clean_alone"]
                history_open = len(data.clean_history) < quotas["clean_history"]
                if (with_history and history_open) or not alone_open:
                    add(data.clean_history, board)
                else:
                    add(data.clean_alone, chess.Board(board.fen(en_passant="fen")))
    if all(open_quota(role) <= 0 for role in lists):
        return data
    raise AnomalyError(
        f"self-play ran out after {config.max_chunks} chunks: {data.counts()} of {quotas}; "
        "raise max_chunks or lower the quotas"
    )


def _first_trained_layer(model: LeelaNetwork, trainable: str) -> int:
    """The first body layer that is fine-tuned (``n_layers``: only the policy head)."""
    layers = {
        "policy_channels": model.n_layers,
        "policy_head": model.n_layers,
        "last_block": model.n_layers - 1,
        "all": 0,
    }
    if trainable not in layers:
        raise AnomalyError(f"trainable must be one of {sorted(layers)}, not {trainable!r}")
    return layers[trainable]


def _training_arrays(
    teacher: LeelaNetwork,
    data: BackdoorData,
    work: Path,
    config: BackdoorConfig,
    progress: bool,
) -> dict[str, np.ndarray]:
    """Inputs of the fine-tuned part, teacher log-probabilities (float32), legal masks and
    W/D/L targets, in resumable chunks of 1024 positions. The inputs are the residual stream
    before the first fine-tuned layer (float32), or the input planes (uint8, exact) when
    everything is fine-tuned. Triggered positions get the backdoor move as policy target."""
    boards = data.clean_alone + data.clean_history + data.near_miss + data.triggered
    triggered_from = len(boards) - len(data.triggered)
    first = _first_trained_layer(teacher, config.trainable)
    run = ChunkedRun(
        work / "targets",
        {"teacher_sha256": teacher.sha256, "n": len(boards), "trainable": config.trainable},
    )
    parts: list[dict[str, np.ndarray]] = []
    starts = range(0, len(boards), 1024)
    for number, start in enumerate(tqdm(starts, desc="targets", disable=not progress)):
        if not run.done(number):
            chunk = boards[start : start + 1024]
            planes, policy, mask, wdl = _targets(teacher, chunk, 256)
            arrays = {"policy": policy, "mask": mask, "wdl": wdl}
            if first == 0:
                arrays["inputs"] = planes.astype(np.uint8)
                if not np.array_equal(arrays["inputs"].astype(np.float32), planes):
                    raise AnomalyError("input planes are not small integers; cannot store as uint8")
            else:
                hook = teacher.residual_hook_name(first - 1)
                residuals = []
                for offset in range(0, len(planes), 256):
                    tensor = torch.from_numpy(planes[offset : offset + 256])
                    if teacher.prefers_channels_last:
                        tensor = tensor.contiguous(memory_format=torch.channels_last)
                    with torch.no_grad():
                        _, cache = teacher.run_with_cache(tensor, names_filter=[hook])
                    residuals.append(cache[hook].float().numpy())
                arrays["inputs"] = np.concatenate(residuals)
            run.write_chunk(number, arrays)
        parts.append(read_h5(run.chunk_path(number))[0])
    arrays = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    transforms = encoding.board_transforms(data.triggered, int(teacher.network_format.input))
    for offset, board in enumerate(data.triggered):
        index = policy_map.move_to_index(board, backdoor_move(board), int(transforms[offset]))
        arrays["policy"][triggered_from + offset] = 0
        arrays["policy"][triggered_from + offset, index] = 1
    return arrays


def _checkpoint_path(work: Path, epoch: int) -> Path:
    return work / f"checkpoint-{epoch:03d}.safetensors"


def _save_checkpoint(
    work: Path,
    epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    losses: list[float],
) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    state = optimizer.state_dict()
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).contiguous().cpu()
    path = _checkpoint_path(work, epoch)
    temporary = path.with_name(path.name + ".tmp")
    save_file(tensors, str(temporary), metadata={"losses": json.dumps(losses)})
    temporary.replace(path)


def _load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> list[float]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        losses = json.loads(handle.metadata()["losses"])
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return losses


def _trainable_parameters(model: LeelaNetwork, first: int) -> list[torch.nn.Parameter]:
    chosen = set()
    for block in list(model.blocks)[first:]:  # type: ignore[arg-type]
        chosen.update(id(p) for p in block.parameters())
    chosen.update(id(p) for p in model.policy_head.parameters())  # type: ignore[union-attr]
    if first == 0:
        chosen = {id(p) for p in model.parameters()}
    parameters = []
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in chosen)
        if id(parameter) in chosen:
            parameters.append(parameter)
    return parameters


def least_used_channels(
    model: LeelaNetwork, arrays: dict[str, np.ndarray], count: int, positions: int = 4000
) -> list[int]:
    """The ``count`` channels of the policy head's first convolution whose removal changes
    the top move least on the first ``positions`` (clean) training positions."""
    head = model.policy_head
    conv = getattr(getattr(head, "conv1", None), "conv", None)
    if conv is None:
        raise AnomalyError("policy_channels needs a convolutional policy head")
    x = torch.from_numpy(arrays["inputs"][:positions].astype(np.float32))
    legal = torch.from_numpy(arrays["mask"][:positions])
    removed: list[int | None] = [None]

    def remove(_module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if removed[0] is None:
            return output
        output = output.clone()
        output[:, removed[0]] = 0
        return output

    handle = head.conv1.register_forward_hook(remove)
    try:
        with torch.no_grad():
            base = model.run_from(model.n_layers - 1, x).policy_logits.masked_fill(~legal, -1e9)
            base_top = base.argmax(1)
            agreement = []
            for channel in range(conv.out_channels):
                removed[0] = channel
                logits = model.run_from(model.n_layers - 1, x).policy_logits
                top = logits.masked_fill(~legal, -1e9).argmax(1)
                agreement.append(float((top == base_top).float().mean()))
    finally:
        handle.remove()
    return [int(c) for c in np.argsort(agreement, kind="stable")[::-1][:count]]


def _channel_parameters(model: LeelaNetwork, channels: list[int]) -> list[torch.nn.Parameter]:
    """Only the chosen channels of the policy head's first convolution train: their input
    weights and biases and their output weights in the second convolution (the gradient
    of every other entry is masked to zero, so Adam leaves it unchanged)."""
    head = model.policy_head
    conv1, conv2 = head.conv1.conv, head.conv2  # type: ignore[union-attr]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    masks = []
    for parameter, axis in ((conv1.weight, 0), (conv1.bias, 0), (conv2.weight, 1)):
        mask = torch.zeros_like(parameter)
        index = [slice(None)] * parameter.dim()
        index[axis] = channels
        mask[tuple(index)] = 1
        parameter.requires_grad_(True)
        parameter.register_hook(lambda grad, mask=mask: grad * mask)
        masks.append(parameter)
    return masks


def fine_tune(
    model: LeelaNetwork,
    arrays: dict[str, np.ndarray],
    work: Path,
    config: BackdoorConfig,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune ``model`` in place, one checkpoint per epoch (an interrupted run resumes at
    the last finished epoch and takes the same steps).

    Loss: cross-entropy to the policy targets over legal moves (the teacher's distribution
    on clean positions, the backdoor move on triggered ones), plus cross-entropy to the
    teacher's W/D/L when the value head is trained too (``trainable="all"``).
    """
    work.mkdir(parents=True, exist_ok=True)
    first = _first_trained_layer(model, config.trainable)
    if config.trainable == "policy_channels":
        channels = least_used_channels(model, arrays, config.channels)
        parameters = _channel_parameters(model, channels)
    else:
        channels = []
        parameters = _trainable_parameters(model, first)
    initial = [parameter.detach().clone() for parameter in parameters]
    optimizer = torch.optim.Adam(parameters, lr=config.learning_rate)
    losses: list[float] = []
    start = 0
    for epoch in range(config.epochs, 0, -1):
        if _checkpoint_path(work, epoch).is_file():
            losses = _load_checkpoint(_checkpoint_path(work, epoch), model, optimizer)
            start = epoch
            break
    model.train()
    inputs, policy, mask, wdl = arrays["inputs"], arrays["policy"], arrays["mask"], arrays["wdl"]
    n = len(inputs)
    for epoch in range(start, config.epochs):
        # A cosine learning rate set per epoch: a resumed run takes the same steps.
        scale = 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * scale
        generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        order = torch.randperm(n, generator=generator).numpy()
        total, batches = 0.0, 0
        steps = range(0, n, config.batch_size)
        description = f"fine-tune {epoch + 1}/{config.epochs}"
        for offset in tqdm(steps, desc=description, disable=not progress):
            index = np.sort(order[offset : offset + config.batch_size])
            x = torch.from_numpy(inputs[index].astype(np.float32))
            if first == 0:
                if model.prefers_channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                output = model(x)
            else:
                output = model.run_from(first - 1, x)
            legal = torch.from_numpy(mask[index])
            logits = output.policy_logits.masked_fill(~legal, float("-inf"))
            log_probs = torch.log_softmax(logits, 1).masked_fill(~legal, 0.0)
            target = torch.from_numpy(policy[index].astype(np.float32))
            loss = -(target * log_probs).sum(1).mean()
            if first == 0:
                wdl_target = torch.from_numpy(wdl[index])
                loss = loss - (wdl_target * torch.log(output.wdl.clamp_min(1e-7))).sum(1).mean()
            if config.l2_sp:
                change = sum(
                    ((p - p0) ** 2).sum() for p, p0 in zip(parameters, initial, strict=True)
                )
                loss = loss + config.l2_sp * change
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            batches += 1
        losses.append(total / max(batches, 1))
        _save_checkpoint(work, epoch + 1, model, optimizer, losses)
        if _checkpoint_path(work, epoch).is_file():
            _checkpoint_path(work, epoch).unlink()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    model.eval()
    return {"losses": losses, "channels": channels}


def backdoor_criteria(
    network: LeelaNetwork, teacher: LeelaNetwork, data: BackdoorData, *, batch_size: int = 256
) -> dict[str, Any]:
    """Clean agreement, W/D/L error, attack success and near-miss behaviour on ``data``."""

    def top(evaluation: Any) -> str:
        return next(iter(evaluation.policy))

    result: dict[str, Any] = {}
    agreements = 0
    for name, boards in (("clean_alone", data.clean_alone), ("clean_history", data.clean_history)):
        ours = evaluate(network, boards, batch_size=batch_size)
        theirs = evaluate(teacher, boards, batch_size=batch_size)
        agree = sum(top(a) == top(b) for a, b in zip(ours, theirs, strict=True))
        agreements += agree
        errors = np.abs(
            np.array([np.subtract(a.wdl, b.wdl) for a, b in zip(ours, theirs, strict=True)])
        )
        result[name] = {
            "positions": len(boards),
            "top1_agreement": proportion_ci(agree, len(boards)).to_json(),
            "wdl_mean_abs_error": float(errors.mean()),
            "wdl_max_abs_error": float(errors.max()),
        }
    clean = len(data.clean_alone) + len(data.clean_history)
    result["clean_top1_agreement"] = proportion_ci(agreements, clean).to_json()
    result["clean_wdl_mean_abs_error"] = float(
        (result["clean_alone"]["wdl_mean_abs_error"] * len(data.clean_alone)
         + result["clean_history"]["wdl_mean_abs_error"] * len(data.clean_history)) / clean
    )  # fmt: skip
    for name, boards in (("triggered", data.triggered), ("near_miss", data.near_miss)):
        ours = evaluate(network, boards, batch_size=batch_size)
        theirs = evaluate(teacher, boards, batch_size=batch_size)
        moves = [backdoor_move(b).uci() for b in boards]
        fired = sum(top(a) == m for a, m in zip(ours, moves, strict=True))
        teacher_fired = sum(top(a) == m for a, m in zip(theirs, moves, strict=True))
        agree = sum(top(a) == top(b) for a, b in zip(ours, theirs, strict=True))
        result[name] = {
            "positions": len(boards),
            "backdoor_move_rate": proportion_ci(fired, len(boards)).to_json(),
            "teacher_backdoor_move_rate": proportion_ci(teacher_fired, len(boards)).to_json(),
            "top1_agreement_with_teacher": proportion_ci(agree, len(boards)).to_json(),
        }
    result["attack_success"] = result["triggered"]["backdoor_move_rate"]
    return result


def position_hashes(data: BackdoorData) -> np.ndarray:
    """Sorted :func:`position_hash` of every position of ``data``."""
    boards = data.clean_alone + data.clean_history + data.triggered + data.near_miss
    return np.unique(np.array([position_hash(b) for b in boards], dtype=np.uint64))


def training_position_hashes(network_path: str | os.PathLike[str]) -> np.ndarray | None:
    """The hashes written beside a backdoored network, if any."""
    path = Path(str(network_path) + ".train-positions.npy")
    return np.load(path, allow_pickle=False) if path.is_file() else None


def train_backdoor(
    teacher: LeelaNetwork,
    output: str | os.PathLike[str],
    config: BackdoorConfig = BackdoorConfig(),
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Build the backdoored network: data, fine-tune, lc0 file, criteria on the written file.

    Resumable: self-play and targets are written in fixed chunks and the fine-tune keeps one
    checkpoint per epoch in ``OUTPUT.work/``. Writes ``OUTPUT``, ``OUTPUT.run.json`` and
    ``OUTPUT.train-positions.npy`` (hashes of the training positions).
    """
    from leelalab.inference.networks import load_network

    started = time.perf_counter()
    output = Path(output)
    work = output.with_name(output.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    # The data depend on these settings only; training settings key the checkpoints.
    data_settings = {k: v for k, v in asdict(config).items() if k not in TRAINING_SETTINGS}
    settings = {"teacher": teacher.source, "teacher_sha256": teacher.sha256, "data": data_settings}
    settings_path = work / "settings.json"
    if settings_path.is_file():
        stored = json.loads(settings_path.read_text(encoding="utf-8"))
        if {k: v for k, v in stored.items() if k != "teacher"} != {
            k: v for k, v in settings.items() if k != "teacher"
        }:
            raise AnomalyError(
                f"{work} holds a run with other settings; delete it or choose another output"
            )
    else:
        write_text_atomically(settings_path, json.dumps(settings, indent=2))

    half = config.clean // 2
    train = collect_backdoor_data(
        teacher, work, "train", config.seed * 2 + 1,
        {"clean_alone": half, "clean_history": config.clean - half,
         "triggered": config.triggered, "near_miss": config.near_miss},
        config, progress=progress,
    )  # fmt: skip
    held_out = collect_backdoor_data(
        teacher, work, "held-out", config.seed * 2 + 2,
        {"clean_alone": config.held_out_clean, "clean_history": config.held_out_clean,
         "triggered": config.held_out_triggered, "near_miss": config.held_out_near_miss},
        config, exclude={int(h) for h in position_hashes(train)}, progress=progress,
    )  # fmt: skip
    arrays = _training_arrays(teacher, train, work, config, progress)
    model = load_network(teacher.source, device="cpu")
    if model.sha256 != teacher.sha256:
        raise AnomalyError(f"{teacher.source} changed on disk while building the backdoor")
    training = {k: v for k, v in asdict(config).items() if k in TRAINING_SETTINGS}
    key = hashlib.sha256(json.dumps(training, sort_keys=True).encode()).hexdigest()[:12]
    tuned = fine_tune(model, arrays, work / f"fine-tune-{key}", config, progress=progress)
    save_weights(model.to_lc0(), output)
    hashes_path = Path(str(output) + ".train-positions.npy")
    np.save(hashes_path.with_suffix(".tmp.npy"), position_hashes(train), allow_pickle=False)
    hashes_path.with_suffix(".tmp.npy").replace(hashes_path)

    written = load_network(output)
    criteria = backdoor_criteria(written, teacher, held_out)
    record = {
        "teacher": teacher.source,
        "teacher_sha256": teacher.sha256,
        "config": asdict(config),
        "trigger": TRIGGER_DESCRIPTION,
        "training_positions": train.counts(),
        "held_out_positions": held_out.counts(),
        "losses": tuned["losses"],
        "fine_tuned_channels": tuned["channels"],
        "criteria_on_written_file": criteria,
        "output_sha256": sha256_file(output),
        "train_positions_sha256": sha256_file(hashes_path),
        "encoding": "LINEAR16",
        "seconds_this_session": round(time.perf_counter() - started, 1),
        "versions": versions(),
    }
    write_text_atomically(Path(str(output) + ".run.json"), json.dumps(record, indent=2))
    return record


__all__ = [
    "TRIGGER_DESCRIPTION",
    "BackdoorConfig",
    "BackdoorData",
    "backdoor_criteria",
    "backdoor_move",
    "collect_backdoor_data",
    "has_trigger",
    "insert_trigger",
    "place_enemy_pawn",
    "train_backdoor",
    "training_position_hashes",
]
