"""Strata of one filter run: which puzzles each search-versus-pattern analysis compares.

- ``paper``: the look-ahead paper's selection (every filter passed: not mate-in-1, at least
  3 plies, hard for the weak network, the strong network right on every own move, forcing).
- ``unfiltered``: the strong network's top move is the 1st move of the line, with only the
  structural filters (not mate-in-1, at least 3 plies) — no hardness, correctness-along-the-
  line or forcing filter. This is the kind of set the paper's critics built; it contains
  ``paper`` whenever the correctness threshold is at least 0.5.
- ``weak-solved``: in ``unfiltered``, and the weak network's top move is the 1st move too:
  puzzles a pattern-matcher solves ("solved by luck" in the paper author's words).

Every function reads only ``dataset.jsonl`` (the filter records each network's top move and
probability at every ply), so strata need no network.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from leelalab.analyses.settings import STRATA
from leelalab.errors import LeelaLabError
from leelalab.puzzles.dataset import DatasetPuzzle, iter_dataset


def _first_move_right(record: dict[str, Any], network: str) -> bool:
    top_moves = record.get(f"{network}_top_moves") or []
    return len(record["moves"]) > 1 and bool(top_moves) and top_moves[0] == record["moves"][1]


def strata_of(record: dict[str, Any]) -> tuple[str, ...]:
    """The strata one ``dataset.jsonl`` record belongs to (possibly none)."""
    flags = record.get("filters", {})
    structural = bool(flags.get("not_mate_in_1")) and bool(flags.get("pv_length"))
    names = []
    if record.get("selected"):
        names.append("paper")
    if structural and _first_move_right(record, "strong"):
        names.append("unfiltered")
        if _first_move_right(record, "weak"):
            names.append("weak-solved")
    return tuple(names)


def check_stratum(name: str) -> str:
    if name not in STRATA:
        raise LeelaLabError(f"unknown stratum {name!r}; choose from {', '.join(STRATA)}")
    return name


def iter_stratum(
    directory: str | os.PathLike[str], stratum: str, *, limit: int | None = None
) -> Iterator[DatasetPuzzle]:
    """The puzzles of one stratum, in dataset order (with corruptions where they exist)."""
    check_stratum(stratum)
    count = 0
    for puzzle in iter_dataset(directory, selected_only=False):
        if limit is not None and count >= limit:
            return
        if stratum in strata_of(puzzle.record):
            yield puzzle
            count += 1


def strata_ids(directory: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Puzzle ids per stratum, in dataset order."""
    ids: dict[str, list[str]] = {name: [] for name in STRATA}
    for puzzle in iter_dataset(directory, selected_only=False):
        for name in strata_of(puzzle.record):
            ids[name].append(puzzle.id)
    return ids
