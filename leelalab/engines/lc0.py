"""lc0's own MCTS through UCI (``chess.engine``), with exactly the node budget asked for.

The ``lc0`` binary is a real component, found by :func:`~leelalab.engines.binaries.find_lc0`;
analyses that need it raise :class:`EngineNotFoundError` (one clear line) when it is absent.

lc0 settings (:data:`LC0_OPTIONS`), chosen so that "``N`` nodes" means ``N`` sequential
PUCT playouts of lc0's own search and ``nodes=1`` is the network's policy alone:

- ``--threads=1 --task-workers=0``: one search thread, no helper threads — the search is
  deterministic and uses one core;
- ``--minibatch-size=1``: every playout is evaluated before the next one is selected (no
  virtual-loss batching, which at small budgets would pick several leaves blindly);
- ``--max-prefetch=0``: with one-position minibatches lc0 would otherwise fill each batch
  with up to 32 speculative evaluations for its cache (they never change the tree, only
  cost time: measured 15× slower at 8 nodes on maia-1900);
- ``--smart-pruning-factor=0``: the search spends its whole budget (by default lc0 stops
  early once no other move can overtake the best one);
- ``--temperature=0`` (lc0's default, stated): the move played is the most visited child;
  at ``nodes=1`` no child is visited and lc0 picks the highest prior, i.e. the policy's top
  move — which the tests check against :func:`leelalab.models.evaluation.evaluate`;
- ``--noise-epsilon=0`` (default): no Dirichlet noise;
- ``--policy-softmax-temp``: lc0's default 1.36 is kept (it flattens the priors the search
  explores with; it does not change the top move);
- ``--cache-history-length=7``: lc0's NN cache key includes the whole history, so a cached
  evaluation always equals a fresh one (with the default 0, a position reached with another
  history could reuse an evaluation made with different history planes);
- a fresh ``ucinewgame`` before every search (a new ``game`` object in python-chess): no
  tree is reused from an earlier search, so every budget is a search from scratch.

Positions are sent as ``position fen ROOT moves …`` (the board's move stack), so lc0 sees the
same history planes as :func:`~leelalab.models.evaluation.evaluate` with ``history="lc0"``.
Every search has a wall-clock guard (lc0 v0.31 can loop forever on some V2 input formats);
a search that overruns kills the engine and raises :class:`EngineError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import chess
import chess.engine

from leelalab.engines.binaries import find_lc0
from leelalab.engines.cache import EngineCache
from leelalab.engines.errors import EngineError
from leelalab.engines.limits import Limit

LC0_OPTIONS: dict[str, str] = {
    "threads": "1",
    "task-workers": "0",
    "minibatch-size": "1",
    "max-prefetch": "0",
    "smart-pruning-factor": "0",
    "temperature": "0",
    "noise-epsilon": "0",
    "cache-history-length": "7",
}
"""Command-line options every lc0 search runs with (see the module docstring)."""


def lc0_identity(version: str, options: dict[str, str], weights_sha256: str) -> str:
    """Everything besides the position and the node budget that decides lc0's move: its
    version, its options and the network (the cache's engine key)."""
    return f"lc0 {version} {json.dumps(options, sort_keys=True)} weights={weights_sha256}"


def lc0_version(binary: str) -> str:
    """lc0's version line (e.g. ``v0.31.0-dev+git.unknown``)."""
    try:
        result = subprocess.run(
            [binary, "--help"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise EngineError(f"cannot run {binary}: {error}") from None
    match = re.search(r"v\d+\.\d+\.\d+\S*", result.stdout + result.stderr)
    return match.group(0) if match else "unknown"


def backendbench(
    binary: str, weights: str | os.PathLike[str], *, batches: int = 200, timeout: float = 600
) -> float:
    """Network evaluations per second of ``lc0 backendbench`` at batch size 1, one thread
    (the reference the search speed is compared with, measured in the same run)."""
    command = [
        binary,
        "backendbench",
        f"--weights={weights}",
        "--threads=1",
        f"--batches={batches}",
        "--start-batch-size=1",
        "--max-batch-size=1",
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise EngineError(f"lc0 backendbench failed: {error}") from None
    match = re.search(r"throughput\s+([\d.]+)\s*nps", result.stdout + result.stderr)
    if match is None:
        raise EngineError(f"lc0 backendbench printed no throughput: {result.stderr[-300:]}")
    return float(match.group(1))


@dataclass(frozen=True)
class SearchResult:
    """The move lc0 plays after ``nodes`` playouts, and what it reported."""

    move: str
    nodes: int
    """The node count lc0 reported (its tree's visits, the root's included)."""
    seconds: float


class Lc0Engine:
    """One lc0 UCI process with one network (a context manager)."""

    def __init__(
        self,
        weights: str | os.PathLike[str],
        *,
        binary: str | None = None,
        options: dict[str, str] | None = None,
        timeout_base: float = 60.0,
        timeout_per_node: float = 0.2,
    ) -> None:
        self.binary = find_lc0(binary)
        self.weights = str(weights)
        self.options = dict(LC0_OPTIONS if options is None else options)
        self.timeout_base = timeout_base
        self.timeout_per_node = timeout_per_node
        command = [self.binary, f"--weights={self.weights}"] + [
            f"--{name}={value}" for name, value in self.options.items()
        ]
        try:
            self.engine = chess.engine.SimpleEngine.popen_uci(
                command, timeout=timeout_base, stderr=subprocess.DEVNULL
            )
        except (OSError, chess.engine.EngineError, TimeoutError) as error:
            raise EngineError(f"cannot start lc0 with {self.weights}: {error}") from None

    def best_move(self, board: chess.Board, nodes: int) -> SearchResult:
        """lc0's move in ``board`` (its move stack is the history) after ``nodes`` playouts."""
        if nodes < 1:
            raise ValueError("nodes must be at least 1")
        if board.is_game_over(claim_draw=False):
            raise ValueError(f"no move to search in a finished game: {board.fen()}")
        limit = chess.engine.Limit(nodes=nodes)
        timeout = self.timeout_base + self.timeout_per_node * nodes
        started = time.perf_counter()
        # A new game object: python-chess sends ucinewgame, so no tree is reused.
        play = self.engine.protocol.play(board, limit, game=object(), info=chess.engine.INFO_BASIC)
        future = asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(play, timeout), self.engine.protocol.loop
        )
        try:
            result = future.result()
        except TimeoutError:
            self.close()
            raise EngineError(
                f"lc0 overran {timeout:.0f} s on {board.fen()} at {nodes} nodes; killed"
            ) from None
        except chess.engine.EngineError as error:
            self.close()
            raise EngineError(f"lc0 failed on {board.fen()}: {error}") from None
        if result.move is None:
            raise EngineError(f"lc0 returned no move for {board.fen()}")
        return SearchResult(
            result.move.uci(), int(result.info.get("nodes", 0)), time.perf_counter() - started
        )

    def close(self) -> None:
        try:
            self.engine.quit()
        except (chess.engine.EngineError, TimeoutError, RuntimeError):
            self.engine.close()

    def __enter__(self) -> Lc0Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


LEGACY_CACHE_FILE = "search_cache.sqlite"
"""The lc0 cache of earlier versions of ``analyze search``, imported into the engine cache
when a run resumes (:func:`import_legacy_cache`)."""


def import_legacy_cache(path: str | os.PathLike[str], cache: EngineCache) -> int:
    """Copy the searches of an earlier version's ``search_cache.sqlite`` into ``cache``
    (its key was ``lc0 VERSION OPTIONS`` and the network's sha256; :func:`lc0_identity` is
    both). An unreadable legacy file is ignored: a cache is not a result. Returns the rows
    copied; what the engine cache already holds stays."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as old:
            rows = old.execute(
                "SELECT network, engine, position, nodes, move, reported_nodes, seconds"
                " FROM searches"
            ).fetchall()
    except sqlite3.Error:
        return 0
    cache.put_many(
        [
            (
                f"{engine} weights={network}",
                Limit(nodes=int(nodes)),
                position,
                "",
                {"move": move, "nodes": reported, "seconds": seconds},
            )
            for network, engine, position, nodes, move, reported, seconds in rows
        ],
        replace=False,  # what this version searched stays
    )
    return len(rows)


__all__ = [
    "LC0_OPTIONS",
    "LEGACY_CACHE_FILE",
    "Lc0Engine",
    "SearchResult",
    "backendbench",
    "import_legacy_cache",
    "lc0_identity",
    "lc0_version",
]
