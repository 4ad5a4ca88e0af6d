"""One SQLite cache of engine results, keyed by engine identity, limit, position and query.

- *engine*: who searched — the engine's name and version and every option that can change
  its answer (threads, hash size; for lc0 its options and the network's sha256);
- *limit*: :attr:`leelalab.engines.limits.Limit.key`;
- *position*: :func:`position_key` — exactly what the engine is sent;
- *query*: anything else asked (multipv, root moves), ``""`` for a plain search.

Values are JSON. Every write is committed at once, so a killed run keeps every result it
finished and a resumed one starts where it stopped. The file is opened on the first write
when it does not exist yet (a run directory is created by its run), and checked at once when
it does: a file that is not a leelalab engine cache is one :class:`EngineCacheError`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import chess

from leelalab.engines.errors import EngineCacheError
from leelalab.engines.limits import Limit

CACHE_FILE = "engine_cache.sqlite"
"""The cache's file name in a run or task directory."""
CACHE_FORMAT = "leelalab.engine-cache/1"


def position_key(board: chess.Board) -> str:
    """What a UCI engine is sent for ``board``, as python-chess sends it: the root FEN with
    its en-passant square whenever a pawn has just moved two squares (lc0 sees that as a
    pawn move in its history planes, legal capture or not), clocks and castling rights
    (Shredder-FEN for Chess960), then the moves played since (the history).

    A board reached through a null move is sent without history, and keyed so.
    """
    with_history = all(board.move_stack)
    root = board.root() if with_history else board
    fen = root.fen(shredder=board.chess960, en_passant="fen")
    moves = " ".join(move.uci() for move in board.move_stack) if with_history else ""
    return f"{fen} moves {moves}".rstrip()


class EngineCache:
    """Engine results in SQLite (``path=None``: in memory, for one session).

    Example::

        cache = EngineCache(run / CACHE_FILE)
        value = cache.get(engine.identity, limit, board)
        if value is None:
            value = ...  # search
            cache.put(engine.identity, limit, board, value)
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._connection: sqlite3.Connection | None = None
        if self.path is None or self.path.exists():
            self._connect()

    def _connect(self) -> sqlite3.Connection:
        if self._connection is not None:
            return self._connection
        name = str(self.path) if self.path is not None else ":memory:"
        try:
            # A generous busy timeout: two processes may share a task directory's cache.
            connection = sqlite3.connect(name, timeout=60)
        except sqlite3.Error as error:
            raise EngineCacheError(f"{name}: cannot open the engine cache ({error})") from None
        try:
            self._prepare(connection)
        except sqlite3.DatabaseError as error:
            connection.close()
            raise EngineCacheError(
                f"{name}: not a usable engine cache ({error}); delete it to rebuild it"
            ) from None
        self._connection = connection
        return connection

    def _prepare(self, connection: sqlite3.Connection) -> None:
        name = self.path if self.path is not None else ":memory:"
        connection.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = connection.execute("SELECT value FROM meta WHERE key='format'").fetchone()
        if row is None:
            connection.execute("INSERT INTO meta VALUES ('format', ?)", (CACHE_FORMAT,))
        elif row[0] != CACHE_FORMAT:
            raise EngineCacheError(
                f"{name}: an engine cache of another format ({row[0]}); delete it to rebuild it"
            )
        connection.execute(
            "CREATE TABLE IF NOT EXISTS results (engine TEXT NOT NULL, lim TEXT NOT NULL,"
            " position TEXT NOT NULL, query TEXT NOT NULL, value TEXT NOT NULL,"
            " PRIMARY KEY (engine, lim, position, query))"
        )
        connection.commit()

    def _where(self) -> str:
        return str(self.path) if self.path is not None else ":memory:"

    def get(
        self, engine: str, limit: Limit, position: chess.Board | str, query: str = ""
    ) -> Any | None:
        """The stored value, or ``None`` when this search was never made."""
        if self._connection is None:
            if self.path is not None and self.path.exists():
                self._connect()
            else:
                return None
        key = position if isinstance(position, str) else position_key(position)
        try:
            row = (
                self._connect()
                .execute(
                    "SELECT value FROM results WHERE engine=? AND lim=? AND position=? AND query=?",
                    (engine, limit.key, key, query),
                )
                .fetchone()
            )
            return None if row is None else json.loads(row[0])
        except (sqlite3.DatabaseError, ValueError) as error:
            raise EngineCacheError(f"{self._where()}: unreadable engine cache ({error})") from None

    def put(
        self,
        engine: str,
        limit: Limit,
        position: chess.Board | str,
        value: Any,
        query: str = "",
    ) -> None:
        """Store ``value`` (JSON-able) and commit."""
        self.put_many([(engine, limit, position, query, value)])

    def put_many(
        self,
        rows: Iterable[tuple[str, Limit, chess.Board | str, str, Any]],
        *,
        replace: bool = True,
    ) -> None:
        """Store ``(engine, limit, position, query, value)`` rows in one transaction; rows
        already present are replaced (or kept, with ``replace=False``)."""
        encoded = [
            (
                engine,
                limit.key,
                position if isinstance(position, str) else position_key(position),
                query,
                json.dumps(value, allow_nan=False),
            )
            for engine, limit, position, query, value in rows
        ]
        connection = self._connect()
        try:
            with connection:
                connection.executemany(
                    f"INSERT OR {'REPLACE' if replace else 'IGNORE'} INTO results"
                    " VALUES (?, ?, ?, ?, ?)",
                    encoded,
                )
        except sqlite3.DatabaseError as error:
            raise EngineCacheError(
                f"{self._where()}: cannot write the engine cache ({error})"
            ) from None

    def __len__(self) -> int:
        if self._connection is None:
            return 0
        try:
            return int(self._connection.execute("SELECT COUNT(*) FROM results").fetchone()[0])
        except sqlite3.DatabaseError as error:
            raise EngineCacheError(f"{self._where()}: unreadable engine cache ({error})") from None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> EngineCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["CACHE_FILE", "EngineCache", "position_key"]
