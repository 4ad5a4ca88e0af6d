"""Stockfish as ground truth, with a cache so reruns are free.

Searches go through :class:`leelalab.engines.Stockfish`: Stockfish is given the position
alone (its FEN, clocks and en-passant square included, without the game's history), the hash
is cleared before every search, and results are cached in the SQLite engine cache keyed by
the engine's name, version and options, the position, the depth and the query (number of
principal variations, root moves searched). Caches of earlier versions
(``stockfish-cache.jsonl``) are not read: they are rebuilt as the searches come again.

Win chances follow Lichess's move classification: ``2 / (1 + exp(-0.00368208 cp)) - 1`` with
centipawns clipped to ±1000 and mates counted as ±1000; a move is a *blunder* when it loses at
least 0.3 of win chances against the best move.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import chess

from leelalab.anomaly.errors import AnomalyError
from leelalab.engines import Limit, Stockfish

BLUNDER_WIN_CHANCE_LOSS = 0.3
CP_CLIP = 1000


@dataclass(frozen=True)
class Line:
    """One principal variation's first move and score, from the side to move's view."""

    move: str
    cp: int | None
    mate: int | None

    @property
    def centipawns(self) -> float:
        if self.mate is not None:
            return CP_CLIP if self.mate > 0 else -CP_CLIP
        return float(max(-CP_CLIP, min(CP_CLIP, self.cp or 0)))

    @property
    def win_chances(self) -> float:
        """Lichess's win chances in [-1, 1]."""
        return 2 / (1 + math.exp(-0.00368208 * self.centipawns)) - 1


class CachedStockfish:
    """A Stockfish process whose analyses are cached (see the module docstring).

    Example::

        with CachedStockfish(cache=task.directory / CACHE_FILE) as engine:
            best = engine.analyse(board, depth=10)[0]
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        cache: str | os.PathLike[str] | None = None,
        threads: int = 1,
        hash_mb: int = 32,
    ) -> None:
        self._stockfish = Stockfish(path, threads=threads, hash_mb=hash_mb, cache=cache)
        self.binary = self._stockfish.binary

    @property
    def name(self) -> str:
        """The engine's name and version as it reports them."""
        return self._stockfish.name

    @property
    def searches(self) -> int:
        """Searches run (cache hits excluded)."""
        return self._stockfish.searches

    def analyse(
        self,
        board: chess.Board,
        *,
        depth: int,
        multipv: int = 1,
        root_moves: Sequence[chess.Move] | None = None,
    ) -> list[Line]:
        """Best lines at ``depth`` (searched from the position alone, hash cleared)."""
        position = chess.Board(board.fen(en_passant="fen"), chess960=board.chess960)
        lines = self._stockfish.analyse(
            position, Limit(depth=depth), multipv=multipv, root_moves=root_moves
        )
        return [Line(line.move, line.cp, line.mate) for line in lines if line.move is not None]

    def best(self, board: chess.Board, depth: int) -> Line:
        lines = self.analyse(board, depth=depth)
        if not lines:
            raise AnomalyError(f"Stockfish found no move in {board.fen()}")
        return lines[0]

    def move_value(self, board: chess.Board, move: chess.Move, depth: int) -> Line:
        """The score of ``move`` searched alone at ``depth``."""
        lines = self.analyse(board, depth=depth, root_moves=[move])
        if not lines:
            raise AnomalyError(f"Stockfish could not search {move.uci()} in {board.fen()}")
        return lines[0]

    def close(self) -> None:
        self._stockfish.close()

    def __enter__(self) -> CachedStockfish:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def win_chance_loss(engine: CachedStockfish, board: chess.Board, move: str, depth: int) -> float:
    """How many win chances (Lichess scale, 0..2) ``move`` gives up against the best move."""
    best = engine.best(board, depth)
    if move == best.move:
        return 0.0
    value = engine.move_value(board, chess.Move.from_uci(move), depth)
    return max(0.0, best.win_chances - value.win_chances)


__all__ = [
    "BLUNDER_WIN_CHANCE_LOSS",
    "CachedStockfish",
    "Line",
    "win_chance_loss",
]
