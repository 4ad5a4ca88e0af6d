"""Filtering Lichess puzzles with a strong and a weak network (the look-ahead paper's method).

For every puzzle, both networks see each position of the solution line (after the
opponent's first move, then after each ply; the line's move is always the one pushed) and
we keep, per ply, the probability of the line's move, the network's top move and W/D/L.
Filters (paper defaults, all configurable):

- ``not_mate_in_1``: the ``mateIn1`` theme is absent;
- ``pv_length``: at least 3 plies after the opponent's move;
- ``hard``: the weak network gives the 1st move less than 0.05;
- ``correct``: the strong network gives every solver move (plies 0, 2, 4, …) more than 0.5;
- ``forcing``: the weak network gives the opponent's reply (ply 1) more than 0.7;
- ``different_targets`` (a flag, not a filter): the 1st, 2nd and 3rd moves' target squares
  are pairwise distinct.

``selected = not_mate_in_1 ∧ pv_length ∧ hard ∧ correct ∧ forcing``.

On disk (``OUTPUT/``): ``chunks/NNNNN.jsonl`` (one record per puzzle, in input order,
written atomically chunk by chunk, so an interrupted run — even ``kill -9`` — resumes at the
first missing chunk and produces identical output), ``dataset.jsonl`` (all chunks, in
order, written at the end) and ``run.json`` (inputs and their sha256, networks and their
sha256, thresholds, history modes, versions, stage counts, timing).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import chess
import numpy as np
from tqdm.auto import tqdm

from leelalab.inference.jobs import NetworkJob
from leelalab.inference.networks import network_reference
from leelalab.lc0 import encoding, policy_map
from leelalab.lc0.encoding import HistoryMode
from leelalab.lc0.weights.enums import InputFormat
from leelalab.models.base import LeelaNetwork
from leelalab.models.evaluation import run_network
from leelalab.puzzles.reader import (
    Puzzle,
    SkipReport,
    check_puzzle_file,
    iter_puzzles,
    sample_puzzles,
)
from leelalab.puzzles.settings import CorruptSettings, FilterSettings, Thresholds
from leelalab.runs.background import Background, fast_thread_switches
from leelalab.runs.executor import LOCAL, Executor, map_chunks
from leelalab.runs.records import RecordError, amend_run_record, read_json, read_run_record
from leelalab.runs.results import (
    ResultsError,
    RunDirectory,
    same_settings,
    sha256_file,
    versions,
    write_text_atomically,
)

if TYPE_CHECKING:
    from leelalab.puzzles.corruptions import CorruptionThresholds

DATASET_FORMAT_VERSION = 1


@dataclass
class LineEvaluation:
    """One network along one puzzle line (index ``i`` = the ``i``-th move after the
    opponent's first move, each side's moves included)."""

    pv_probs: list[float] = field(default_factory=list)
    top_moves: list[str] = field(default_factory=list)
    wdl: list[list[float]] = field(default_factory=list)


def line_boards(puzzle: Puzzle, *, final: bool = False) -> list[chess.Board]:
    """The positions where each solution move is played, with the history lc0 would get;
    with ``final``, the position after the line's last move too.

    The root is the puzzle FEN, so the opponent's move and every ply since are real history.
    The one line-walker of the package: analyses take their boards from here.
    """
    board = chess.Board(puzzle.fen)
    # Lines were replayed and validated when the puzzle was read: push without re-checking.
    board.push(chess.Move.from_uci(puzzle.moves[0]))
    boards = []
    for uci in puzzle.moves[1:]:
        boards.append(board.copy())
        board.push(chess.Move.from_uci(uci))
    if final:
        boards.append(board.copy())
    return boards


def evaluate_lines(
    network: LeelaNetwork,
    puzzles: list[Puzzle],
    *,
    history: HistoryMode = "lc0",
    batch_size: int = 256,
) -> list[LineEvaluation]:
    """Evaluate ``network`` at every ply of every puzzle, batching across puzzles."""
    return evaluate_lines_together([(network, history)], puzzles, batch_size=batch_size)[0]


def evaluate_lines_together(
    networks: list[tuple[LeelaNetwork, HistoryMode]],
    puzzles: list[Puzzle],
    *,
    batch_size: int = 256,
) -> list[list[LineEvaluation]]:
    """:func:`evaluate_lines` for several networks, sharing the encoding and move generation.

    Networks with the same input format and history mode get the same planes; legal moves
    are generated once per position. Probabilities are the same legal-move softmax as
    :func:`leelalab.models.evaluation.evaluate` (temperature 1, exact).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    results = [[LineEvaluation() for _ in puzzles] for _ in networks]
    background = Background(_prepared_batches(networks, puzzles, batch_size))
    with background, fast_thread_switches():
        for batch in background:
            _evaluate_batch(networks, batch, results)
    return results


@dataclass
class _Batch:
    """The CPU side of one batch of line positions, built in the preparation thread."""

    owners: list[int]
    """Index (in its list of puzzles) of each position's puzzle."""
    planes: dict[tuple[int, HistoryMode], np.ndarray]
    """Planes per (input format, history mode)."""
    legal_moves: list[list[chess.Move]]
    """Legal moves of each position (python-chess order)."""
    line_positions: np.ndarray
    """Where the line's move is in each position's ``legal_moves``."""
    legal_indices: dict[int, tuple[np.ndarray, np.ndarray]]
    """Per input format: the policy indices of the legal moves (under each position's
    transform), padded to the batch's most legal moves, and which entries are real."""


def _prepared_batches(
    networks: list[tuple[LeelaNetwork, HistoryMode]], puzzles: Iterable[Puzzle], batch_size: int
) -> Iterator[_Batch]:
    """The positions of ``puzzles``' lines, ``batch_size`` at a time (the last batch may be
    shorter; batches cut through lines).

    Each line is played once on one board: every position is encoded from the positions
    already reached (:class:`encoding.LineEncoder`) and its legal moves are generated once,
    then indexed under every transform its input formats need.
    """
    keys = sorted({(int(net.network_format.input), history) for net, history in networks})
    formats = sorted({key[0] for key in keys})
    canonical = {f for f in formats if InputFormat(f).is_canonical}
    owners: list[int] = []
    rows: dict[tuple[int, HistoryMode], list[Any]] = {key: [] for key in keys}
    transforms: dict[int, list[int]] = {f: [] for f in formats}
    legal_moves: list[list[chess.Move]] = []
    line_positions: list[int] = []
    indices: dict[int, list[np.ndarray]] = {f: [] for f in formats}

    def batch() -> _Batch:
        width = max(len(moves) for moves in legal_moves)
        legal_indices = {}
        for f in formats:
            padded = np.zeros((len(owners), width), dtype=np.int64)
            valid = np.zeros((len(owners), width), dtype=bool)
            for row, values in enumerate(indices[f]):
                padded[row, : len(values)] = values
                valid[row, : len(values)] = True
            legal_indices[f] = (padded, valid)
        planes = {
            key: encoding.rows_to_planes(rows[key], key[0], np.array(transforms[key[0]]))
            for key in keys
        }
        return _Batch(
            list(owners), planes, list(legal_moves), np.array(line_positions), legal_indices
        )

    for index, puzzle in enumerate(puzzles):
        # The root is the puzzle FEN, so the opponent's move and every ply since are real
        # history (as in line_boards). Lines were replayed and validated when the puzzle was
        # read: push without re-checking.
        line = encoding.LineEncoder(chess.Board(puzzle.fen))
        line.push(chess.Move.from_uci(puzzle.moves[0]))
        board = line.board
        for uci in puzzle.moves[1:]:
            move = chess.Move.from_uci(uci)
            owners.append(index)
            for key in keys:
                rows[key].append(line.row(*key))
            by_transform: dict[int, np.ndarray] = {}
            moves = list(board.legal_moves)
            for f in formats:
                transform = encoding.choose_transform(board) if f in canonical else 0
                transforms[f].append(transform)
                if transform not in by_transform:
                    by_transform[transform] = policy_map.legal_move_indices(board, moves, transform)
                indices[f].append(by_transform[transform])
            legal_moves.append(moves)
            line_positions.append(moves.index(move))
            line.push(move)
            if len(owners) == batch_size:
                yield batch()
                owners.clear()
                legal_moves.clear()
                line_positions.clear()
                for collected in (*rows.values(), *transforms.values(), *indices.values()):
                    collected.clear()
    if owners:
        yield batch()


def _evaluate_batch(
    networks: list[tuple[LeelaNetwork, HistoryMode]],
    batch: _Batch,
    results: list[list[LineEvaluation]],
) -> None:
    """Run every network on ``batch`` and append each position's numbers to its line."""
    for slot, (network, history) in enumerate(networks):
        input_format = int(network.network_format.input)
        output = run_network(network, batch.planes[input_format, history])
        logits = output.policy_logits.float().cpu().numpy()
        wdl = output.wdl.double().cpu().numpy().tolist()
        # The legal softmax of evaluation.legal_policy, for the whole batch at once.
        padded, valid = batch.legal_indices[input_format]
        values = logits[np.arange(len(padded))[:, None], padded].astype(np.float64)
        values[~valid] = -np.inf
        probabilities = np.exp(values - values.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        line_probability = probabilities[np.arange(len(padded)), batch.line_positions].tolist()
        top = probabilities.argmax(axis=1).tolist()
        lines = results[slot]
        for offset, owner in enumerate(batch.owners):
            line = lines[owner]
            line.pv_probs.append(line_probability[offset])
            line.top_moves.append(batch.legal_moves[offset][top[offset]].uci())
            line.wdl.append(wdl[offset])


def puzzle_filters(
    puzzle: Puzzle, strong: LineEvaluation, weak: LineEvaluation, thresholds: Thresholds
) -> dict[str, bool]:
    """The filter flags of one puzzle (see the module docstring)."""
    solution = puzzle.moves[1:]
    targets = [uci[2:4] for uci in solution[:3]]
    flags = {
        "not_mate_in_1": "mateIn1" not in puzzle.themes,
        "pv_length": len(solution) >= thresholds.min_pv_plies,
        "hard": bool(weak.pv_probs) and weak.pv_probs[0] < thresholds.hard,
        "correct": bool(strong.pv_probs) and min(strong.pv_probs[0::2]) > thresholds.correct,
        "forcing": len(weak.pv_probs) > 1 and weak.pv_probs[1] > thresholds.forcing,
        "different_targets": len(targets) == 3 and len(set(targets)) == 3,
    }
    return flags


def is_selected(flags: dict[str, bool]) -> bool:
    return all(flags[name] for name in ("not_mate_in_1", "pv_length", "hard", "correct", "forcing"))


def _record(
    puzzle: Puzzle, strong: LineEvaluation, weak: LineEvaluation, flags: dict[str, bool]
) -> dict[str, Any]:
    return {
        "id": puzzle.id,
        "fen": puzzle.fen,
        "moves": list(puzzle.moves),
        "rating": puzzle.rating,
        "themes": list(puzzle.themes),
        "strong_pv_probs": strong.pv_probs,
        "strong_top_moves": strong.top_moves,
        "strong_wdl": strong.wdl,
        "weak_pv_probs": weak.pv_probs,
        "weak_top_moves": weak.top_moves,
        "weak_wdl": weak.wdl,
        "filters": flags,
        "selected": is_selected(flags),
        "corruption": None,
    }


@dataclass
class FilterRun:
    """What a filtering run did: stage counts and where its outputs are."""

    output: Path
    report: SkipReport
    counts: dict[str, int]
    seconds: float
    already_complete: bool = False
    """The output held this complete run already: nothing was computed."""
    chunks: int = 0
    """Chunks of the dataset."""
    chunks_resumed: int = 0
    """Chunks an earlier, interrupted run had written (0: not resumed)."""


def filter_puzzles(
    strong: LeelaNetwork,
    weak: LeelaNetwork,
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    settings: FilterSettings | None = None,
    *,
    progress: bool = True,
    overwrite: bool = False,
    executor: Executor = LOCAL,
    **options: Any,
) -> FilterRun:
    """Evaluate and filter every puzzle of ``input_path``; resumable (see module docstring).

    ``settings`` (:class:`FilterSettings`; or, as before, its fields and ``thresholds`` as
    keyword ``options``) are the thresholds, history modes, ``limit``/``sample``/``seed``
    and the chunk and batch sizes.

    Chunks run in this process (the default: one pipeline whose preparation thread overlaps
    the forward passes) or on ``executor`` (Ray workers, each loading both networks once);
    the dataset is the same byte for byte.

    The input is checked before ``output_dir`` is created. ``output_dir`` follows
    :class:`~leelalab.runs.results.RunDirectory`: a run with the same settings resumes (a
    complete one is returned as it is, ``already_complete``); other settings are refused
    unless ``overwrite``; a run that fails before its first chunk leaves nothing behind.

    The progress bar runs over the input's bytes (compressed bytes for ``.zst``), or over
    puzzles with ``limit`` or ``sample``, and moves after every batch.

    Raises:
        PuzzleFileError: the input is missing, unreadable, truncated or not a puzzle CSV.
        ResultsError: ``output_dir`` holds a run with other settings, or something else.
        SettingsError: a setting is out of range.
    """
    if settings is None:
        settings = FilterSettings.from_options(options)
    elif options:
        raise TypeError("pass either a FilterSettings object or keyword settings, not both")
    started = time.perf_counter()
    input_path, output = Path(input_path), Path(output_dir)
    check_puzzle_file(input_path)
    recorded = _recorded_settings(strong, weak, input_path, settings)
    run_directory = RunDirectory(output, recorded, overwrite=overwrite, what="filter run")
    if run_directory.complete("dataset.jsonl"):
        return _finished_run(output)
    chunks_dir = output / "chunks"
    with run_directory:
        chunks_dir.mkdir(exist_ok=True)
        resumed = len(list(chunks_dir.glob("*.jsonl"))) if run_directory.resuming else 0
        plan = _plan(input_path, chunks_dir, settings, progress)
        if executor.kind == "local":
            networks = [(strong, settings.strong_history), (weak, settings.weak_history)]
            counts = _filter_chunks(plan, networks, settings.thresholds, settings.batch_size)
        else:
            job = FilterJob(
                strong,
                weak,
                settings.strong_history,
                settings.weak_history,
                settings.thresholds,
                settings.batch_size,
            )
            counts = _filter_chunks_on(plan, executor, job)
        plan.bar.close()
        chunks = _merge_chunks(chunks_dir, output / "dataset.jsonl")
        seconds = time.perf_counter() - started
        run_directory.write_record(
            format_version=DATASET_FORMAT_VERSION,
            rows=plan.report.to_json(),
            stage_counts=counts,
            seconds=round(seconds, 2),
            executor=executor.describe(),
        )
    return FilterRun(output, plan.report, counts, seconds, chunks=chunks, chunks_resumed=resumed)


def _recorded_settings(
    strong: LeelaNetwork, weak: LeelaNetwork, input_path: Path, settings: FilterSettings
) -> dict[str, Any]:
    """What ``settings.json`` and ``run.json`` record (and a resumed run must match)."""
    return {
        "input": str(input_path),
        "input_sha256": sha256_file(input_path),
        "strong": {**network_reference(strong), "history": settings.strong_history},
        "weak": {**network_reference(weak), "history": settings.weak_history},
        "thresholds": asdict(settings.thresholds),
        "limit": settings.limit,
        "sample": settings.sample,
        "seed": settings.seed,
        "chunk_size": settings.chunk_size,
    }


@dataclass
class _ChunkPlan:
    """The puzzles of one run and where their chunks go, shared by both executors' loops."""

    puzzles: Iterator[Puzzle]
    report: SkipReport
    chunks_dir: Path
    chunk_size: int
    bar: Any
    by_bytes: bool
    """The bar counts the input's bytes (no ``limit`` or ``sample``)."""

    def unpacked(self) -> tuple[Iterator[Puzzle], SkipReport, Path, int, Any, bool]:
        return (
            self.puzzles, self.report, self.chunks_dir, self.chunk_size, self.bar, self.by_bytes
        )  # fmt: skip


def _plan(
    input_path: Path, chunks_dir: Path, settings: FilterSettings, progress: bool
) -> _ChunkPlan:
    """The puzzles to filter (all, the first ``limit`` or a ``sample``) and their bar."""
    report = SkipReport()
    if settings.sample is not None:
        sampled = sample_puzzles(
            input_path, settings.sample, seed=settings.seed, report=report, progress=progress
        )
        puzzles: Iterator[Puzzle] = iter(sampled)
        bar = tqdm(desc="puzzles", unit="puzzle", disable=not progress, total=len(sampled))
    else:
        puzzles = iter_puzzles(input_path, limit=settings.limit, report=report)
        if settings.limit is not None:
            bar = tqdm(desc="puzzles", unit="puzzle", disable=not progress, total=settings.limit)
        else:
            bar = tqdm(
                desc=f"puzzles ({input_path.name})",
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                disable=not progress,
                total=input_path.stat().st_size,
            )
    by_bytes = settings.sample is None and settings.limit is None
    return _ChunkPlan(puzzles, report, chunks_dir, settings.chunk_size, bar, by_bytes)


def _merge_chunks(chunks_dir: Path, target: Path) -> int:
    """Concatenate the chunk files in order into ``target`` (atomically); returns how many."""
    paths = sorted(chunks_dir.glob("*.jsonl"))
    temporary = target.with_name(target.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as merged:
        for path in paths:
            merged.write(path.read_text(encoding="utf-8"))
    temporary.replace(target)
    return len(paths)


def _finished_run(output: Path) -> FilterRun:
    """The record of a complete filter run in ``output``."""
    run = read_run_record(output, hint="rerun `leelalab puzzles filter` with --overwrite")
    report = SkipReport.from_json(run.get("rows", {}))
    if not isinstance(run.get("stage_counts"), dict):
        raise ResultsError(f"{output / 'run.json'}: not the record of a filter run")
    chunks = len(list((output / "chunks").glob("*.jsonl")))
    return FilterRun(
        output,
        report,
        run["stage_counts"],
        run.get("seconds", 0.0),
        already_complete=True,
        chunks=chunks,
    )


def _filter_chunks(
    plan: _ChunkPlan,
    networks: list[tuple[LeelaNetwork, HistoryMode]],
    thresholds: Thresholds,
    batch_size: int,
) -> dict[str, int]:
    """Evaluate, filter and write every missing chunk; returns the stage counts of all."""
    counts = _new_counts()
    puzzles, report, chunks_dir, chunk_size, bar, by_bytes = plan.unpacked()

    def chunks() -> Iterator[tuple[int, list[Puzzle], list[int]]]:
        """Chunks of puzzles, each with the byte position after each of its puzzles."""
        chunk: list[Puzzle] = []
        positions: list[int] = []
        start = 0
        for puzzle in puzzles:
            chunk.append(puzzle)
            positions.append(report.bytes_read)
            if len(chunk) == chunk_size:
                yield start, chunk, positions
                start, chunk, positions = start + len(chunk), [], []
        if chunk:
            yield start, chunk, positions

    def work() -> Iterator[tuple[str, Any]]:
        """Everything but the forward passes, in order, for the preparation thread: reading
        the puzzles, and per chunk either its file (done in an earlier run) or the prepared
        batches of its lines (boards, planes and legal moves built once for both networks;
        batches do not cross chunks)."""
        for number, (start, chunk, positions) in enumerate(chunks()):
            path = chunks_dir / f"{number:05d}.jsonl"
            if path.exists():
                yield "done", (start, chunk, positions, path)
                continue
            yield "chunk", (start, chunk, positions, path)
            for batch in _prepared_batches(networks, chunk, batch_size):
                yield "batch", batch
            yield "end", None

    def advance(through: int) -> None:
        """Move the bar to the end of the current chunk's puzzle ``through``."""
        value = positions[through] if by_bytes else start + through + 1
        if value > bar.n:
            bar.update(value - bar.n)

    results: list[list[LineEvaluation]] = []
    start, chunk, positions, path = 0, [], [], chunks_dir
    background = Background(work())
    with background, fast_thread_switches():
        for kind, item in background:
            if kind == "batch":
                _evaluate_batch(networks, item, results)
                advance(item.owners[-1])
                continue
            if kind == "done":
                start, chunk, positions, path = item
                text = path.read_text(encoding="utf-8")
                records = [json.loads(line) for line in text.splitlines()]
            elif kind == "chunk":
                start, chunk, positions, path = item
                results = [[LineEvaluation() for _ in chunk] for _ in networks]
                continue
            else:
                strong_lines, weak_lines = results
                records = [
                    _record(p, s, w, puzzle_filters(p, s, w, thresholds))
                    for p, s, w in zip(chunk, strong_lines, weak_lines, strict=True)
                ]
                write_text_atomically(path, "".join(json.dumps(r) + "\n" for r in records))
            for record in records:
                _count(counts, record["filters"], record["selected"])
            advance(len(chunk) - 1)
    if by_bytes:  # the bytes after the last puzzle (skipped rows, the end of the file)
        bar.update(max(0, report.bytes_read - bar.n))
    return counts


def _new_counts() -> dict[str, int]:
    return dict.fromkeys(
        [
            "puzzles",
            "not_mate_in_1",
            "pv_length",
            "hard",
            "correct",
            "forcing",
            "selected",
            "different_targets_selected",
        ],
        0,
    )


class FilterJob(NetworkJob):
    """One chunk of :func:`filter_puzzles`: both networks along every line, then the flags;
    the result is the chunk's ``dataset.jsonl`` text."""

    def __init__(
        self,
        strong: LeelaNetwork,
        weak: LeelaNetwork,
        strong_history: HistoryMode,
        weak_history: HistoryMode,
        thresholds: Thresholds,
        batch_size: int,
    ) -> None:
        super().__init__(strong=strong, weak=weak)
        self.histories = (strong_history, weak_history)
        self.thresholds = thresholds
        self.batch_size = batch_size

    def compute(self, state: dict[str, LeelaNetwork], chunk: list[Puzzle]) -> str:
        networks = [(state["strong"], self.histories[0]), (state["weak"], self.histories[1])]
        results = [[LineEvaluation() for _ in chunk] for _ in networks]
        for batch in _prepared_batches(networks, chunk, self.batch_size):
            _evaluate_batch(networks, batch, results)
        strong_lines, weak_lines = results
        records = [
            _record(p, s, w, puzzle_filters(p, s, w, self.thresholds))
            for p, s, w in zip(chunk, strong_lines, weak_lines, strict=True)
        ]
        return "".join(json.dumps(r) + "\n" for r in records)

    def describe_chunk(self, number: int, payload: list[Puzzle]) -> str:
        return f"chunk {number} (puzzles {payload[0].id}…{payload[-1].id})"


def _filter_chunks_on(plan: _ChunkPlan, executor: Executor, job: FilterJob) -> dict[str, int]:
    """:func:`_filter_chunks` on another executor: the driver reads the puzzles and writes
    each chunk's file when its result comes back; workers evaluate."""
    counts = _new_counts()
    puzzles, report, chunks_dir, chunk_size, bar, by_bytes = plan.unpacked()
    spans: dict[int, int] = {}
    last = 0

    def pending() -> Iterator[tuple[int, list[Puzzle]]]:
        nonlocal last
        chunk: list[Puzzle] = []
        number = 0
        for puzzle in puzzles:
            chunk.append(puzzle)
            if len(chunk) == chunk_size:
                yield from finish(number, chunk)
                number, chunk = number + 1, []
        if chunk:
            yield from finish(number, chunk)

    def finish(number: int, chunk: list[Puzzle]) -> Iterator[tuple[int, list[Puzzle]]]:
        nonlocal last
        position = report.bytes_read if by_bytes else last + len(chunk)
        spans[number], last = position - last, position
        path = chunks_dir / f"{number:05d}.jsonl"
        if path.exists():
            count(path.read_text(encoding="utf-8"), number)
        else:
            yield number, chunk

    def count(text: str, number: int) -> None:
        for line in text.splitlines():
            record = json.loads(line)
            _count(counts, record["filters"], record["selected"])
        bar.update(spans[number])

    def write(number: int, text: str) -> None:
        write_text_atomically(chunks_dir / f"{number:05d}.jsonl", text)
        count(text, number)

    map_chunks(job, pending(), write, executor)
    if by_bytes:
        bar.update(max(0, report.bytes_read - bar.n))
    return counts


def _count(counts: dict[str, int], flags: dict[str, bool], selected: bool) -> None:
    """Stage counts: each stage counts the puzzles that passed it and every earlier one."""
    counts["puzzles"] += 1
    passed = True
    for stage in ("not_mate_in_1", "pv_length", "hard", "correct", "forcing"):
        passed = passed and flags[stage]
        counts[stage] += int(passed)
    counts["selected"] += int(selected)
    counts["different_targets_selected"] += int(selected and flags["different_targets"])


def corrupt_dataset(
    directory: str | os.PathLike[str],
    strong: LeelaNetwork,
    weak: LeelaNetwork,
    thresholds: CorruptionThresholds | None = None,
    settings: CorruptSettings | None = None,
    *,
    progress: bool = True,
    overwrite: bool = False,
    executor: Executor = LOCAL,
    **options: Any,
) -> dict[str, int]:
    """Find a corruption for every selected puzzle of a filtered dataset.

    ``settings`` (:class:`~leelalab.puzzles.settings.CorruptSettings`, or as before its
    fields ``stockfish`` and ``chunk_size`` as keywords): the search runs in fixed chunks
    of ``chunk_size`` puzzles, each saved as it finishes (``corruptions.parts/``), so an
    interrupted search resumes; chunks run on ``executor`` (in this process, or Ray workers
    that load both networks once) with the same result.

    With ``stockfish`` (True, or the engine's path), a corruption is kept only when
    Stockfish confirms that the first move stops working (:func:`stockfish_confirms`).

    Writes ``corruptions.jsonl`` (``{"id", "corruption"}`` per selected puzzle, ``null``
    when none qualifies), atomically, and records settings, counts and timing under
    ``"corruption"`` in the dataset's ``run.json``; returns the counts. When the dataset
    already has corruptions made with the same settings, their counts are returned and
    nothing is computed; with other (or unrecorded) settings the call is refused unless
    ``overwrite``.

    The keyword ``ids=`` is :func:`corrupt_ids` (kept for older callers).

    Raises:
        DatasetError: ``directory`` is not a filtered dataset, or its corruptions were made
            with other settings (and not ``overwrite``).
    """
    from leelalab.puzzles.corruptions import CorruptionThresholds
    from leelalab.puzzles.dataset import DatasetError, iter_dataset

    ids = options.pop("ids", None)
    settings = CorruptSettings.from_options(settings, options)
    thresholds = thresholds or CorruptionThresholds()
    if ids is not None:
        return corrupt_ids(
            directory, strong, weak, ids, thresholds, stockfish=settings.stockfish,
            progress=progress,
        )  # fmt: skip
    started = time.perf_counter()
    directory = Path(directory)
    source = _dataset_path(directory)
    engine = _stockfish_path(settings.stockfish) if settings.stockfish else None
    recorded = {
        "dataset_sha256": sha256_file(source),
        "strong": network_reference(strong),
        "weak": network_reference(weak),
        "thresholds": asdict(thresholds),
        "stockfish": engine,
    }
    previous = _previous_corruptions(directory, recorded, overwrite)
    if previous is not None:
        return previous
    selected = [item.puzzle for item in iter_dataset(directory, selected_only=True)]
    if not selected:
        raise DatasetError(f"{directory}: no selected puzzles to corrupt (the filter kept none)")
    job = CorruptionJob(strong, weak, thresholds, engine)
    parts = RunDirectory(
        directory / PARTS,
        {**recorded, "chunk_size": settings.chunk_size},
        overwrite=overwrite,
        what="interrupted corruption search",
    )
    text = _search_in_chunks(parts, job, selected, settings.chunk_size, progress, executor)
    target = directory / "corruptions.jsonl"
    write_text_atomically(target, text)
    parts.discard()
    found = sum(json.loads(line)["corruption"] is not None for line in text.splitlines())
    counts = {"selected": len(selected), "corrupted": found}
    corruption = {
        "settings": recorded,
        "thresholds": recorded["thresholds"],
        "counts": counts,
        "corruptions_sha256": sha256_file(target),
        "seconds": round(time.perf_counter() - started, 2),
        "executor": executor.describe(),
        "versions": versions(),
    }
    amend_run_record(directory, add_outputs=[target.name], corruption=corruption)
    return counts


PARTS = "corruptions.parts"
"""The chunks of an unfinished corruption search, inside the dataset directory."""


def resumable_chunks(directory: str | os.PathLike[str]) -> int:
    """Chunks an interrupted ``puzzles corrupt`` left in ``directory`` (0: none)."""
    parts = Path(directory) / PARTS
    return len(list(parts.glob("*.jsonl"))) if (parts / "settings.json").is_file() else 0


def _previous_corruptions(
    directory: Path, recorded: dict[str, Any], overwrite: bool
) -> dict[str, int] | None:
    """The counts of corruptions already made with these settings (None: compute them);
    corruptions made otherwise are refused unless ``overwrite``."""
    from leelalab.puzzles.dataset import DatasetError

    if not (directory / "corruptions.jsonl").is_file() or overwrite:
        return None
    run = _read_run_json(directory / "run.json") if (directory / "run.json").is_file() else {}
    previous = run.get("corruption") or {}
    if "settings" in previous and same_settings(previous["settings"], recorded):
        return dict(previous["counts"])
    made = "with other settings" if "settings" in previous else "by an earlier run"
    raise DatasetError(
        f"{directory} already has corruptions.jsonl made {made}; pass --overwrite to recompute it"
    )


def _search_in_chunks(
    parts: RunDirectory,
    job: CorruptionJob,
    selected: list[Puzzle],
    chunk_size: int,
    progress: bool,
    executor: Executor,
) -> str:
    """Run ``job`` over the missing chunks of ``selected`` in ``parts``; all chunks' text."""
    bar = tqdm(total=len(selected), desc="corruptions", unit="puzzle", disable=not progress)

    def pending() -> Iterator[tuple[int, list[Puzzle]]]:
        for number, start in enumerate(range(0, len(selected), chunk_size)):
            chunk = selected[start : start + chunk_size]
            if (parts.path / f"{number:05d}.jsonl").exists():
                bar.update(len(chunk))
            else:
                yield number, chunk

    def write(number: int, text: str) -> None:
        write_text_atomically(parts.path / f"{number:05d}.jsonl", text)
        bar.update(text.count("\n"))

    with parts:
        map_chunks(job, pending(), write, executor)
    bar.close()
    return "".join(path.read_text(encoding="utf-8") for path in sorted(parts.path.glob("*.jsonl")))


class CorruptionJob(NetworkJob):
    """One chunk of :func:`corrupt_dataset`: each puzzle's ``corruptions.jsonl`` line."""

    def __init__(
        self,
        strong: LeelaNetwork,
        weak: LeelaNetwork,
        thresholds: CorruptionThresholds,
        stockfish: str | None,
    ) -> None:
        super().__init__(strong=strong, weak=weak)
        self.thresholds = thresholds
        self.stockfish = stockfish

    def compute(self, state: dict[str, LeelaNetwork], chunk: list[Puzzle]) -> str:
        lines = []
        for puzzle in chunk:
            entry = _puzzle_corruption(
                puzzle, state["strong"], state["weak"], self.thresholds, self.stockfish
            )
            lines.append(json.dumps({"id": puzzle.id, "corruption": entry}) + "\n")
        return "".join(lines)

    def describe_chunk(self, number: int, payload: list[Puzzle]) -> str:
        return f"chunk {number} (puzzles {payload[0].id}…{payload[-1].id})"


_CORRUPTION_SAVE_EVERY = 16


def _corruption_entry(
    record: dict[str, Any],
    strong: LeelaNetwork,
    weak: LeelaNetwork,
    thresholds: CorruptionThresholds,
    stockfish: str | None,
) -> dict[str, Any] | None:
    """One puzzle's corruption entry; ``stockfish`` is a resolved engine path or ``None``."""
    puzzle = Puzzle(
        record["id"],
        record["fen"],
        tuple(record["moves"]),
        record["rating"],
        tuple(record["themes"]),
    )
    return _puzzle_corruption(puzzle, strong, weak, thresholds, stockfish)


def _puzzle_corruption(
    puzzle: Puzzle,
    strong: LeelaNetwork,
    weak: LeelaNetwork,
    thresholds: CorruptionThresholds,
    stockfish: str | None,
) -> dict[str, Any] | None:
    """The corruption entry of one puzzle (``None`` when none qualifies or Stockfish says
    the first move still works)."""
    from leelalab.puzzles.corruptions import find_corruption, stockfish_confirms

    corruption = find_corruption(puzzle, strong, weak, thresholds)
    entry = corruption.to_json() if corruption else None
    if corruption is not None and entry is not None and stockfish:
        entry["stockfish_confirmed"] = stockfish_confirms(puzzle, corruption, stockfish)
        if not entry["stockfish_confirmed"]:
            entry = None
    return entry


def corrupt_ids(
    directory: str | os.PathLike[str],
    strong: LeelaNetwork,
    weak: LeelaNetwork,
    ids: Collection[str],
    thresholds: CorruptionThresholds | None = None,
    *,
    stockfish: str | bool | None = None,
    progress: bool = True,
) -> dict[str, int]:
    """:func:`corrupt_dataset` for the puzzles with these ids, extending ``corruptions.jsonl``.

    The puzzles with these ids are corrupted instead of the selected ones (e.g. a stratum
    that the filter did not select) and ``corruptions.jsonl`` is *extended*: entries of
    other puzzles are kept, and puzzles that already have an entry are not searched again,
    so such a run resumes where it stopped (the file is rewritten every
    ``_CORRUPTION_SAVE_EVERY`` puzzles). A later selected-puzzle run with ``overwrite``
    rewrites the file and drops those extra entries.
    """
    from leelalab.puzzles.corruptions import CorruptionThresholds
    from leelalab.puzzles.dataset import DatasetError

    thresholds = thresholds or CorruptionThresholds()
    _dataset_path(directory)
    engine = _stockfish_path(stockfish) if stockfish else None
    ids = set(ids)
    source = _dataset_path(directory)
    target = Path(directory) / "corruptions.jsonl"
    entries: dict[str, Any] = {}
    if target.is_file():
        for line in target.open(encoding="utf-8"):
            if line.strip():
                entry = json.loads(line)
                entries[entry["id"]] = entry["corruption"]
    records = [json.loads(line) for line in source.open(encoding="utf-8")]
    order = [record["id"] for record in records]
    wanted = [record for record in records if record["id"] in ids]
    missing = sorted(ids - set(order))
    if missing:
        raise DatasetError(f"{source}: no puzzle with id {missing[0]!r} ({len(missing)} missing)")

    def save() -> None:
        in_dataset = set(order)
        known = [pid for pid in order if pid in entries]
        known += [pid for pid in entries if pid not in in_dataset]  # kept, never dropped
        text = "".join(json.dumps({"id": pid, "corruption": entries[pid]}) + "\n" for pid in known)
        write_text_atomically(target, text)

    todo = [record for record in wanted if record["id"] not in entries]
    bar = tqdm(
        total=len(wanted),
        initial=len(wanted) - len(todo),
        desc="corruptions",
        unit="puzzle",
        disable=not progress,
    )
    for number, record in enumerate(todo, start=1):
        entries[record["id"]] = _corruption_entry(record, strong, weak, thresholds, engine)
        if number % _CORRUPTION_SAVE_EVERY == 0:
            save()
        bar.update(1)
    bar.close()
    save()
    counts = {
        "selected": len(wanted),
        "corrupted": sum(entries[record["id"]] is not None for record in wanted),
        "computed": len(todo),
    }
    run_path = Path(directory) / "run.json"
    if run_path.exists():
        run = _read_run_json(run_path)
        digest = hashlib.sha256(" ".join(sorted(ids)).encode()).hexdigest()
        subsets = [s for s in run.get("corruption_subsets", []) if s.get("ids_sha256") != digest]
        subsets.append({"ids_sha256": digest, "thresholds": asdict(thresholds), "counts": counts})
        amend_run_record(Path(directory), add_outputs=[target.name], corruption_subsets=subsets)
    return counts


def _stockfish_path(stockfish: str | bool) -> str:
    """The Stockfish binary to use (``True``: the usual search), checked before any work."""
    from leelalab.engines import find_stockfish

    return find_stockfish(stockfish if isinstance(stockfish, str) else None)


def _read_run_json(path: Path) -> dict[str, Any]:
    from leelalab.puzzles.dataset import DatasetError

    try:
        return read_json(path, what="run record", hint="rerun `leelalab puzzles filter`")
    except RecordError as error:
        raise DatasetError(str(error)) from None


def _dataset_path(directory: str | os.PathLike[str]) -> Path:
    from leelalab.puzzles.dataset import DatasetError

    if not Path(directory).is_dir():
        raise DatasetError(f"{directory}: no such dataset directory")
    source = Path(directory) / "dataset.jsonl"
    if not source.is_file():
        raise DatasetError(
            f"{directory}: not a filtered dataset (no dataset.jsonl; run `leelalab puzzles "
            "filter` first)"
        )
    return source


def find_record(directory: str | os.PathLike[str], puzzle_id: str) -> dict[str, Any]:
    """The dataset record of one puzzle."""
    from leelalab.puzzles.dataset import DatasetError, read_jsonl

    source = _dataset_path(directory)
    for record in read_jsonl(source):
        if record["id"] == puzzle_id:
            return record
    raise DatasetError(f"puzzle {puzzle_id!r} is not in {source}")


EXPORT_KEYS = (
    "id",
    "fen",
    "moves",
    "strong_pv_probs",
    "weak_pv_probs",
    "strong_wdl",
    "filters",
    "selected",
    "corruption",
)
"""The ``leelalab puzzles export`` record: ``fen`` is the Lichess puzzle FEN (before the
opponent's move, ``moves[0]``), as read, en-passant square included."""


def export_dataset(directory: str | os.PathLike[str], output: str | os.PathLike[str]) -> int:
    """Write the ``leelalab puzzles export`` JSONL (:data:`EXPORT_KEYS`); returns the count."""
    from leelalab.puzzles.dataset import DatasetError, read_jsonl

    source = _dataset_path(directory)
    corruptions: dict[str, Any] = {}
    corruption_file = Path(directory) / "corruptions.jsonl"
    if corruption_file.is_file():
        for entry in read_jsonl(corruption_file):
            corruptions[entry["id"]] = entry.get("corruption")
    count = 0
    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)  # the dataset was checked above
    temporary = target.with_name(target.name + ".tmp")
    try:
        with temporary.open("w", encoding="utf-8") as writer:
            for record in read_jsonl(source):
                record["corruption"] = corruptions.get(record["id"], record.get("corruption"))
                missing = [key for key in EXPORT_KEYS if key not in record]
                if missing:
                    raise DatasetError(f"{source}: record {record['id']!r} lacks {missing}")
                writer.write(json.dumps({key: record[key] for key in EXPORT_KEYS}) + "\n")
                count += 1
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)
    return count
