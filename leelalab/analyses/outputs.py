"""What the analyses' run directories share: running a cached engine job in chunks, and
amending the run record when files are added after the chunked run recorded itself."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def amend_run_record(output: str | os.PathLike[str], **fields: Any) -> None:
    """Rewrite ``output``'s run record with ``fields`` added (or replaced).

    The record lists the files the run wrote (``outputs``, what ``--overwrite`` removes),
    so an analysis that writes more files after the chunked run recorded itself lists them
    by amending the record; the session's ``seconds`` and the results ``format`` stay.
    """
    from leelalab.runs.records import read_run_record, write_run_record

    record = read_run_record(output)
    seconds = record.pop("seconds", None)
    for key in ("versions", "outputs", *fields):
        record.pop(key, None)
    # write_run_record sets the record's own format; the one the run wrote comes back last.
    if "format" in record:
        fields = {"format": record.pop("format"), **fields}
    write_run_record(output, record, seconds=seconds, **fields)


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
