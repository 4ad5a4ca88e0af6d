"""The mechanism-distinction task: the same (correct) move for different reasons.

Positions are the solver's positions along Lichess puzzle lines (root = the puzzle FEN,
history = the line so far). Only positions where the network plays the puzzle move as its
top move *and* Stockfish at ``deep_depth`` confirms that move as best are kept: the output
is always the right move. Labels come from Stockfish alone (never from a weak network, which
would hand the distillation detectors the task by construction):

- **normal** (``shallow``): the move is also Stockfish's best at depth 1 (a shallow search,
  quiescence included: captures and checks that pay off at once);
- **anomalous** (``deep``): the move is best only at depth — a sacrifice or a quiet move
  that the shallow search rejects.

The two classes are matched on rating (200-point bins), game phase (non-pawn material:
endgame < 20 ≤ middlegame < 40 ≤ opening, in pawn units, both sides) and whether the
position is the line's first solver move: in each cell the larger class is subsampled
(seeded) to the smaller's size, within the pool and within the test split; the matching
before and after is recorded in ``task.json``. Splits are by puzzle: 40% of the puzzles give
the trusted positions (all their normal positions: trusted data need no matching, as both
test classes are matched to each other), 20% the pool, 40% the test set.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import chess
import numpy as np

from leelalab.anomaly.errors import AnomalyError
from leelalab.anomaly.positions import position_of, replay, write_task
from leelalab.anomaly.settings import TaskSettings
from leelalab.anomaly.stockfish import CachedStockfish
from leelalab.engines import CACHE_FILE
from leelalab.models.base import LeelaNetwork
from leelalab.models.evaluation import evaluate
from leelalab.puzzles.reader import SkipReport, iter_puzzles, shipped_puzzles_path
from leelalab.runs.results import ChunkPlan, read_h5, run_in_chunks, sha256_file

PIECE_VALUES = {chess.KNIGHT: 3, chess.BISHOP: 3, chess.ROOK: 5, chess.QUEEN: 9}


def phase(board: chess.Board) -> str:
    """``opening``, ``middlegame`` or ``endgame`` by non-pawn material (both sides)."""
    material = sum(PIECE_VALUES.get(p.piece_type, 0) for p in board.piece_map().values())
    return "endgame" if material < 20 else "middlegame" if material < 40 else "opening"


def candidates(path: Path, limit: int | None, report: SkipReport) -> list[dict[str, Any]]:
    """Every solver position of every puzzle: root FEN, line so far, the puzzle move."""
    found = []
    for puzzle in iter_puzzles(path, limit=limit, report=report):
        for ply in range(1, len(puzzle.moves), 2):
            found.append(
                {
                    "puzzle": puzzle.id,
                    "fen": puzzle.fen,
                    "moves": list(puzzle.moves[:ply]),
                    "move": puzzle.moves[ply],
                    "rating": puzzle.rating if puzzle.rating is not None else -1,
                    "first": ply == 1,
                }
            )
    return found


def _matched(
    rows: list[dict[str, Any]], rating_bin: int, rng: np.random.Generator
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    def cell(row: dict[str, Any]) -> tuple[int, str, bool]:
        return (row["rating"] // rating_bin, row["phase"], row["first"])

    cells: dict[tuple[int, str, bool], dict[bool, list[int]]] = {}
    for index, row in enumerate(rows):
        cells.setdefault(cell(row), {False: [], True: []})[row["deep"]].append(index)
    kept: list[int] = []
    for members in cells.values():
        size = min(len(members[False]), len(members[True]))
        for label in (False, True):
            chosen = rng.choice(members[label], size, replace=False) if size else []
            kept.extend(int(i) for i in chosen)
    matched = [rows[i] for i in sorted(kept)]

    def describe(subset: list[dict[str, Any]]) -> dict[str, Any]:
        result = {}
        for label, name in ((False, "normal"), (True, "anomalous")):
            members = [r for r in subset if r["deep"] == label]
            ratings = np.array([r["rating"] for r in members], dtype=np.float64)
            result[name] = {
                "positions": len(members),
                "rating_mean": float(ratings.mean()) if ratings.size else None,
                "rating_sd": float(ratings.std()) if ratings.size else None,
                "phase": dict(Counter(r["phase"] for r in members)),
                "first_move": sum(r["first"] for r in members),
            }
        return result

    return matched, {
        "cells": "rating bin x phase x first solver move",
        "rating_bin": rating_bin,
        "before": describe(rows),
        "after": describe(matched),
    }


def puzzles_path(settings: TaskSettings) -> Path:
    return Path(settings.puzzles) if settings.puzzles is not None else shipped_puzzles_path()


def check_puzzles(settings: TaskSettings) -> str:
    """The sha256 of the puzzle file, after checking that it holds a valid puzzle (one
    line naming the file otherwise)."""
    path = puzzles_path(settings)
    if not path.is_file():
        raise AnomalyError(f"{path}: no such puzzle file")
    if next(iter_puzzles(path, limit=1, report=SkipReport()), None) is None:
        raise AnomalyError(f"{path}: no valid puzzles (a header only?); nothing to build")
    return sha256_file(path)


def _network_solves(
    network: LeelaNetwork,
    rows: list[dict[str, Any]],
    work: Path,
    base: dict[str, Any],
    progress: bool,
) -> list[dict[str, Any]]:
    """The solver positions where the network's top move is the puzzle move."""

    def network_moves(chunk: list[dict[str, Any]]) -> dict[str, Any]:
        boards = [replay(r["fen"], r["moves"]) for r in chunk]
        tops = [next(iter(e.policy)) for e in evaluate(network, boards, batch_size=256)]
        return {"top": tops}

    tops = read_h5(
        run_in_chunks(
rows,
work,
base,
network_moves,
ChunkPlan(results_file="moves.h5", attrs={}, chunk_size=1024, description="network"),
progress=progress,
)
    )[0]["top"]  # fmt: skip
    return [r for r, top in zip(rows, tops, strict=True) if top == r["move"]]


def _confirmed_by_stockfish(
    settings: TaskSettings,
    solved: list[dict[str, Any]],
    output: Path,
    base: dict[str, Any],
    progress: bool,
) -> tuple[list[dict[str, Any]], str]:
    """The positions whose move Stockfish confirms at depth, labelled ``deep`` when the
    shallow search does not find it; and the engine's name."""
    deep_depth, shallow_depth = settings.deep_depth or None, settings.shallow_depth
    with CachedStockfish(settings.stockfish, cache=output / CACHE_FILE) as engine:
        chunk_settings = {**base, "engine": engine.name, "deep": deep_depth,
                          "shallow": shallow_depth}  # fmt: skip

        def label(chunk: list[dict[str, Any]]) -> dict[str, Any]:
            deep, shallow = [], []
            for row in chunk:
                board = replay(row["fen"], row["moves"])
                deep.append(engine.best(board, deep_depth).move if deep_depth else row["move"])
                shallow.append(engine.best(board, shallow_depth).move)
            return {"deep": deep, "shallow": shallow}

        labels = read_h5(
            run_in_chunks(
solved,
output / "work" / "stockfish",
chunk_settings,
label,
ChunkPlan(results_file="labels.h5", attrs={}, chunk_size=128, description="stockfish"),
progress=progress,
)
        )[0]  # fmt: skip
        engine_name = engine.name
    confirmed = []
    for row, deep, shallow in zip(solved, labels["deep"], labels["shallow"], strict=True):
        if deep != row["move"]:
            continue
        board = replay(row["fen"], row["moves"])
        confirmed.append({**row, "deep": shallow != row["move"], "phase": phase(board)})
    return confirmed, engine_name


def _split_by_puzzle(
    settings: TaskSettings, confirmed: list[dict[str, Any]], rng: np.random.Generator
) -> tuple[dict[str, str], dict[str, int]]:
    """Each puzzle's split (seeded), and how many puzzles each split has."""
    puzzle_ids = sorted({r["puzzle"] for r in confirmed})
    order = rng.permutation(len(puzzle_ids))
    n_trusted = int(round(settings.trusted_fraction * len(puzzle_ids)))
    n_pool = int(round(settings.pool_fraction * len(puzzle_ids)))
    split_of = {}
    for rank, index in enumerate(order):
        split_of[puzzle_ids[index]] = (
            "trusted" if rank < n_trusted else "pool" if rank < n_trusted + n_pool else "test"
        )
    test = len(puzzle_ids) - n_trusted - n_pool
    return split_of, {"trusted": n_trusted, "pool": n_pool, "test": test}


def build_mechanism_task(
    settings: TaskSettings,
    network: LeelaNetwork,
    output: str | os.PathLike[str],
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Build the look-ahead-versus-shallow task from a Lichess puzzle file: positions and
    ``task.json``; returns what ``task.json`` says.

    ``deep_depth=0`` trusts the puzzle's move as Stockfish's best (Lichess generates
    puzzles with a deep Stockfish search) instead of re-checking it.
    """
    output = Path(output)
    work = output / "work"
    path = puzzles_path(settings)
    limit, seed, rating_bin = settings.limit, settings.seed, settings.rating_bin
    report = SkipReport()
    rows = candidates(path, limit, report)
    base = {"puzzles_sha256": sha256_file(path), "limit": limit, "network_sha256": network.sha256}
    solved = _network_solves(network, rows, work / "network", base, progress)
    confirmed, engine_name = _confirmed_by_stockfish(settings, solved, output, base, progress)
    rng = np.random.default_rng(seed)
    split_of, puzzles = _split_by_puzzle(settings, confirmed, rng)
    # Trusted: every normal position of the trusted puzzles. Pool and test: the two classes
    # matched within each split, so no detector can win by rating, phase or line position.
    chosen = [r for r in confirmed if split_of[r["puzzle"]] == "trusted" and not r["deep"]]
    matching = {}
    for split in ("pool", "test"):
        rows_in_split = [r for r in confirmed if split_of[r["puzzle"]] == split]
        matched, matching[split] = _matched(rows_in_split, rating_bin, rng)
        chosen += matched
    positions = [
        position_of(
            replay(row["fen"], row["moves"]),
            split=split_of[row["puzzle"]],
            anomalous=row["deep"],
            kind="deep" if row["deep"] else "shallow",
            group=row["puzzle"],
            info={"rating": row["rating"], "phase": row["phase"], "first": row["first"],
                  "move": row["move"]},
        )
        for row in chosen
    ]  # fmt: skip
    deep_depth, shallow_depth = settings.deep_depth or None, settings.shallow_depth
    meta = {
        "task": "mechanism",
        "network": network.source,
        "network_sha256": network.sha256,
        "weak": settings.weak,
        "anomalous": f"the move is Stockfish's best at depth {deep_depth or 'lichess'} but not "
        f"at depth {shallow_depth}",
        "history": "the puzzle line so far (root = the puzzle FEN)",
        "funnel": {
            "puzzle_rows": report.rows,
            "puzzles_kept": report.kept,
            "solver_positions": len(rows),
            "network_plays_puzzle_move": len(solved),
            "stockfish_confirms": len(confirmed),
            "anomalous_in_confirmed": sum(r["deep"] for r in confirmed),
            "puzzles": puzzles,
        },
        "matching": matching,
        "engine": engine_name,
        "puzzles": str(path),
        "settings": {
            "deep_depth": deep_depth, "shallow_depth": shallow_depth, "rating_bin": rating_bin,
            "trusted_fraction": settings.trusted_fraction,
            "pool_fraction": settings.pool_fraction, "seed": seed,
            "limit": limit,
        },
    }  # fmt: skip
    return write_task(output, positions, meta)


__all__ = ["build_mechanism_task", "candidates", "check_puzzles", "phase"]
