"""Completing a chunked run's record once the files written after the chunks exist."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from leelalab.runs.experiment import Results
from leelalab.runs.records import read_run_record, write_run_record


def complete_run_record(output: str | os.PathLike[str], **fields: Any) -> Path:
    """Rewrite ``output/run.json`` with ``fields`` added and its ``outputs`` listed again.

    :func:`~leelalab.runs.results.run_in_chunks` writes the record when the chunks are
    merged; a summary written afterwards must be listed among the run's outputs too, or
    ``--overwrite`` would keep it as if it were a user's file.
    """
    record = read_run_record(output)
    for key in ("format", "outputs", "versions"):
        record.pop(key, None)
    record.update(fields)
    return write_run_record(output, record)


def save_summary(output: str | os.PathLike[str], results: Results, **fields: Any) -> Path:
    """Save a chunked run's summary into ``output`` and list it in the run record."""
    path = results.save(output)
    complete_run_record(output, **fields)
    return path
