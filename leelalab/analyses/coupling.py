"""Policy–value coupling along puzzle lines (the critics' "right move, doesn't know why").

For every puzzle with at least two solver moves (not mate-in-1), the strong network's value
``W − L`` is taken from the solver's point of view at three points of the line: the root
(solver to move), after the solver's 1st move, and after the whole line (``nan`` when the
line ends the game: a mated position has no value to ask the network for). It is compared

- with the policy's correctness on the line (every solver move the top-1 move, teacher-
  forced — within each stratum the 1st move is right by construction); and
- with Stockfish's evaluation of the same positions, for the paper stratum and a seeded
  random sample of the others (Stockfish is costly on two shared cores).

"Value says winning" means ``W − L > threshold`` (default 0: the solver is expected to score
more than the opponent); "Stockfish says winning" means at least ``+200`` centipawns or a
mate for the solver. Tables are 2×2 with odds ratios (Woolf intervals) and φ (bootstrap).

On disk (``OUTPUT/``): ``coupling.h5`` (one row per puzzle), ``chunks/``, ``settings.json``,
``run.json`` and ``engine_cache.sqlite`` (:mod:`leelalab.engines`: Stockfish's lines keyed
by engine identity, limit and position). Stockfish sees each position with its history and a
cleared hash. A ``stockfish_cache.sqlite`` of earlier versions is not read: its scores were
searched on a hash left by the previous search, so they are searched again.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import chess
import numpy as np

from leelalab.analyses.predictions import PuzzleTable
from leelalab.analyses.scoring import puzzle_from_record
from leelalab.analyses.settings import CouplingSettings
from leelalab.analyses.strata import STRATA
from leelalab.engines import CACHE_FILE, Limit, Stockfish, find_stockfish
from leelalab.errors import LeelaLabError
from leelalab.runs.experiment import Results
from leelalab.runs.records import format_name
from leelalab.stats import (
    Estimate,
    contingency,
    mean_ci,
    odds_ratio_ci,
    phi_ci,
    proportion_ci,
)

RESULTS_FILE = "coupling.h5"
RESULTS_FORMAT = format_name("coupling", 1)
"""Written as ``leelalab.analyses.coupling/1`` before the one format scheme (still read)."""
RESULTS_HINT = "give an `analyze coupling` output directory (or its coupling.h5)"
POINTS = ("root", "first", "end")
"""Where along the line the value is read: the root, after the 1st move, after the line."""
SETS = ("structural", *STRATA)
WINNING_CP = 200
MATE_CP = 10_000


def _solver_value(wdl: list[float], solver_to_move: bool) -> float:
    value = float(wdl[0]) - float(wdl[2])
    return value if solver_to_move else -value


def line_boards(record: dict[str, Any]) -> dict[str, chess.Board]:
    """The root, after-1st-move and end-of-line boards (with history) of a record."""
    puzzle = puzzle_from_record(record)
    board = chess.Board(puzzle.fen)
    board.push_uci(puzzle.moves[0])
    root = board.copy()
    board.push_uci(puzzle.moves[1])
    first = board.copy()
    for uci in puzzle.moves[2:]:
        board.push_uci(uci)
    return {"root": root, "first": first, "end": board}


def stockfish_cp(engine: Stockfish, board: chess.Board, depth: int, solver: chess.Color) -> int:
    """Stockfish's score of ``board`` (history included) for ``solver`` in centipawns
    (mates ±10000)."""
    if board.is_checkmate():
        return -MATE_CP if board.turn == solver else MATE_CP
    if board.is_game_over(claim_draw=False):
        return 0
    line = engine.analyse(board, Limit(depth=depth))[0]
    return int(line.score(board.turn).pov(solver).score(mate_score=MATE_CP))


def coupling_sample(table: PuzzleTable, size: int, seed: int = 0) -> np.ndarray:
    """Mask of the puzzles Stockfish evaluates: the paper stratum and ``size`` others of the
    structural set (a seeded shuffle's prefix)."""
    structural = np.nonzero(table.strata["structural"])[0].tolist()
    random.Random(seed).shuffle(structural)
    mask = table.strata["paper"].copy()
    mask[structural[:size]] = True
    return mask & table.strata["structural"]


def run_coupling(
    settings: CouplingSettings,
    directory: str | os.PathLike[str],
    output: str | os.PathLike[str],
    network: Any,
    *,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Network values along every structural line, Stockfish on a sample; resumable.
    Returns the merged ``coupling.h5``."""
    from leelalab.analyses.outputs import run_job_in_chunks
    from leelalab.runs.results import ChunkPlan, sha256_file

    binary = find_stockfish(settings.stockfish)
    directory, output = Path(directory), Path(output)
    table = PuzzleTable.from_dataset(directory)
    chosen = coupling_sample(table, settings.sample, settings.seed)
    rows = np.nonzero(table.strata["structural"])[0].tolist()
    if not rows:
        raise LeelaLabError(f"{directory}: no puzzle with two solver moves (not mate-in-1)")
    dataset_sha256 = sha256_file(directory / "dataset.jsonl")
    job = _CouplingJob(table, chosen, network, binary, settings.depth)  # starts Stockfish
    record = {
        "experiment": "policy_value_coupling",
        "dataset": str(directory.resolve()),
        "dataset_sha256": dataset_sha256,
        "network": network.source,
        "network_sha256": network.sha256,
        "stockfish": job.engine_id,
        "stockfish_limit": job.limit,
        "sample": settings.sample,
        "seed": settings.seed,
    }
    return run_job_in_chunks(
        job,
        rows,
        output,
        record,
        ChunkPlan(
            chunk_size=settings.chunk_size,
            results_file=RESULTS_FILE,
            attrs={"format": RESULTS_FORMAT, "stockfish": job.engine_id, "limit": job.limit},
            run_record={"results_format": RESULTS_FORMAT, "stockfish_puzzles": int(chosen.sum())},
            description="coupling",
        ),
        progress=progress,
        overwrite=overwrite,
    )


class _CouplingJob:
    """One chunk of structural puzzles: the network's values along each line, Stockfish's
    scores for the sampled ones (from the cache, else searched)."""

    def __init__(
        self, table: PuzzleTable, chosen: np.ndarray, network: Any, binary: str, depth: int
    ) -> None:
        self.table, self.chosen, self.network, self.depth = table, chosen, network, depth
        # Hash cleared before every search (leelalab.engines); its identity is recorded.
        self.engine = Stockfish(binary, threads=1, hash_mb=64)
        self.engine_id = self.engine.name
        self.limit = Limit(depth=depth).key

    def open_cache(self, directory: Path) -> None:
        """Opened once the run directory exists (run_in_chunks' `before`), resumed with it."""
        self.engine.use_cache(directory / CACHE_FILE)

    def close(self) -> None:
        self.engine.close()

    def __call__(self, chunk: list[int]) -> dict[str, Any]:
        from leelalab.models.evaluation import evaluate

        records = [self.table.records[i] for i in chunk]
        boards = [line_boards(record) for record in records]
        solvers = [b["root"].turn for b in boards]
        ends = [b["end"] for b in boards]
        playable = [not board.is_game_over(claim_draw=False) for board in ends]
        end_evaluations = iter(
            evaluate(self.network, [b for b, ok in zip(ends, playable, strict=True) if ok])
        )
        arrays: dict[str, Any] = {
            "puzzle_ids": [record["id"] for record in records],
            "value_root": np.array([_solver_value(r["strong_wdl"][0], True) for r in records]),
            "value_first": np.array([_solver_value(r["strong_wdl"][1], False) for r in records]),
            "value_end": np.array(
                [
                    _solver_value(list(next(end_evaluations).wdl), board.turn == solver)
                    if ok
                    else math.nan
                    for board, solver, ok in zip(ends, solvers, playable, strict=True)
                ]
            ),
            "stockfish": np.array([bool(self.chosen[i]) for i in chunk]),
        }
        for point in POINTS:
            arrays[f"stockfish_{point}"] = np.array(
                [
                    self._score(line[point], solver) if self.chosen[i] else math.nan
                    for i, line, solver in zip(chunk, boards, solvers, strict=True)
                ]
            )
        return arrays

    def _score(self, board: chess.Board, solver: chess.Color) -> float:
        """Stockfish's score (from the engine cache when it has it)."""
        return float(stockfish_cp(self.engine, board, self.depth, solver))


# ----------------------------------------------------------------------------- tables


@dataclass
class CouplingTable:
    """One set's coupling numbers."""

    name: str
    n: int
    values: dict[str, Estimate]
    """Mean W − L (solver's view) at each point."""
    winning: dict[str, Estimate]
    """Fraction with W − L > threshold at each point."""
    policy_value: dict[str, Any]
    """2×2 (policy right on the line × value winning after the 1st move): table, OR, φ."""
    stockfish: dict[str, dict[str, Any]]
    """Per point: 2×2 (value winning × Stockfish winning), OR, φ, n."""

    def to_json(self) -> dict[str, Any]:
        def encode(value: Any) -> Any:
            if isinstance(value, Estimate):
                return value.to_json()
            if isinstance(value, dict):
                return {k: encode(v) for k, v in value.items()}
            if isinstance(value, np.ndarray):
                return value.tolist()
            return value

        return encode(
            {
                "name": self.name,
                "n": self.n,
                "values": self.values,
                "winning": self.winning,
                "policy_value": self.policy_value,
                "stockfish": self.stockfish,
            }
        )


def _two_by_two(first: np.ndarray, second: np.ndarray, seed: int) -> dict[str, Any]:
    table = contingency(first, second)
    margins = np.concatenate([table.sum(axis=0), table.sum(axis=1)])
    # With an empty row or column (e.g. the policy right on every puzzle of the paper's
    # stratum) there is no association to measure: undefined, not a Haldane-corrected 1.
    odds = (
        Estimate(math.nan, math.nan, math.nan, int(first.size))
        if (margins == 0).any()
        else odds_ratio_ci(table)
    )
    return {
        "table": table,
        "odds_ratio": odds,
        "phi": phi_ci(first, second, seed=seed, resamples=1000),
        "n": int(first.size),
    }


def coupling_tables(
    directory: str | os.PathLike[str],
    results: str | os.PathLike[str],
    *,
    threshold: float = 0.0,
    seed: int = 0,
) -> list[CouplingTable]:
    """Per set (the structural superset and each stratum): values, winning fractions and
    the two kinds of 2×2 tables."""
    from leelalab.runs.records import read_result
    from leelalab.runs.results import ResultsError

    path = Path(results)
    if path.is_dir():
        path = path / RESULTS_FILE
    arrays, _ = read_result(path, RESULTS_FORMAT, hint=RESULTS_HINT)
    table = PuzzleTable.from_dataset(directory)
    position = {pid: i for i, pid in enumerate(table.ids)}
    rows = np.array([position.get(str(pid), -1) for pid in arrays["puzzle_ids"]])
    if (rows < 0).any():
        raise ResultsError(f"{path}: puzzles not in {directory}; was it made from another run?")
    out = []
    for name in SETS:
        member = table.strata[name][rows]
        line_right = table.first_correct[rows] & table.later_correct[rows]
        values, winning = {}, {}
        for point in POINTS:
            value = arrays[f"value_{point}"][member]
            value = value[np.isfinite(value)]
            values[point] = mean_ci(value, seed=seed)
            winning[point] = proportion_ci(int((value > threshold).sum()), int(value.size))
        first_value = arrays["value_first"][member] > threshold
        policy_value = _two_by_two(line_right[member], first_value, seed)
        stockfish = {}
        for point in POINTS:
            value = arrays[f"value_{point}"][member]
            cp = arrays[f"stockfish_{point}"][member]
            ok = np.isfinite(value) & np.isfinite(cp) & arrays["stockfish"][member]
            stockfish[point] = _two_by_two(value[ok] > threshold, cp[ok] >= WINNING_CP, seed)
        out.append(CouplingTable(name, int(member.sum()), values, winning, policy_value, stockfish))
    return out


def _pair_from_json(data: dict[str, Any]) -> dict[str, Any]:
    """A :func:`_two_by_two` entry read back from its JSON."""
    return {
        "table": np.array(data["table"], dtype=np.int64),
        "odds_ratio": Estimate.from_json(data["odds_ratio"]),
        "phi": Estimate.from_json(data["phi"]),
        "n": int(data["n"]),
    }


def table_from_json(data: dict[str, Any]) -> CouplingTable:
    """The :class:`CouplingTable` that :meth:`CouplingTable.to_json` wrote."""
    return CouplingTable(
        str(data["name"]),
        int(data["n"]),
        {point: Estimate.from_json(value) for point, value in data["values"].items()},
        {point: Estimate.from_json(value) for point, value in data["winning"].items()},
        _pair_from_json(data["policy_value"]),
        {point: _pair_from_json(value) for point, value in data["stockfish"].items()},
    )


@dataclass
class CouplingResults(Results):
    """Every set's coupling tables (``coupling_tables.json`` beside ``coupling.h5``)."""

    FORMAT: ClassVar[str] = format_name("coupling-tables", 1)
    FILE: ClassVar[str] = "coupling_tables.json"
    HINT: ClassVar[str] = "run `leelalab analyze coupling`"

    threshold: float = 0.0
    tables: list[CouplingTable] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.FORMAT,
            "threshold": self.threshold,
            "tables": [table.to_json() for table in self.tables],
        }

    @classmethod
    def from_json(cls, data: Any) -> CouplingResults:
        return cls(float(data["threshold"]), [table_from_json(t) for t in data["tables"]])
