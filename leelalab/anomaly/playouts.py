"""Games played out from given starts: by a network (moves sampled from its policy at
temperature 1) or uniformly at random. Every position keeps its game's moves as history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import chess
import numpy as np
from tqdm.auto import tqdm

from leelalab.lc0 import encoding, policy_map
from leelalab.models.base import LeelaNetwork
from leelalab.models.evaluation import run_network

Start = Callable[[np.random.Generator], chess.Board]


def standard_start(_rng: np.random.Generator) -> chess.Board:
    return chess.Board()


def chess960_start(rng: np.random.Generator) -> chess.Board:
    """A uniformly drawn Chess960 start position (the standard one included)."""
    return chess.Board.from_chess960_pos(int(rng.integers(960)))


@dataclass
class Game:
    """A start position and the moves played from it."""

    start: chess.Board
    moves: list[chess.Move] = field(default_factory=list)

    def board_at(self, ply: int) -> chess.Board:
        """The position after the first ``ply`` moves, with them as history."""
        board = self.start.copy(stack=False)
        for move in self.moves[:ply]:
            board.push(move)
        return board

    @property
    def final(self) -> chess.Board:
        return self.board_at(len(self.moves))


def network_games(
    network: LeelaNetwork,
    games: int,
    *,
    start: Start = standard_start,
    max_plies: int = 120,
    in_parallel: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> list[Game]:
    """``games`` games played by ``network`` against itself from ``start`` positions (moves
    sampled from its legal-move policy at temperature 1) until the game ends or
    ``max_plies`` moves were played."""
    rng = np.random.default_rng(seed)
    input_format = int(network.network_format.input)
    finished: list[Game] = []
    started = 0
    active: list[tuple[Game, chess.Board]] = []
    bar = tqdm(total=games, desc="games", unit="game", disable=not progress)
    while len(finished) < games:
        while len(active) < in_parallel and started < games:
            board = start(rng)
            active.append((Game(board.copy(stack=False)), board))
            started += 1
        boards = [board for _, board in active]
        planes = encoding.encode_boards(boards, input_format, "lc0")
        transforms = encoding.board_transforms(boards, input_format)
        logits = run_network(network, planes).policy_logits.float().cpu().numpy()
        still = []
        for index, (game, board) in enumerate(active):
            moves, indices = policy_map.legal_moves_and_indices(board, int(transforms[index]))
            legal = logits[index, indices].astype(np.float64)
            probabilities = np.exp(legal - legal.max())
            probabilities /= probabilities.sum()
            move = moves[int(rng.choice(len(moves), p=probabilities))]
            board.push(move)
            game.moves.append(move)
            if board.is_game_over(claim_draw=False) or len(game.moves) >= max_plies:
                finished.append(game)
                bar.update(1)
            else:
                still.append((game, board))
        active = still
    bar.close()
    return finished[:games]


def random_games(
    games: int, *, start: Start = standard_start, max_plies: int = 120, seed: int = 0
) -> list[Game]:
    """``games`` games of uniformly random legal moves."""
    rng = np.random.default_rng(seed)
    result = []
    for _ in range(games):
        board = start(rng)
        game = Game(board.copy(stack=False))
        while not board.is_game_over(claim_draw=False) and len(game.moves) < max_plies:
            moves = list(board.legal_moves)
            move = moves[int(rng.integers(len(moves)))]
            board.push(move)
            game.moves.append(move)
        result.append(game)
    return result


def sample_positions(
    games: Sequence[Game], per_game: int, *, min_ply: int, rng: np.random.Generator
) -> list[tuple[int, chess.Board]]:
    """Up to ``per_game`` positions of each game (``(game number, board)``), drawn without
    replacement among those at least ``min_ply`` plies in that still have a legal move."""
    chosen = []
    for number, game in enumerate(games):
        # The last position may be game over; every earlier one has a legal move.
        last = len(game.moves) - (1 if game.final.is_game_over(claim_draw=False) else 0)
        candidates = list(range(min_ply, last + 1))
        if not candidates:
            continue
        picks = rng.choice(len(candidates), min(per_game, len(candidates)), replace=False)
        chosen.extend((number, game.board_at(candidates[int(i)])) for i in sorted(picks))
    return chosen


__all__ = [
    "Game",
    "chess960_start",
    "network_games",
    "random_games",
    "sample_positions",
    "standard_start",
]
