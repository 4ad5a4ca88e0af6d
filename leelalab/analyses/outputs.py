"""What the analyses' run directories share: running a cached engine job in chunks (the run
record is amended with :func:`leelalab.runs.records.amend_run_record`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leelalab.runs.results import ChunkPlan


def run_job_in_chunks(
    job: Any,
    items: Sequence[Any],
    output: str | os.PathLike[str],
    settings: Mapping[str, Any],
    plan: ChunkPlan,
    *,
    progress: bool,
    overwrite: bool,
) -> Path:
    """:func:`~leelalab.runs.results.run_in_chunks` of a job that keeps a cache in the run
    directory (``job.open_cache(directory)``, opened once it exists) and engines to close
    (``job.close()``), which it does however the run ends."""
    from leelalab.runs.results import run_in_chunks

    try:
        return run_in_chunks(
            items,
            output,
            settings,
            job,
            replace(plan, before=job.open_cache),
            progress=progress,
            overwrite=overwrite,
        )
    finally:
        job.close()
