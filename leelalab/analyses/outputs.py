"""What the analyses' run directories share: running a cached engine job in chunks (the run
record is amended with :func:`leelalab.runs.records.amend_run_record`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def run_job_in_chunks(
    job: Any,
    items: Sequence[Any],
    output: str | os.PathLike[str],
    settings: Mapping[str, Any],
    *,
    chunk_size: int,
    progress: bool,
    overwrite: bool,
    **options: Any,
) -> Path:
    """:func:`~leelalab.runs.results.run_in_chunks` of a job that keeps a cache in the run
    directory (``job.open_cache(directory)``) and engines to close (``job.close()``), which
    it does however the run ends. ``options``: ``results_file``, ``attrs``, ``run_record``,
    ``description``."""
    from leelalab.runs.results import run_in_chunks

    try:
        return run_in_chunks(
            items,
            output,
            settings,
            job,
            chunk_size=chunk_size,
            progress=progress,
            overwrite=overwrite,
            before=job.open_cache,
            **options,
        )
    finally:
        job.close()
