"""Run records of analyses that add to their output after the chunked run wrote its record."""

from __future__ import annotations

import os
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
