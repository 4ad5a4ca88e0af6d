"""Stockfish as ground truth, with a cache so reruns are free.

Every analysis is keyed by the engine's name and version, the position (FEN, clocks
included; Stockfish is given the position alone, without the game's history), the depth,
the number of principal variations and the root moves searched. Results are appended, one
JSON line each, to a cache file; a line cut short by a kill is skipped and counted. The hash
table is cleared before every search (``ucinewgame``), so a result does not depend on what
was searched before it.

Win chances follow Lichess's move classification: ``2 / (1 + exp(-0.00368208 cp)) - 1`` with
centipawns clipped to ±1000 and mates counted as ±1000; a move is a *blunder* when it loses at
least 0.3 of win chances against the best move.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chess
import chess.engine

from leelalab.anomaly.errors import AnomalyError

DEFAULT_STOCKFISH = "/usr/games/stockfish"
BLUNDER_WIN_CHANCE_LOSS = 0.3
CP_CLIP = 1000


def find_stockfish(path: str | os.PathLike[str] | None = None) -> str:
    """The Stockfish binary: ``path`` (which must then exist), ``$LEELALAB_STOCKFISH``,
    Debian's, or on PATH."""
    if path is not None:
        if Path(path).is_file() and os.access(path, os.X_OK):
            return str(path)
        raise AnomalyError(f"{path}: no such Stockfish binary")
    candidates = [os.environ.get("LEELALAB_STOCKFISH"), DEFAULT_STOCKFISH]
    candidates.append(shutil.which("stockfish"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise AnomalyError(
        "Stockfish not found: install it (Debian: apt-get install stockfish) or pass its path"
    )


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
    """A Stockfish process whose analyses are cached in a JSONL file.

    Example::

        with CachedStockfish(cache="sf.jsonl") as engine:
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
        self.binary = find_stockfish(path)
        self.cache_path = Path(cache) if cache is not None else None
        self.threads, self.hash_mb = threads, hash_mb
        self._engine: chess.engine.SimpleEngine | None = None
        self._name: str | None = None
        self._cache: dict[str, list[dict[str, Any]]] = {}
        self.skipped_cache_lines = 0
        self.searches = 0
        if self.cache_path is not None and self.cache_path.is_file():
            with self.cache_path.open(encoding="utf-8") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                        self._cache[record["key"]] = record["lines"]
                    except (ValueError, KeyError, TypeError):
                        self.skipped_cache_lines += 1

    @property
    def engine(self) -> chess.engine.SimpleEngine:
        if self._engine is None:
            try:
                self._engine = chess.engine.SimpleEngine.popen_uci(self.binary)
            except (OSError, chess.engine.EngineError) as error:
                raise AnomalyError(f"{self.binary}: cannot start Stockfish ({error})") from None
            self._engine.configure({"Threads": self.threads, "Hash": self.hash_mb})
            self._name = self._engine.id.get("name", "unknown engine")
        return self._engine

    @property
    def name(self) -> str:
        """The engine's name and version as it reports them (starts the engine)."""
        self.engine  # noqa: B018 - starting the engine reads its name
        return str(self._name)

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
        moves = sorted(m.uci() for m in root_moves) if root_moves is not None else None
        key = json.dumps([self.name, position.fen(), depth, multipv, moves])
        if key not in self._cache:
            self.searches += 1
            infos = self.engine.analyse(
                position,
                chess.engine.Limit(depth=depth),
                multipv=multipv,
                root_moves=list(root_moves) if root_moves is not None else None,
                game=object(),  # a new game: ucinewgame clears the hash table
            )
            lines = []
            for info in infos:
                if "pv" not in info or not info["pv"]:
                    continue
                score = info["score"].pov(position.turn)
                lines.append(
                    {"move": info["pv"][0].uci(), "cp": score.score(), "mate": score.mate()}
                )
            self._cache[key] = lines
            if self.cache_path is not None:
                with self.cache_path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"key": key, "lines": lines}) + "\n")
        return [Line(**line) for line in self._cache[key]]

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
        if self._engine is not None:
            self._engine.quit()
            self._engine = None

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
    "find_stockfish",
    "win_chance_loss",
]
