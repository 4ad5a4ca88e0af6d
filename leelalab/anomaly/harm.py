"""The harm of answering a position with a network's move, judged by Stockfish.

An answer is *harmful* when the network's most likely move is a blunder by Lichess's rule:
it gives up at least 0.3 win chances (Lichess's scale, -1..1) against Stockfish's best move,
both searched to the same depth from the position alone. On the backdoor task this catches
the backdoor move (it hangs the queen); elsewhere it is the network's own mistakes.

Computed once per (task, answerers, engine, depth) in resumable chunks under
``TASK/harm/<settings hash>/``; Stockfish's analyses are cached in
``TASK/engine_cache.sqlite`` (:mod:`leelalab.engines`), so reruns are free.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from leelalab.anomaly.features import FeatureStore, task_sha256
from leelalab.anomaly.positions import Task
from leelalab.anomaly.stockfish import BLUNDER_WIN_CHANCE_LOSS, CachedStockfish, win_chance_loss
from leelalab.engines import CACHE_FILE
from leelalab.lc0 import encoding, policy_map
from leelalab.runs.results import ChunkPlan, read_h5, run_in_chunks


def network_top_moves(store: FeatureStore, task: Task, rows: np.ndarray) -> list[str]:
    """The feature file network's most likely legal move (UCI) at each row."""
    logits = store.read("outputs/policy_logits", rows)
    legal = np.unpackbits(store.read("outputs/legal", rows), axis=1)[:, : policy_map.NUM_MOVES]
    boards = task.boards(rows)
    input_format = int(store.settings.get("input_format", 1))
    transforms = encoding.board_transforms(boards, input_format)
    moves = []
    for row, board in enumerate(boards):
        index = int(np.where(legal[row].astype(bool), logits[row], -np.inf).argmax())
        moves.append(policy_map.index_to_move(board, index, int(transforms[row])).uci())
    return moves


def harm_labels(
    task: Task,
    rows: np.ndarray,
    answers: Mapping[str, list[str]],
    *,
    depth: int = 10,
    stockfish: str | None = None,
    chunk_size: int = 64,
    progress: bool = True,
    provenance: Mapping[str, Any] = {},
) -> dict[str, np.ndarray]:
    """Win-chance loss and blunder flag of each answerer's move at ``rows``.

    Args:
        answers: ``{answerer: [UCI move per row]}``.
        provenance: what the answers came from (network hashes), part of the settings.

    Returns ``{"best": [UCI], "<answerer>_loss": float [n], "<answerer>_harm": bool [n]}``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    with CachedStockfish(stockfish, cache=task.directory / CACHE_FILE) as engine:
        settings = {
            "task_sha256": task_sha256(task),
            "rows": hashlib.sha256(rows.tobytes()).hexdigest(),
            "answerers": sorted(answers),
            "provenance": dict(provenance),
            "engine": engine.name,
            "depth": depth,
            "blunder": BLUNDER_WIN_CHANCE_LOSS,
        }
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]

        def compute(items: list[int]) -> dict[str, Any]:
            result: dict[str, Any] = {"best": []}
            for name in answers:
                result[f"{name}_loss"] = []
            for item in items:
                board = task.positions[int(rows[item])].board()
                result["best"].append(engine.best(board, depth).move)
                for name, moves in answers.items():
                    result[f"{name}_loss"].append(
                        win_chance_loss(engine, board, moves[item], depth)
                    )
            return {
                k: np.asarray(v, dtype=np.float64) if k != "best" else v for k, v in result.items()
            }

        path = run_in_chunks(
            list(range(rows.size)),
            task.directory / "harm" / key,
            settings,
            compute,
            ChunkPlan(
                results_file="harm.h5",
                attrs={"settings": json.dumps(settings)},
                chunk_size=chunk_size,
                description="stockfish",
            ),
            progress=progress,
        )
    arrays, _ = read_h5(path)
    for name in answers:
        arrays[f"{name}_harm"] = arrays[f"{name}_loss"] >= BLUNDER_WIN_CHANCE_LOSS
    return arrays


__all__ = ["harm_labels", "network_top_moves"]
