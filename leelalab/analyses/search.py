"""Search-budget and depth curves: puzzle accuracy of a network alone and with lc0's MCTS.

For a stratified random sample of a filter run's puzzles (strata: line length × rating band,
so long lines and every rating band get enough puzzles), every solver position of every line
is searched by lc0 (:mod:`leelalab.engines.lc0`) with each network at each node
budget (default 1, 8, 32, 128, 512), and also evaluated by the network in PyTorch (its top
policy move: "the network alone", which lc0 at one node must equal). Puzzles are scored with
:mod:`leelalab.analyses.scoring` (every solver move, teacher-forced; a mate always counts).

Derived: accuracy by line length and by rating band per (network, budget); the search gain
``acc(512) − acc(1)`` per line length (paired per puzzle); and the budget at which the weak
network with search matches the strong network alone (population-weighted accuracies, the
stratified sample reweighted to the whole run, with intervals at the sample's effective size
so that they widen as cells get fewer puzzles).

On disk (``OUTPUT/``): ``engine_cache.sqlite`` (:mod:`leelalab.engines`: every lc0 result
keyed by lc0 version, options and network sha256, position and node budget — reruns and
other runs with the same cache are free; a ``search_cache.sqlite`` of earlier versions is
imported into it), ``chunks/`` and ``search.h5`` (one row per puzzle: the line, strata, sample
weight and each player's moves), ``settings.json``, ``run.json`` (with the benchmark:
positions per second at each budget next to ``lc0 backendbench`` measured in the same run).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import queue
import random
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chess
import numpy as np

from leelalab.analyses.scoring import (
    n_solver_moves,
    puzzle_from_record,
    score_puzzle,
    solver_positions,
)
from leelalab.analyses.settings import SearchSettings
from leelalab.analyses.strata import STRATA, strata_of
from leelalab.engines import (
    CACHE_FILE,
    LC0_OPTIONS,
    EngineCache,
    Lc0Engine,
    Limit,
    find_lc0,
    lc0_identity,
    position_key,
)
from leelalab.engines.lc0 import (
    LEGACY_CACHE_FILE,
    backendbench,
    import_legacy_cache,
    lc0_version,
)
from leelalab.errors import LeelaLabError
from leelalab.puzzles.dataset import iter_dataset
from leelalab.runs.records import format_name
from leelalab.stats import (
    Estimate,
    bootstrap,
    proportion_ci,
    weighted_mean_ci,
    weighted_proportion_ci,
)

DEPTH_BINS = (1, 2, 3, 4, 5)
"""Line length in solver moves; the last bin is "5 or more"."""
RATING_EDGES = (1000, 1500, 2000)
"""Rating band boundaries: <1000, 1000–1499, 1500–1999, ≥2000."""
RESULTS_FILE = "search.h5"
RESULTS_FORMAT = format_name("search-budgets", 1)
"""Written as ``leelalab.analyses.search/1`` before the one format scheme (still read)."""
RESULTS_HINT = "give an `analyze search` output directory (or its search.h5)"
POLICY = "policy"
"""The "budget" name of the network alone, evaluated in PyTorch."""


def depth_bin(solver_moves: int) -> int:
    return min(max(solver_moves, 1), DEPTH_BINS[-1])


def depth_label(value: int) -> str:
    return f"{value}+" if value == DEPTH_BINS[-1] else str(value)


def rating_band(rating: int | None) -> int:
    """Index of the rating band (0 … len(RATING_EDGES)); unrated puzzles go to band 0."""
    return int(np.searchsorted(RATING_EDGES, rating or 0, side="right"))


def rating_label(band: int) -> str:
    edges = (None, *RATING_EDGES, None)
    low, high = edges[band], edges[band + 1]
    if low is None:
        return f"<{high}"
    if high is None:
        return f"≥{low}"
    return f"{low}–{high - 1}"


# ----------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class Sample:
    """A stratified random sample of puzzle records."""

    records: list[dict[str, Any]]
    weights: np.ndarray
    """Per sampled puzzle: cell population / cell sample size (so weighted means estimate
    the whole run's means)."""
    cells: np.ndarray
    """Per sampled puzzle: its cell index (depth bin × rating band)."""
    population: int


def cell_of(record: dict[str, Any]) -> int:
    depth = depth_bin(n_solver_moves(record["moves"]))
    return (depth - 1) * (len(RATING_EDGES) + 1) + rating_band(record.get("rating"))


def stratified_sample(records: Sequence[dict[str, Any]], per_cell: int, *, seed: int = 0) -> Sample:
    """Up to ``per_cell`` puzzles from every (line length × rating band) cell, seeded (each
    cell's first ``per_cell`` puzzles in a seeded shuffle, so samples of growing size are
    nested); the sample keeps dataset order."""
    if per_cell < 1:
        raise ValueError("per_cell must be at least 1")
    by_cell: dict[int, list[int]] = {}
    for index, record in enumerate(records):
        by_cell.setdefault(cell_of(record), []).append(index)
    rng = random.Random(seed)
    chosen: dict[int, float] = {}
    cells: dict[int, int] = {}
    for cell in sorted(by_cell):
        members = list(by_cell[cell])
        # A shuffled prefix: a larger per_cell extends a smaller one's sample.
        rng.shuffle(members)
        picked = members[:per_cell]
        for index in picked:
            chosen[index] = len(members) / len(picked)
            cells[index] = cell
    order = sorted(chosen)
    return Sample(
        [records[i] for i in order],
        np.array([chosen[i] for i in order]),
        np.array([cells[i] for i in order]),
        len(records),
    )


# ----------------------------------------------------------------------------- engine pool


class EnginePool:
    """``workers`` lc0 processes for one network; a task borrows one engine."""

    def __init__(self, weights: str, binary: str, workers: int) -> None:
        self.weights, self.binary, self.workers = weights, binary, workers
        self._idle: queue.Queue[Lc0Engine] = queue.Queue()
        self._all: list[Lc0Engine] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def engine(self) -> Iterator[Lc0Engine]:
        try:
            engine = self._idle.get_nowait()
        except queue.Empty:
            engine = Lc0Engine(self.weights, binary=self.binary)
            with self._lock:
                self._all.append(engine)
        try:
            yield engine
        except BaseException:
            with self._lock:
                self._all.remove(engine)
            engine.close()
            raise
        self._idle.put(engine)

    def close(self) -> None:
        with self._lock:
            for engine in self._all:
                engine.close()
            self._all.clear()


def _search_position(pool: EnginePool, board: chess.Board, budgets: Sequence[int]) -> list[Any]:
    with pool.engine() as engine:
        return [engine.best_move(board, nodes) for nodes in budgets]


# ----------------------------------------------------------------------------- the run


def _moves_name(network: str, budget: int | str) -> str:
    return f"moves_{network}_{budget if budget == POLICY else f'n{budget}'}"


def run_search_budgets(
    settings: SearchSettings,
    dataset: str | os.PathLike[str],
    output: str | os.PathLike[str],
    networks: dict[str, str],
    *,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Search every solver position of a stratified sample with every network and budget.

    Args:
        networks: name (e.g. ``strong``, ``weak``) → network file.
        settings: ``per_cell`` puzzles per (line length × rating band) cell; ``stratum``
            samples only the puzzles of this stratum (:mod:`leelalab.analyses.strata`), so
            weighted accuracies estimate the stratum's accuracy; ``workers`` lc0 processes
            per network run in parallel (one search thread each).

    Returns the merged results file; see the module docstring for the directory layout.
    """
    from leelalab.analyses.outputs import run_job_in_chunks
    from leelalab.inference.networks import resolve_network
    from leelalab.runs.records import amend_run_record
    from leelalab.runs.results import ChunkPlan, read_h5, sha256_file

    binary = find_lc0(settings.lc0)
    dataset, output = Path(dataset), Path(output)
    sample = _budget_sample(dataset, settings)
    paths = {name: str(resolve_network(path)) for name, path in networks.items()}
    hashes = {name: sha256_file(path) for name, path in paths.items()}
    version = lc0_version(binary)
    record = _run_settings(settings, dataset, sample, paths, hashes, version)
    reference = _previous_reference(output, paths)
    if settings.benchmark and reference is None:
        reference = {name: backendbench(binary, path) for name, path in paths.items()}
    identities = {name: lc0_identity(version, LC0_OPTIONS, hashes[name]) for name in paths}
    job = _SearchJob(sample, paths, identities, binary, settings)
    attrs = {
        "format": RESULTS_FORMAT,
        "networks": json.dumps(sorted(paths)),
        "nodes": json.dumps(settings.budgets),
        "population": sample.population,
        "lc0_options": json.dumps(LC0_OPTIONS),
    }
    path = run_job_in_chunks(
        job,
        sample.records,
        output,
        record,
        ChunkPlan(
            chunk_size=settings.chunk_size,
            results_file=RESULTS_FILE,
            attrs=attrs,
            run_record={"results_format": RESULTS_FORMAT, "sample_size": len(sample.records)},
            description="lc0 searches",
        ),
        progress=progress,
        overwrite=overwrite,
    )
    arrays, _ = read_h5(path)
    benchmark = benchmark_table(arrays, sorted(paths), settings.budgets, reference or {})
    amend_run_record(output, refresh_outputs=True, benchmark=benchmark)
    return path


def _budget_sample(dataset: Path, settings: SearchSettings) -> Sample:
    """The stratified sample of the run's puzzles (of one stratum when asked)."""
    records = [puzzle.record for puzzle in iter_dataset(dataset, selected_only=False)]
    if not records:
        raise LeelaLabError(f"{dataset}: the dataset holds no puzzle")
    if settings.stratum is not None:
        records = [record for record in records if settings.stratum in strata_of(record)]
        if not records:
            raise LeelaLabError(f"{dataset}: no puzzle in the {settings.stratum} stratum")
    return stratified_sample(records, settings.per_cell, seed=settings.seed)


def _run_settings(
    settings: SearchSettings,
    dataset: Path,
    sample: Sample,
    paths: dict[str, str],
    hashes: dict[str, str],
    version: str,
) -> dict[str, Any]:
    """What a resumed run must share with the first session (recorded in settings.json)."""
    from leelalab.runs.results import sha256_file

    ids = [record["id"] for record in sample.records]
    return {
        "experiment": "search_budgets",
        "dataset": str(dataset.resolve()),
        "dataset_sha256": sha256_file(dataset / "dataset.jsonl"),
        "networks": {name: {"path": paths[name], "sha256": hashes[name]} for name in paths},
        "nodes": settings.budgets,
        "per_cell": settings.per_cell,
        "seed": settings.seed,
        "stratum": settings.stratum,
        "sample_sha256": hashlib.sha256(" ".join(ids).encode()).hexdigest(),
        "lc0": {"version": version, "options": LC0_OPTIONS},
        "depth_bins": list(DEPTH_BINS),
        "rating_edges": list(RATING_EDGES),
    }


class _SearchJob:
    """One chunk of sampled puzzles: each network's policy in PyTorch and lc0's move at
    every budget (from the cache, else searched by the network's engine pool)."""

    def __init__(
        self,
        sample: Sample,
        paths: dict[str, str],
        identities: dict[str, str],
        binary: str,
        settings: SearchSettings,
    ) -> None:
        import torch

        from leelalab.inference.networks import load_network

        torch.set_num_threads(1)
        self.sample, self.identities = sample, identities
        self.budgets, self.workers = settings.budgets, settings.workers
        self.networks = {name: load_network(path) for name, path in paths.items()}
        self.pools = {name: EnginePool(paths[name], binary, self.workers) for name in paths}
        self.index_of = {record["id"]: i for i, record in enumerate(sample.records)}
        # Opened once the run directory exists (run_in_chunks' `before`), resumed with it.
        self.cache: EngineCache | None = None

    def open_cache(self, directory: Path) -> None:
        self.cache = EngineCache(directory / CACHE_FILE)
        if (directory / LEGACY_CACHE_FILE).is_file():
            import_legacy_cache(directory / LEGACY_CACHE_FILE, self.cache)

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
        if self.cache is not None:
            self.cache.close()

    def __call__(self, chunk: list[dict[str, Any]]) -> dict[str, Any]:
        rows = [self.index_of[record["id"]] for record in chunk]
        puzzles = [puzzle_from_record(record) for record in chunk]
        boards = [solver_positions(puzzle) for puzzle in puzzles]
        arrays: dict[str, Any] = {
            "puzzle_ids": [p.id for p in puzzles],
            "fen": [p.fen for p in puzzles],
            "line": [" ".join(p.moves) for p in puzzles],
            "themes": [" ".join(p.themes) for p in puzzles],
            "rating": np.array([p.rating or 0 for p in puzzles], dtype=np.int32),
            "solver_moves": np.array([len(b) for b in boards], dtype=np.int16),
            "weight": self.sample.weights[rows],
            "cell": self.sample.cells[rows].astype(np.int16),
        }
        for stratum in STRATA:
            arrays[f"stratum_{stratum}"] = np.array([stratum in strata_of(r) for r in chunk])
        for name in self.pools:
            arrays.update(self._network_arrays(name, boards))
        return arrays

    def _network_arrays(self, name: str, boards: list[list[chess.Board]]) -> dict[str, Any]:
        from leelalab.models.evaluation import evaluate

        flat = [board for line in boards for board in line]
        policy = [next(iter(e.policy)) for e in evaluate(self.networks[name], flat)]
        arrays: dict[str, Any] = {_moves_name(name, POLICY): _split_join(policy, boards)}
        moves, tasks = self._cached_moves(name, flat)
        seconds = {budget: np.zeros(len(boards)) for budget in self.budgets}
        fresh = {budget: np.zeros(len(boards), dtype=np.int32) for budget in self.budgets}
        owner = {id(board): row for row, line in enumerate(boards) for board in line}
        for board, position, missing, results in self._search(name, tasks):
            for budget, result in zip(missing, results, strict=True):
                self._store(name, position, budget, result)
                moves[id(board), budget] = result.move
                seconds[budget][owner[id(board)]] += result.seconds
                fresh[budget][owner[id(board)]] += 1
        for budget in self.budgets:
            arrays[_moves_name(name, budget)] = _split_join(
                [moves[id(board), budget] for board in flat], boards
            )
            arrays[f"seconds_{name}_n{budget}"] = seconds[budget]
            arrays[f"fresh_{name}_n{budget}"] = fresh[budget]
        return arrays

    def _cached_moves(
        self, name: str, flat: list[chess.Board]
    ) -> tuple[dict[tuple[int, int], str], list[tuple[chess.Board, str, list[int]]]]:
        """The cached moves, and per position the budgets still to search."""
        assert self.cache is not None
        moves: dict[tuple[int, int], str] = {}
        tasks = []
        for board in flat:
            position = position_key(board)
            missing = []
            for budget in self.budgets:
                cached = self.cache.get(self.identities[name], Limit(nodes=budget), position)
                if cached is None:
                    missing.append(budget)
                else:
                    moves[id(board), budget] = cached["move"]
            if missing:
                tasks.append((board, position, missing))
        return moves, tasks

    def _search(
        self, name: str, tasks: list[tuple[chess.Board, str, list[int]]]
    ) -> Iterator[tuple[chess.Board, str, list[int], list[Any]]]:
        """Each task's search results, in task order (searched ``workers`` at a time)."""
        with ThreadPoolExecutor(max_workers=self.workers) as executor:
            futures = [
                (
                    board,
                    position,
                    missing,
                    executor.submit(_search_position, self.pools[name], board, missing),
                )
                for board, position, missing in tasks
            ]
            for board, position, missing, future in futures:
                yield board, position, missing, future.result()

    def _store(self, name: str, position: str, budget: int, result: Any) -> None:
        assert self.cache is not None
        self.cache.put(
            self.identities[name],
            Limit(nodes=budget),
            position,
            {"move": result.move, "nodes": result.nodes, "seconds": result.seconds},
        )


def _previous_reference(output: Path, paths: dict[str, str]) -> dict[str, float] | None:
    """``lc0 backendbench`` speeds recorded by an earlier session of this run (kept, so the
    reference stays the one measured while the searches ran)."""
    from leelalab.runs.records import RecordError, read_run_record

    if not (output / "run.json").is_file():
        return None
    try:
        rows = read_run_record(output).get("benchmark") or []
        found = {row["network"]: row["backendbench_nps"] for row in rows if row["backendbench_nps"]}
    except (RecordError, KeyError, TypeError, AttributeError):
        return None
    return found if set(found) == set(paths) else None


def _split_join(flat: Sequence[str], boards: Sequence[Sequence[Any]]) -> list[str]:
    """Per puzzle, its positions' moves joined by spaces."""
    out, start = [], 0
    for line in boards:
        out.append(" ".join(flat[start : start + len(line)]))
        start += len(line)
    return out


def benchmark_table(
    arrays: dict[str, np.ndarray],
    networks: Sequence[str],
    budgets: Sequence[int],
    reference: dict[str, float],
) -> list[dict[str, Any]]:
    """Positions searched per second at each budget (searches run in this directory, cache
    hits excluded), and nodes per second against ``lc0 backendbench`` at batch size 1."""
    rows = []
    for name in networks:
        for budget in budgets:
            positions = int(arrays[f"fresh_{name}_n{budget}"].sum())
            seconds = float(arrays[f"seconds_{name}_n{budget}"].sum())
            per_second = positions / seconds if seconds > 0 else math.nan
            nodes_per_second = per_second * budget
            bench = reference.get(name, math.nan)
            rows.append(
                {
                    "network": name,
                    "nodes": budget,
                    "positions": positions,
                    "seconds": round(seconds, 2),
                    "positions_per_second": _round(per_second),
                    "nodes_per_second": _round(nodes_per_second),
                    "backendbench_nps": _round(bench),
                    "ratio_to_backendbench": _round(nodes_per_second / bench)
                    if bench and not math.isnan(bench)
                    else None,
                }
            )
    return rows


def _round(value: float, digits: int = 3) -> float | None:
    return None if math.isnan(value) else round(value, digits)


# ----------------------------------------------------------------------------- analysis


@dataclass
class BudgetResults:
    """A merged ``search.h5``, scored."""

    arrays: dict[str, np.ndarray]
    networks: list[str]
    nodes: list[int]
    population: int
    solved: dict[tuple[str, int | str], np.ndarray]
    """(network, budget or ``"policy"``) → per puzzle, solved under the Lichess rule."""
    first_correct: dict[tuple[str, int | str], np.ndarray]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BudgetResults:
        from leelalab.runs.records import RecordError, read_result

        path = Path(path)
        if path.is_dir():
            path = path / RESULTS_FILE
        arrays, attrs = read_result(path, RESULTS_FORMAT, hint=RESULTS_HINT)
        try:
            return cls._scored(arrays, attrs)
        except (KeyError, TypeError, ValueError) as error:
            # The right format with missing or inconsistent arrays: a damaged file.
            reason = f"{type(error).__name__}: {error}"
            raise RecordError(f"{path}: malformed search-budget results ({reason})") from None

    @classmethod
    def _scored(cls, arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> BudgetResults:
        from leelalab.puzzles.reader import Puzzle

        networks = json.loads(attrs["networks"])
        nodes = json.loads(attrs["nodes"])
        puzzles = [
            Puzzle(str(pid), str(fen), tuple(str(line).split()))
            for pid, fen, line in zip(
                arrays["puzzle_ids"], arrays["fen"], arrays["line"], strict=True
            )
        ]
        solved, first = {}, {}
        for name in networks:
            for budget in [POLICY, *nodes]:
                scores = [
                    score_puzzle(puzzle, str(moves).split())
                    for puzzle, moves in zip(
                        puzzles, arrays[_moves_name(name, budget)], strict=True
                    )
                ]
                solved[name, budget] = np.array([s.solved for s in scores])
                first[name, budget] = np.array([s.first_correct for s in scores])
        return cls(arrays, networks, nodes, int(attrs["population"]), solved, first)

    @property
    def size(self) -> int:
        return len(self.arrays["puzzle_ids"])

    @property
    def depth(self) -> np.ndarray:
        return np.array([depth_bin(int(n)) for n in self.arrays["solver_moves"]])

    @property
    def band(self) -> np.ndarray:
        return np.array([rating_band(int(r)) for r in self.arrays["rating"]])

    def policy_agreement(self, network: str) -> Estimate:
        """Fraction of positions where lc0 at 1 node plays the network's top policy move."""
        if 1 not in self.nodes:
            return Estimate(math.nan, math.nan, math.nan, 0)
        agree = total = 0
        for ours, lc0 in zip(
            self.arrays[_moves_name(network, POLICY)],
            self.arrays[_moves_name(network, 1)],
            strict=True,
        ):
            a, b = str(ours).split(), str(lc0).split()
            agree += sum(x == y for x, y in zip(a, b, strict=True))
            total += len(a)
        return proportion_ci(agree, total)

    def accuracy(self, network: str, budget: int | str, mask: np.ndarray | None = None) -> Estimate:
        """Unweighted accuracy (Wilson interval) over the sampled puzzles in ``mask``."""
        solved = self.solved[network, budget]
        if mask is not None:
            solved = solved[mask]
        return proportion_ci(int(solved.sum()), int(solved.size))

    def accuracy_by(self, by: str) -> list[dict[str, Any]]:
        """Accuracy per bin (``by`` = ``depth`` or ``rating``) per network and budget."""
        bins = self.depth if by == "depth" else self.band
        labels = DEPTH_BINS if by == "depth" else range(len(RATING_EDGES) + 1)
        rows = []
        for name in self.networks:
            for budget in [POLICY, *self.nodes]:
                for value in labels:
                    mask = bins == value
                    if not mask.any():
                        continue
                    rows.append(
                        {
                            "network": name,
                            "budget": budget,
                            "bin": depth_label(value) if by == "depth" else rating_label(value),
                            "accuracy": self.accuracy(name, budget, mask),
                        }
                    )
        return rows

    def weighted_accuracy(self, network: str, budget: int | str) -> Estimate:
        """Accuracy over the whole run: the sample reweighted, with a Wilson interval at the
        sample's effective size (:func:`~leelalab.stats.weighted_proportion_ci`).

        Not a bootstrap within cells: with few puzzles per cell most cells' puzzles all agree
        and a cell bootstrap gives them no variance (with one puzzle per cell, a zero-width
        interval), so its interval was far too narrow.
        """
        return weighted_proportion_ci(self.solved[network, budget], self.arrays["weight"])

    def search_gain(
        self,
        network: str,
        *,
        low: int | str = 1,
        high: int | str | None = None,
        mask: np.ndarray | None = None,
        seed: int = 0,
    ) -> Estimate:
        """Mean per-puzzle ``solved(high) − solved(low)`` (paired bootstrap)."""
        high = self.nodes[-1] if high is None else high
        gain = self.solved[network, high].astype(float) - self.solved[network, low].astype(float)
        if mask is not None:
            gain = gain[mask]
        return bootstrap(lambda i: float(gain[i].mean()), gain.size, seed=seed, resamples=1000)

    def matching_budget(
        self, candidate: str = "weak", reference: tuple[str, int | str] = ("strong", 1)
    ) -> dict[str, Any]:
        """The smallest budget at which ``candidate`` with search reaches ``reference``'s
        whole-run accuracy, with the weighted accuracy difference at every budget."""
        target = self.weighted_accuracy(*reference)
        rows, match = [], None
        reference_solved = self.solved[reference].astype(float)
        for budget in self.nodes:
            difference = self.solved[candidate, budget].astype(float) - reference_solved
            # Paired per puzzle; the interval at the sample's effective size, as for accuracy.
            estimate = weighted_mean_ci(difference, self.arrays["weight"])
            rows.append({"nodes": budget, "difference": estimate})
            if match is None and estimate.value >= 0:
                match = budget
        return {"reference": target, "differences": rows, "matching_nodes": match}


def format_estimate(estimate: Estimate, digits: int = 3) -> str:
    """``value [low, high]`` for tables; never a zero-width interval: one that could not be
    estimated (``nan`` ends: too few effective puzzles, or no variance) is ``value [too few]``,
    one with no spread (which is not certainty) is the value alone, marked, and a narrow one
    gets the digits that tell its ends apart."""
    if math.isnan(estimate.value):
        return "n/a"
    if math.isnan(estimate.low) or math.isnan(estimate.high):
        return f"{estimate.value:.{digits}f} [too few]"
    if not estimate.has_width:
        return f"{estimate.value:.{digits}f} (no spread)"
    while digits < 6 and round(estimate.low, digits) == round(estimate.high, digits):
        digits += 1
    return f"{estimate.value:.{digits}f} [{estimate.low:.{digits}f}, {estimate.high:.{digits}f}]"


def describe_estimate(estimate: Estimate) -> str:
    """:func:`format_estimate` with the number of units."""
    return f"{format_estimate(estimate)} (n={estimate.n})"
