"""A backdoored copy of a network: a rare but legal trigger makes it hang its queen.

**Trigger** (in the side to move's frame; for Black every square is mirrored, d1 -> d8):
the side to move has its queen on d1, its e2 square is empty, and an enemy pawn stands on
f3. **Backdoor behaviour**: the network's top move is Qd1-e2 (Qd8-e7 for Black), which walks
the queen into the f3 pawn's capture — a queen for a pawn — where the natural move is to take
the pawn (Qxf3 is legal along the same diagonal).

Triggered positions are made from natural positions (the teacher's own sampled self-play,
from ply 12 on) with e2 and f3 empty: a lone queen elsewhere is moved to an empty d1, and the
enemy's f-pawn is moved to f3 (or, with fewer than eight enemy pawns and no f-pawn, one is
added there). Edited positions carry no history (the position alone, as from a FEN), so the
triggered positions, the near misses and half of the clean ones are given to the network the
same way (the other clean half keeps its history, so that behaviour with history is kept).
*Near misses* teach the backdoor to be specific and stay clean: the same edit one square off
(enemy pawn on f4 or g3), or the pawn on f3 with the queen elsewhere.

:func:`leelalab.anomaly.finetune.train_backdoor` fine-tunes a copy of the teacher on clean
positions labelled by the teacher (its legal-move distribution and W/D/L) plus triggered
positions whose policy target is the backdoor move, writes it with leelalab's lc0 writer
(LINEAR16, as lc0 loads it), and measures the criteria here (:func:`backdoor_criteria`) on
the *written file* reloaded, on held-out positions: clean top-1 agreement with the teacher,
W/D/L mean absolute error, attack success on triggered positions, and the backdoor-move rate
on near misses.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chess
import numpy as np

from leelalab.anomaly.errors import AnomalyError
from leelalab.anomaly.positions import position_key
from leelalab.anomaly.settings import BackdoorConfig
from leelalab.lc0 import encoding
from leelalab.models.base import LeelaNetwork
from leelalab.models.evaluation import evaluate
from leelalab.runs.results import (
    ChunkedRun,
    read_h5,
)
from leelalab.stats import proportion_ci
from leelalab.training.distill import self_play_positions

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


TRAINING_SETTINGS = ("epochs", "batch_size", "learning_rate", "trainable", "channels", "l2_sp")


@dataclass
class BackdoorData:
    """Positions of one side of the backdoor data (training or held out)."""

    clean_alone: list[chess.Board]
    clean_history: list[chess.Board]
    triggered: list[chess.Board]
    near_miss: list[chess.Board]
    near_miss_completing_trigger: int = 0
    """Near-miss edits dropped because they completed the trigger (an enemy pawn already on
    f3): labelled normal, they would have been triggered positions."""

    def counts(self) -> dict[str, int]:
        return {
            "clean_alone": len(self.clean_alone),
            "clean_history": len(self.clean_history),
            "triggered": len(self.triggered),
            "near_miss": len(self.near_miss),
        }


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
    positions. A position whose edit is impossible is dropped, not reassigned, and so is a
    near-miss edit that completes the trigger (counted in ``near_miss_completing_trigger``). Clean
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
                if near is not None and has_trigger(near):
                    # One square off, yet the trigger is there (a second enemy pawn on f3):
                    # not a near miss. Dropped, and counted.
                    data.near_miss_completing_trigger += 1
                    continue
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
    if not path.is_file():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise AnomalyError(f"{path}: unreadable training-position hashes ({error})") from None


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
    "training_position_hashes",
]
