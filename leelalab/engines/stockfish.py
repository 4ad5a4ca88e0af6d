"""Stockfish through python-chess's ``chess.engine``: deterministic, cached searches.

Every search starts a new game (``ucinewgame`` clears the hash table), so a result depends
on the position, the limit and the engine's options only — not on what was searched before
it, nor on which results a resumed run found in its cache. With one thread and a depth or
node limit it is reproducible. The board is sent as it is given, history included
(python-chess sends the root FEN and the moves since): callers that want Stockfish to see a
bare FEN pass a board without a move stack.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import chess
import chess.engine

from leelalab.engines.binaries import find_stockfish
from leelalab.engines.cache import EngineCache
from leelalab.engines.errors import EngineError
from leelalab.engines.limits import Limit


@dataclass(frozen=True)
class Line:
    """One principal variation: its first move (``None`` when the engine gave no move) and
    its score from the side to move's view (``cp`` or ``mate``; ``mate=0``: mated)."""

    move: str | None
    cp: int | None
    mate: int | None

    def score(self, turn: chess.Color) -> chess.engine.PovScore:
        """The score as python-chess's, for a position with ``turn`` to move."""
        relative: chess.engine.Score = (
            chess.engine.Mate(self.mate) if self.mate is not None else chess.engine.Cp(self.cp or 0)
        )
        return chess.engine.PovScore(relative, turn)


class Stockfish:
    """One Stockfish process and its cache (a context manager).

    Args:
        path: the binary (see :func:`~leelalab.engines.binaries.find_stockfish`).
        threads: search threads (1: reproducible).
        hash_mb: hash table size; part of the engine's identity (it can change results).
        cache: an :class:`EngineCache` or its file; ``None`` keeps results in memory.
        timeout: seconds to wait for the engine to start.

    Example::

        with Stockfish(cache=run / CACHE_FILE) as engine:
            best = engine.analyse(board, Limit(depth=10))[0]
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        threads: int = 1,
        hash_mb: int = 16,
        cache: EngineCache | str | os.PathLike[str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.binary = find_stockfish(path)
        self.options = {"Threads": int(threads), "Hash": int(hash_mb)}
        self.cache = cache if isinstance(cache, EngineCache) else EngineCache(cache)
        self.searches = 0
        """Searches run by this process (cache hits excluded)."""
        try:
            self._engine = chess.engine.SimpleEngine.popen_uci(self.binary, timeout=timeout)
        except (OSError, chess.engine.EngineError, TimeoutError) as error:
            raise EngineError(f"{self.binary}: cannot start Stockfish ({error})") from None
        try:
            self._engine.configure(self.options)
        except chess.engine.EngineError as error:
            self._engine.close()
            raise EngineError(f"{self.binary}: cannot configure Stockfish ({error})") from None
        self.name = str(self._engine.id.get("name", "unknown engine"))
        """The engine's name and version as it reports them (e.g. ``Stockfish 15.1``)."""
        self.identity = f"{self.name} {json.dumps(self.options, sort_keys=True)}"
        """The name and every option that can change a result: the cache's engine key."""

    def analyse(
        self,
        board: chess.Board,
        limit: Limit,
        *,
        multipv: int = 1,
        root_moves: Sequence[chess.Move] | None = None,
    ) -> list[Line]:
        """The best ``multipv`` lines of ``board`` (history included) under ``limit``, from
        the cache when it has them."""
        if multipv < 1:
            raise ValueError("multipv must be at least 1")
        query = f"multipv={multipv}"
        if root_moves is not None:
            query += " root_moves=" + ",".join(sorted(move.uci() for move in root_moves))
        cached = self.cache.get(self.identity, limit, board, query)
        if cached is not None:
            return [Line(*line) for line in cached]
        try:
            infos = self._engine.analyse(
                board,
                limit.to_chess(),
                multipv=multipv,
                root_moves=list(root_moves) if root_moves is not None else None,
                game=object(),  # a new game: ucinewgame clears the hash table
            )
        except (chess.engine.EngineError, chess.engine.EngineTerminatedError) as error:
            raise EngineError(f"{self.binary} failed on {board.fen()}: {error}") from None
        self.searches += 1
        lines = []
        for info in infos:
            if "score" not in info:
                raise EngineError(f"{self.binary} gave no score for {board.fen()}")
            score = info["score"].relative
            pv = info.get("pv") or []
            lines.append(Line(pv[0].uci() if pv else None, score.score(), score.mate()))
        self.cache.put(self.identity, limit, board, [[l.move, l.cp, l.mate] for l in lines], query)
        return lines

    def use_cache(self, cache: EngineCache | str | os.PathLike[str] | None) -> None:
        """Read and write ``cache`` from now on (e.g. once a run directory exists); the
        previous cache is closed."""
        self.cache.close()
        self.cache = cache if isinstance(cache, EngineCache) else EngineCache(cache)

    def close(self) -> None:
        """Stop the engine and close its cache."""
        try:
            self._engine.quit()
        except (chess.engine.EngineError, TimeoutError, RuntimeError):
            self._engine.close()
        self.cache.close()

    def __enter__(self) -> Stockfish:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Line", "Stockfish"]
