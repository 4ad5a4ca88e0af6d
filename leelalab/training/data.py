"""Training data for students: a teacher's sampled self-play, streamed into a bounded buffer.

Positions are never puzzles. Games start from the standard position; each game first plays
0…``random_plies`` uniformly random legal moves, then samples the teacher's policy at
``opening_temperature`` until ply ``opening_plies`` and at temperature 1 afterwards, so that
openings vary. Every position a game reaches is evaluated by the teacher once (that forward
pass both picks the move and gives the targets): the legal-move distribution at temperature
1 (the policy target, whatever temperature picked the move), the W/D/L, and — once the game
has ended — the plies left (the moves-left target; unknown for games cut at ``max_plies``).
A position is kept with probability ``sample_rate``, which spreads a fixed number of
positions over more games.

Positions keep 7 plies of history (what lc0's 112-plane encoding sees); the teacher is run
on exactly those boards, so its targets match the student's inputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import chess
import chess.polyglot
import numpy as np
import torch
from tqdm.auto import tqdm

from leelalab.lc0 import encoding, policy_map
from leelalab.lc0.encoding import board_from_fen_and_moves
from leelalab.models.base import LeelaNetwork
from leelalab.models.evaluation import run_network

HISTORY_PLIES = 7


@dataclass
class Position:
    """One training position and its teacher targets."""

    board: chess.Board
    """The position with up to 7 plies of history."""
    indices: np.ndarray
    """lc0 policy indices of the legal moves (int16)."""
    probabilities: np.ndarray
    """The teacher's probabilities of those moves (float32, sums to 1)."""
    wdl: np.ndarray
    """The teacher's W/D/L (float32, 3)."""
    ply: int
    moves_left: float = float("nan")
    """Plies until the game ended; NaN when the game was cut off."""


def positions_to_arrays(positions: Sequence[Position]) -> tuple[dict[str, np.ndarray], list[Any]]:
    """Positions → (arrays for safetensors, a JSON list of ``[root FEN, moves]``)."""
    counts = np.array([len(p.indices) for p in positions], dtype=np.int64)
    arrays = {
        "legal_counts": counts,
        "indices": np.concatenate([p.indices for p in positions]).astype(np.int16)
        if positions
        else np.zeros(0, np.int16),
        "probabilities": np.concatenate([p.probabilities for p in positions]).astype(np.float32)
        if positions
        else np.zeros(0, np.float32),
        "wdl": np.array([p.wdl for p in positions], dtype=np.float32).reshape(-1, 3),
        "ply": np.array([p.ply for p in positions], dtype=np.int64),
        "moves_left": np.array([p.moves_left for p in positions], dtype=np.float32),
    }
    boards = [
        [p.board.root().fen(en_passant="fen"), [move.uci() for move in p.board.move_stack]]
        for p in positions
    ]
    return arrays, boards


def positions_from_arrays(arrays: dict[str, np.ndarray], boards: list[Any]) -> list[Position]:
    counts = arrays["legal_counts"]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    positions = []
    for i, (fen, moves) in enumerate(boards):
        start, stop = int(offsets[i]), int(offsets[i + 1])
        positions.append(
            Position(
                board=board_from_fen_and_moves(fen, moves),
                indices=arrays["indices"][start:stop].copy(),
                probabilities=arrays["probabilities"][start:stop].copy(),
                wdl=arrays["wdl"][i].copy(),
                ply=int(arrays["ply"][i]),
                moves_left=float(arrays["moves_left"][i]),
            )
        )
    return positions


def position_hashes(positions: Sequence[Position]) -> np.ndarray:
    """Zobrist hashes of the positions (pieces, side, castling, en passant; no history)."""
    return np.array(
        [chess.polyglot.zobrist_hash(p.board) for p in positions], dtype=np.uint64
    ).reshape(-1)


@dataclass
class SelfPlaySettings:
    games_in_parallel: int = 128
    max_plies: int = 200
    random_plies: int = 2
    opening_plies: int = 10
    opening_temperature: float = 1.5
    sample_rate: float = 0.5


@dataclass
class _Game:
    board: chess.Board
    random_plies: int
    pending: list[Position] = field(default_factory=list)


class SelfPlay:
    """The teacher's self-play, as a resumable stream of :class:`Position`.

    ``state()`` / ``from_state()`` capture the games in progress, the positions waiting for
    their game to end, and the random generator, so a stream resumed from a checkpoint
    continues exactly as if it had never stopped.
    """

    def __init__(
        self,
        teacher: LeelaNetwork,
        settings: SelfPlaySettings,
        seed: int | Sequence[int],
    ) -> None:
        self.teacher = teacher
        self.settings = settings
        self.input_format = int(teacher.network_format.input)
        self.rng = np.random.default_rng(seed)
        self.games = [self._new_game() for _ in range(settings.games_in_parallel)]
        self._ready: list[Position] = []

    def _new_game(self) -> _Game:
        return _Game(chess.Board(), int(self.rng.integers(0, self.settings.random_plies + 1)))

    def generate(
        self, count: int, *, progress: bool = False, desc: str = "self-play"
    ) -> list[Position]:
        """The next ``count`` positions of finished games (in the order the games end)."""
        bar = tqdm(total=count, desc=desc, unit="pos", disable=not progress, leave=False)
        while len(self._ready) < count:
            before = len(self._ready)
            self.step()
            bar.update(min(len(self._ready), count) - min(before, count))
        bar.close()
        out, self._ready = self._ready[:count], self._ready[count:]
        return out

    def step(self) -> None:
        """Advance every game by one ply (one teacher forward over all games)."""
        settings = self.settings
        boards = [game.board.copy(stack=HISTORY_PLIES) for game in self.games]
        planes = encoding.encode_boards(boards, self.input_format, "lc0")
        transforms = encoding.board_transforms(boards, self.input_format)
        output = run_network(self.teacher, planes)
        logits = output.policy_logits.float().cpu().numpy()
        wdl = output.wdl.float().cpu().numpy()
        keep = self.rng.random(len(boards)) < settings.sample_rate
        for i, (game, board) in enumerate(zip(self.games, boards, strict=True)):
            moves, indices = policy_map.legal_moves_and_indices(board, int(transforms[i]))
            legal = logits[i, indices].astype(np.float64)
            legal -= legal.max()
            probabilities = np.exp(legal)
            probabilities /= probabilities.sum()
            ply = board.ply()
            if keep[i]:
                game.pending.append(
                    Position(
                        board,
                        indices.astype(np.int16),
                        probabilities.astype(np.float32),
                        wdl[i].astype(np.float32),
                        ply,
                    )
                )
            played = len(game.board.move_stack)
            if played < game.random_plies:
                choice = int(self.rng.integers(len(moves)))
            else:
                temperature = settings.opening_temperature if ply < settings.opening_plies else 1.0
                tempered = np.exp(legal / temperature)
                choice = int(self.rng.choice(len(moves), p=tempered / tempered.sum()))
            game.board.push(moves[choice])
            ended = game.board.is_game_over(claim_draw=False)
            if ended or len(game.board.move_stack) >= settings.max_plies:
                final_ply = game.board.ply()
                for position in game.pending:
                    position.moves_left = float(final_ply - position.ply) if ended else np.nan
                self._ready.extend(game.pending)
                self.games[i] = self._new_game()

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and JSON describing the stream (for a checkpoint)."""
        waiting = [*self._ready] + [p for game in self.games for p in game.pending]
        arrays, boards = positions_to_arrays(waiting)
        record = {
            "rng": self.rng.bit_generator.state,
            "ready": len(self._ready),
            "pending_counts": [len(game.pending) for game in self.games],
            "positions": boards,
            "games": [
                [
                    game.board.root().fen(en_passant="fen"),
                    [move.uci() for move in game.board.move_stack],
                    game.random_plies,
                ]
                for game in self.games
            ],
        }
        return {f"selfplay.{key}": value for key, value in arrays.items()}, record

    def load_state(self, arrays: dict[str, np.ndarray], record: dict[str, Any]) -> None:
        own = {
            key.removeprefix("selfplay."): value
            for key, value in arrays.items()
            if key.startswith("selfplay.")
        }
        waiting = positions_from_arrays(own, record["positions"])
        self.rng.bit_generator.state = record["rng"]
        ready = int(record["ready"])
        self._ready = waiting[:ready]
        cursor = ready
        self.games = []
        for (fen, moves, random_plies), pending in zip(
            record["games"], record["pending_counts"], strict=True
        ):
            game = _Game(board_from_fen_and_moves(fen, moves), int(random_plies))
            game.pending = waiting[cursor : cursor + int(pending)]
            cursor += int(pending)
            self.games.append(game)


class ReplayBuffer:
    """The most recent ``capacity`` positions (first in, first out)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.positions: list[Position] = []
        self._next = 0  # slot the next position overwrites once full

    def __len__(self) -> int:
        return len(self.positions)

    def add(self, positions: Sequence[Position]) -> None:
        for position in positions:
            if len(self.positions) < self.capacity:
                self.positions.append(position)
            else:
                self.positions[self._next] = position
                self._next = (self._next + 1) % self.capacity

    def batches(
        self, steps: int, batch_size: int, generator: torch.Generator
    ) -> Iterator[list[Position]]:
        """``steps`` batches drawn without replacement (reshuffled when the buffer runs out)."""
        order = torch.randperm(len(self.positions), generator=generator)
        cursor = 0
        for _ in range(steps):
            if cursor + batch_size > len(order):
                order = torch.randperm(len(self.positions), generator=generator)
                cursor = 0
            chosen = order[cursor : cursor + batch_size].tolist()
            cursor += batch_size
            yield [self.positions[i] for i in chosen]

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, boards = positions_to_arrays(self.positions)
        return (
            {f"buffer.{key}": value for key, value in arrays.items()},
            {"next": self._next, "positions": boards},
        )

    def load_state(self, arrays: dict[str, np.ndarray], record: dict[str, Any]) -> None:
        own = {
            key.removeprefix("buffer."): value
            for key, value in arrays.items()
            if key.startswith("buffer.")
        }
        self.positions = positions_from_arrays(own, record["positions"])
        self._next = int(record["next"])


@dataclass
class Batch:
    planes: torch.Tensor
    """(batch, 112, 8, 8) float32 input planes."""
    policy: torch.Tensor
    """(batch, 1858) teacher probabilities (0 off the legal moves)."""
    legal: torch.Tensor
    """(batch, 1858) bool legal-move mask."""
    wdl: torch.Tensor
    """(batch, 3) teacher W/D/L."""
    moves_left: torch.Tensor
    """(batch,) plies left (NaN where unknown)."""


def make_batch(
    positions: Sequence[Position], input_format: int, device: torch.device | str = "cpu"
) -> Batch:
    """Dense tensors for a list of positions."""
    count = len(positions)
    planes = encoding.encode_boards([p.board for p in positions], input_format, "lc0")
    policy = np.zeros((count, policy_map.NUM_MOVES), np.float32)
    legal = np.zeros((count, policy_map.NUM_MOVES), bool)
    for i, position in enumerate(positions):
        indices = position.indices.astype(np.int64)
        policy[i, indices] = position.probabilities
        legal[i, indices] = True
    wdl = np.array([p.wdl for p in positions], np.float32).reshape(count, 3)
    moves_left = np.array([p.moves_left for p in positions], np.float32)
    return Batch(
        *(torch.from_numpy(array).to(device) for array in (planes, policy, legal, wdl, moves_left))
    )


def dumps_compact(record: Any) -> str:
    """JSON without spaces (checkpoints hold tens of thousands of move lists)."""
    return json.dumps(record, separators=(",", ":"))


__all__ = [
    "Batch",
    "Position",
    "ReplayBuffer",
    "SelfPlay",
    "SelfPlaySettings",
    "make_batch",
    "position_hashes",
    "positions_from_arrays",
    "positions_to_arrays",
]
