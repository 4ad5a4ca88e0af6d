"""The paper's patching experiment on two strata (prediction 1 of
:mod:`leelalab.analyses.predictions`).

Every puzzle of the paper's stratum and a seeded random sample of the unfiltered stratum get
a corrupted twin (``corrupt_dataset(..., ids=...)``, the paper's procedure, extending the
dataset's ``corruptions.jsonl``; resumable), and residual-stream patching then runs over
all of them at once (``run_residual_patching(..., ids=...)``; resumable). Strata are read
back from puzzle ids, so one patching run serves every stratum (the weak-solved one too).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leelalab.analyses.strata import strata_ids
from leelalab.errors import LeelaLabError
from leelalab.models.base import LeelaNetwork

if TYPE_CHECKING:
    from leelalab.puzzles.corruptions import CorruptionThresholds

SAMPLE_FILE = "strata_sample.json"


def strata_sample(
    directory: str | os.PathLike[str], unfiltered: int, *, seed: int = 0
) -> dict[str, list[str]]:
    """Every puzzle of the paper's stratum and ``unfiltered`` puzzles of the unfiltered one
    (the first ones of a seeded shuffle, so larger samples extend smaller ones)."""
    ids = strata_ids(directory)
    pool = list(ids["unfiltered"])
    random.Random(seed).shuffle(pool)
    return {"paper": list(ids["paper"]), "unfiltered": sorted(pool[:unfiltered])}


def run_strata_patching(
    directory: str | os.PathLike[str],
    output: str | os.PathLike[str],
    strong: LeelaNetwork,
    weak: LeelaNetwork,
    *,
    unfiltered: int = 300,
    seed: int = 0,
    chunk_size: int = 8,
    progress: bool = True,
    thresholds: CorruptionThresholds | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Corrupt, then patch, the paper stratum and an unfiltered sample; returns counts and
    the patching results path. ``thresholds``: the corruption search's (default: the
    paper's)."""
    from leelalab.patching.residual import run_residual_patching
    from leelalab.patching.settings import ResidualPatchingSettings
    from leelalab.puzzles.filter import corrupt_dataset
    from leelalab.runs.results import write_text_atomically

    output = Path(output)
    sample = strata_sample(directory, unfiltered, seed=seed)
    union = sorted(set(sample["paper"]) | set(sample["unfiltered"]))
    if not union:
        raise LeelaLabError(f"{directory}: neither stratum has a puzzle")
    counts = corrupt_dataset(directory, strong, weak, thresholds, ids=union, progress=progress)
    path = run_residual_patching(
        strong,
        directory,
        output,
        ResidualPatchingSettings(chunk_size=chunk_size),
        ids=union,
        progress=progress,
        overwrite=overwrite,
    )
    # Written after the patching run made the directory (a deterministic function of seed).
    write_text_atomically(
        output / SAMPLE_FILE,
        json.dumps({"seed": seed, "unfiltered_sample": unfiltered, **sample}, indent=2),
    )
    return {"corruptions": counts, "patching": str(path), "puzzles": len(union)}
