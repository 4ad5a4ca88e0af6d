"""Refutation depth: does the network notice an edit that breaks the line only at ply k?

:func:`find_refutations` searches, for a sample of puzzles, a depth-k refutation and its
matched control for each k (:mod:`leelalab.puzzles.refutations`; Stockfish only, no
network), resumable in fixed chunks. :func:`measure_refutations` then runs networks on the
clean, refuted and control positions (no move history on any of them: the edited positions
never occurred) and reports, per k and network, the drop of the first move's log-odds

    drop = logit P(1st move | clean) − logit P(1st move | edited)

for refutations and for controls, and their paired difference (same puzzle, same k) with
bootstrap intervals over puzzles. A searcher should show a positive paired difference at
every k within its horizon; a template matcher mostly at k = 1.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chess
import numpy as np

from leelalab.analyses.inside_settings import (
    DEPTHS,
    RefutationMeasureSettings,
    RefutationSearchSettings,
)
from leelalab.analyses.run_records import save_summary
from leelalab.analyses.strata import check_stratum, iter_stratum
from leelalab.engines import CACHE_FILE
from leelalab.errors import LeelaLabError
from leelalab.models.base import LeelaNetwork
from leelalab.models.evaluation import evaluate
from leelalab.puzzles.dataset import DatasetPuzzle, iter_dataset
from leelalab.puzzles.refutations import (
    RefutationSettings,
    StockfishOracle,
    find_refutation,
    settings_record,
)
from leelalab.runs.experiment import Results
from leelalab.runs.records import RecordError, format_name, read_run_record
from leelalab.runs.results import (
    ChunkPlan,
    read_h5,
    run_in_chunks,
    sha256_file,
    versions,
    write_h5_atomically,
)
from leelalab.stats import mean_ci, proportion_ci

RESULTS_FILE = "refutations.h5"
ROLES = ("refutation", "control")
FIND_HINT = "a `leelalab refutations find` directory"


@dataclass
class RefutationSearch(Results):
    """``summary.json`` of ``refutations find``: per depth, status counts, pairs found, edit
    kinds and edits evaluated (:func:`summarize_search`)."""

    FORMAT = format_name("refutations")
    FILE = "summary.json"
    HINT = FIND_HINT

    puzzles: int
    depths: dict[str, Any]


@dataclass
class RefutationMeasure(Results):
    """``measure.json`` of ``refutations measure``: per network and depth, the 1st-move
    log-odds drop of refutations and controls and their paired difference."""

    FORMAT = format_name("refutations-measure")
    FILE = "measure.json"
    HINT = "run `leelalab refutations measure` on the directory first"

    puzzles: int
    depths: list[int]
    networks: dict[str, Any]
    search: dict[str, Any]
    versions: dict[str, str] | None = None


def select_puzzles(
    directory: str | os.PathLike[str],
    *,
    stratum: str = "unfiltered",
    min_moves: int = 5,
    sample: int | None = None,
    seed: int = 0,
) -> list[DatasetPuzzle]:
    """Puzzles of ``stratum`` (or ``"all"``) with at least ``min_moves`` plies after the
    opponent's move; a seeded random ``sample`` of them (kept in dataset order)."""
    if stratum == "all":
        source = iter_dataset(directory, selected_only=False)
    else:
        source = iter_stratum(directory, check_stratum(stratum))
    puzzles = [p for p in source if p.n_moves >= min_moves]
    if sample is not None and sample < len(puzzles):
        chosen = set(random.Random(seed).sample(range(len(puzzles)), sample))
        puzzles = [p for i, p in enumerate(puzzles) if i in chosen]
    if not puzzles:
        raise LeelaLabError(f"{directory}: no {stratum} puzzle with at least {min_moves} plies")
    return puzzles


def find_refutations(
    directory: str | os.PathLike[str],
    output: str | os.PathLike[str],
    settings: RefutationSearchSettings | None = None,
    *,
    stockfish: str | os.PathLike[str] | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Depth-k refutations and controls for a sample of a filter run's puzzles.

    Writes ``output/refutations.h5`` (per puzzle: id, clean FEN, 1st move, and per depth the
    JSON record of :func:`leelalab.puzzles.refutations.find_refutation`), ``summary.json``
    (:class:`RefutationSearch`), ``run.json`` and ``engine_cache.sqlite`` (every verdict,
    :mod:`leelalab.engines`). The puzzles are selected (and the dataset checked) before the
    output is touched.
    """
    settings = settings or RefutationSearchSettings()
    directory, output = Path(directory), Path(output)
    puzzles = select_puzzles(
        directory,
        stratum=settings.stratum,
        min_moves=settings.min_moves,
        sample=settings.sample,
        seed=settings.seed,
    )
    thresholds = settings.thresholds()
    depths, seed = settings.depths, settings.seed
    with StockfishOracle(stockfish, nodes=thresholds.nodes) as oracle:
        run_settings = {
            "analysis": "refutations",
            "dataset": str(directory.resolve()),
            "dataset_sha256": sha256_file(directory / "dataset.jsonl"),
            "stratum": settings.stratum,
            "min_moves": settings.min_moves,
            "sample": settings.sample,
            "seed": seed,
            "depths": list(depths),
            "refutation_settings": settings_record(thresholds, oracle),
        }

        def compute(chunk: list[DatasetPuzzle]) -> dict[str, Any]:
            arrays: dict[str, Any] = {
                "puzzle_ids": [p.id for p in chunk],
                "clean_fen": [p.clean_board.fen(en_passant="fen") for p in chunk],
                "first_move": [p.puzzle.moves[1] for p in chunk],
                "n_moves": np.array([p.n_moves for p in chunk], dtype=np.int16),
                "selected": np.array([bool(p.record.get("selected")) for p in chunk]),
            }
            for k in depths:
                arrays[f"k{k}"] = [
                    json.dumps(find_refutation(p.puzzle, k, oracle, thresholds, seed=seed))
                    for p in chunk
                ]
            return arrays

        path = run_in_chunks(
            puzzles,
            output,
            run_settings,
            compute,
            ChunkPlan(
                results_file=RESULTS_FILE,
                attrs={"depths": list(depths)},
                chunk_size=settings.chunk_size,
                description="refutations",
                before=lambda directory: oracle.stockfish.use_cache(directory / CACHE_FILE),
            ),
            progress=progress,
            overwrite=overwrite,
        )
        analyses = oracle.analyses
    summary = RefutationSearch.from_json(summarize_search(path))
    save_summary(output, summary, stockfish_analyses_this_session=analyses)
    return path


def _depths(attrs: Mapping[str, Any]) -> list[int]:
    depths = attrs["depths"]
    return [int(k) for k in (json.loads(depths) if isinstance(depths, str) else depths)]


def load_search(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[int]]:
    """The arrays of ``refutations.h5`` (per-depth records decoded) and its depths."""
    arrays, attrs = read_h5(path)
    depths = _depths(attrs)
    for k in depths:
        arrays[f"k{k}"] = [json.loads(text) for text in arrays[f"k{k}"]]
    return arrays, depths


def summarize_search(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Per depth: status counts, pairs found, edit kinds, Stockfish verdict counts."""
    arrays, depths = load_search(path)
    summary: dict[str, Any] = {"puzzles": len(arrays["puzzle_ids"]), "depths": {}}
    for k in depths:
        records = arrays[f"k{k}"]
        statuses: dict[str, int] = {}
        kinds: dict[str, int] = {}
        for record in records:
            statuses[record["status"]] = statuses.get(record["status"], 0) + 1
            if record["refutation"] is not None:
                kind = record["refutation"]["kind"]
                kinds[kind] = kinds.get(kind, 0) + 1
        controls = [r["control"] for r in records if r["control"] is not None]
        summary["depths"][str(k)] = {
            "status": statuses,
            "refutations": sum(r["refutation"] is not None for r in records),
            "pairs": len(controls),
            "local_controls": sum(bool(c.get("local")) for c in controls),
            "refutation_kinds": kinds,
            "edits_evaluated": sum(r.get("evaluated", 0) for r in records),
        }
    return summary


def _log_odds(p: float, eps: float = 1e-6) -> float:
    p = min(max(p, eps), 1 - eps)
    return math.log(p / (1 - p))


def measure_refutations(
    directory: str | os.PathLike[str],
    networks: Mapping[str, LeelaNetwork],
    settings: RefutationMeasureSettings | None = None,
) -> dict[str, Any]:
    """Run ``networks`` (label → network) on a :func:`find_refutations` directory.

    Writes ``measure.h5`` (per network, role and depth: the 1st move's log-odds on the clean
    and edited boards, NaN where there is no edit; whether the 1st move stays top-1) and
    ``measure.json`` (the summary returned).
    """
    settings = settings or RefutationMeasureSettings()
    batch_size, seed = settings.batch_size, settings.seed
    directory = Path(directory)
    arrays, depths = load_search(directory / RESULTS_FILE)
    n = len(arrays["puzzle_ids"])
    clean_boards = [chess.Board(fen) for fen in arrays["clean_fen"]]
    first_moves = list(arrays["first_move"])
    out: dict[str, np.ndarray] = {"puzzle_ids": np.asarray(arrays["puzzle_ids"], dtype=object)}
    summary: dict[str, Any] = {
        "puzzles": n,
        "depths": depths,
        "networks": {},
        "search": summarize_search(directory / RESULTS_FILE),
    }
    for label, network in networks.items():
        clean = evaluate(network, clean_boards, batch_size=batch_size)
        clean_lo = np.array(
            [_log_odds(e.policy.get(m, 0.0)) for e, m in zip(clean, first_moves, strict=True)]
        )
        out[f"{label}/clean_log_odds"] = clean_lo
        per_network: dict[str, Any] = {
            "network": network.source,
            "network_sha256": network.sha256,
            "depths": {},
        }
        for k in depths:
            drops: dict[str, np.ndarray] = {}
            stays_top: dict[str, np.ndarray] = {}
            for role in ROLES:
                rows = [i for i, r in enumerate(arrays[f"k{k}"]) if r[role] is not None]
                boards = [chess.Board(arrays[f"k{k}"][i][role]["fen"]) for i in rows]
                evaluations = evaluate(network, boards, batch_size=batch_size) if boards else []
                edited = np.full(n, np.nan)
                top = np.zeros(n, dtype=bool)
                for i, evaluation in zip(rows, evaluations, strict=True):
                    edited[i] = _log_odds(evaluation.policy.get(first_moves[i], 0.0))
                    top[i] = next(iter(evaluation.policy)) == first_moves[i]
                out[f"{label}/k{k}/{role}_log_odds"] = edited
                out[f"{label}/k{k}/{role}_top1"] = top
                drops[role] = clean_lo - edited
                stays_top[role] = top
            local = np.array(
                [
                    r["control"] is not None and bool(r["control"].get("local"))
                    for r in arrays[f"k{k}"]
                ]
            )
            per_network["depths"][str(k)] = _depth_summary(drops, stays_top, local, seed)
        summary["networks"][label] = per_network
    write_h5_atomically(
        directory / "measure.h5",
        {key.replace("/", "__"): value for key, value in out.items()},
        {"depths": depths, "networks": list(networks)},
    )
    summary["versions"] = versions()
    # measure.h5 and measure.json are outputs of the run too (--overwrite removes them).
    save_summary(directory, RefutationMeasure.from_json(summary))
    return summary


def _depth_summary(
    drops: Mapping[str, np.ndarray],
    stays_top: Mapping[str, np.ndarray],
    local_control: np.ndarray,
    seed: int,
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for role in ROLES:
        present = np.isfinite(drops[role])
        result[role] = {
            "n": int(present.sum()),
            "log_odds_drop": mean_ci(drops[role][present], seed=seed).to_json(),
            "first_move_stays_top1": proportion_ci(
                int(stays_top[role][present].sum()), int(present.sum())
            ).to_json(),
        }
    paired = np.isfinite(drops["refutation"]) & np.isfinite(drops["control"])
    difference = drops["refutation"][paired] - drops["control"][paired]
    result["paired"] = {
        "n": int(paired.sum()),
        "refutation_minus_control": mean_ci(difference, seed=seed).to_json(),
        "refutation": mean_ci(drops["refutation"][paired], seed=seed).to_json(),
        "control": mean_ci(drops["control"][paired], seed=seed).to_json(),
    }
    # Robustness: only the pairs whose control comes from the local pool too.
    local = paired & local_control
    result["paired_local_controls"] = {
        "n": int(local.sum()),
        "refutation_minus_control": mean_ci(
            drops["refutation"][local] - drops["control"][local], seed=seed
        ).to_json(),
    }
    return result


def search_settings_of(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings a refutation directory was made with (``run.json``); one line when
    ``directory`` is not a ``refutations find`` run."""
    directory = Path(directory)
    record = read_run_record(directory, hint=FIND_HINT)
    if record.get("analysis") != "refutations" or not isinstance(record.get("dataset"), str):
        raise RecordError(f"{directory} is not a `leelalab refutations find` directory")
    if not (directory / RESULTS_FILE).is_file():
        raise RecordError(f"{directory}: no {RESULTS_FILE} (the search did not finish)")
    return record


__all__ = [
    "DEPTHS",
    "RefutationMeasure",
    "RefutationMeasureSettings",
    "RefutationSearch",
    "RefutationSearchSettings",
    "RefutationSettings",
    "find_refutations",
    "load_search",
    "measure_refutations",
    "search_settings_of",
    "select_puzzles",
    "summarize_search",
]
