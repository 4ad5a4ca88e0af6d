"""Result directories of long experiments: resumable HDF5 chunks, a merged file, ``run.json``.

A run writes one small HDF5 file per chunk of puzzles into ``OUTPUT/chunks/``, each
atomically (written under a temporary name, then renamed), so an interrupted run — even by
``kill -9`` — loses at most the chunk in progress and resumes at the first missing chunk.
Because chunks are fixed puzzle ranges computed independently, a resumed run produces the
same numbers as an uninterrupted one. At the end the chunks are concatenated (axis 0 =
puzzles) into one HDF5 file, and ``run.json`` records inputs, hashes, versions, parameters
and timing. ``settings.json`` guards against resuming with different settings.

Every writer of an output directory goes through :class:`RunDirectory`: inputs are checked
before it is created; the same settings resume (or report a complete run); other settings
are refused unless ``overwrite`` replaces the directory; a run that fails before writing any
result removes what it created. Settings compare file hashes, not paths.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm.auto import tqdm

from leelalab.runs.executor import LOCAL, ChunkJob, Executor, FunctionJob, map_chunks
from leelalab.runs.records import (
    FOREIGN_FILE,
    SETTINGS_FILE,
    RecordError,
    directory_files,
    foreign_files,
    note_foreign_files,
    read_h5,
    removable_files,
    sha256_file,
    versions,
    write_h5_atomically,
    write_run_record,
    write_text_atomically,
)

__all__ = [
    "ChunkPlan",
    "ChunkedRun",
    "ResultsError",
    "RunDirectory",
    "dataset_provenance",
    "read_h5",
    "remove_output",
    "run_in_chunks",
    "same_settings",
    "settings_difference",
    "sha256_file",
    "versions",
    "write_h5_atomically",
    "write_text_atomically",
]

T = TypeVar("T")
LOG = logging.getLogger("leelalab.runs")
"""Resuming and keeping runs are told here (the command line shows INFO on stderr)."""
Arrays = Mapping[str, np.ndarray | list[str]]


ResultsError = RecordError
"""A results directory or file is missing, foreign or inconsistent (one error class for
every reader: :class:`~leelalab.runs.records.RecordError`)."""


def dataset_provenance(network: Any, dataset: Path, limit: int | None) -> dict[str, Any]:
    """The settings every dataset experiment records: inputs, their hashes, the network."""
    corruptions = dataset / "corruptions.jsonl"
    return {
        "dataset": str(dataset.resolve()),
        "dataset_sha256": sha256_file(dataset / "dataset.jsonl"),
        "corruptions_sha256": sha256_file(corruptions) if corruptions.is_file() else None,
        "network": network.source,
        "network_sha256": network.sha256,
        "limit": limit,
    }


INFORMATIONAL_SETTINGS = ("network", "dataset", "input", "source", "path", "store", "reference")
"""Paths recorded for the reader but not compared on resume when the file's hash sits beside
them (``network`` ↔ ``network_sha256``, ``reference`` ↔ ``reference_sha256``, ``source``/
``path`` ↔ ``sha256``): the hashes decide, so the same file spelled with another path (in a
task folder moved or copied, or a bundled network recorded by name, see
``inference.networks.network_reference``) resumes. A path without a hash is compared as it
is."""


def _hash_key(key: str) -> str:
    return "sha256" if key in ("source", "path") else f"{key}_sha256"


def _relevant(settings: Any, other: Any) -> Any:
    """``settings`` without the paths whose hashes (present in both) decide, at any depth."""
    if not isinstance(settings, Mapping):
        return settings
    other = other if isinstance(other, Mapping) else {}
    return {
        key: _relevant(value, other.get(key))
        for key, value in settings.items()
        if not (
            key in INFORMATIONAL_SETTINGS
            and settings.get(_hash_key(key)) is not None
            and other.get(_hash_key(key)) is not None
        )
    }


def _normalised(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as they read back from JSON (tuples become lists, keys strings)."""
    return dict(json.loads(json.dumps(settings)))


def same_settings(stored: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether a run may resume: equal settings, file paths aside where hashes decide."""
    stored, current = _normalised(stored), _normalised(current)
    return _relevant(stored, current) == _relevant(current, stored)


def settings_difference(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The top-level settings that differ (``same_settings`` rules), for messages."""
    stored, current = _normalised(stored), _normalised(current)
    a, b = _relevant(stored, current), _relevant(current, stored)
    return sorted(key for key in set(a) | set(b) if a.get(key) != b.get(key))


MARKERS = (SETTINGS_FILE, "run.json")
"""Files that mark a directory as a leelalab output (one that ``overwrite`` may replace)."""


def _holds_results(directory: Path, settings_file: str = SETTINGS_FILE) -> bool:
    """Whether ``directory`` holds a result: a file but its settings, temporary files,
    folders and the files that were there before leelalab wrote into it."""
    foreign = foreign_files(directory) | {settings_file, FOREIGN_FILE}
    return any(
        name not in foreign and not name.endswith(".tmp") for name in directory_files(directory)
    )


def _remove_empty_folders(directory: Path) -> None:
    for folder in sorted(
        (path for path in directory.rglob("*") if path.is_dir()), key=lambda p: -len(p.parts)
    ):
        if not any(folder.iterdir()):
            folder.rmdir()


def is_leelalab_output(path: Path) -> bool:
    """Whether ``path`` is a directory that a leelalab run record or settings mark."""
    return path.is_dir() and any((path / marker).is_file() for marker in MARKERS)


def remove_output(path: Path) -> list[Path]:
    """Delete a leelalab output: a file, or a directory's leelalab files only.

    A directory must be marked as a leelalab output (``settings.json`` or ``run.json``);
    only what its record says the run wrote is removed (see
    :func:`~leelalab.runs.records.removable_files`), so a user's files in it survive, and
    are returned. Anything else is refused.
    """
    if path.is_dir():
        if not any(path.iterdir()):
            return []
        if not is_leelalab_output(path):
            raise ResultsError(
                f"{path} is not a leelalab output directory (no settings.json or run.json); "
                "not deleting it: choose another output"
            )
        remove, keep = removable_files(path)
        for file in remove:
            file.unlink()
        _remove_empty_folders(path)
        return keep
    if path.exists() or path.is_symlink():
        path.unlink()
    return []


class RunDirectory:
    """The life cycle of one output directory, shared by every writer of runs.

    Constructing it inspects ``path`` and refuses, before anything is computed, a directory
    that holds a run with other settings (unless ``overwrite``) or that is not a leelalab
    output at all. Entering it (``with``) replaces the old run when ``overwrite`` — only the
    files the old run wrote; a user's files beside them stay and are recorded as foreign —
    creates the directory and writes ``settings.json``. Leaving it with an exception removes
    what this session created when no result was written yet, so a run that fails early
    leaves nothing behind; a run that wrote results keeps them, to resume.

    Construct it only after the command's inputs were validated: nothing is deleted before
    ``__enter__``.

    Attributes:
        resuming: the directory holds a run with the same settings (resume it, or, when
            :meth:`complete`, report it complete).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        settings: Mapping[str, Any],
        *,
        overwrite: bool = False,
        what: str = "run",
    ) -> None:
        self.path = Path(path)
        self.settings = _normalised(settings)
        self.overwrite = overwrite
        self.what = what
        self.resuming = False
        self.opened = False
        self.started = time.perf_counter()
        self._created: list[Path] = []
        self._inspect()

    def _inspect(self) -> None:
        path = self.path
        if not path.exists():
            return
        if not path.is_dir():
            raise ResultsError(f"{path} exists and is not a directory; choose another output")
        settings_path = path / SETTINGS_FILE
        if settings_path.is_file():
            if self.overwrite:
                return
            try:
                stored = json.loads(settings_path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                raise ResultsError(
                    f"{settings_path} is unreadable; pass --overwrite to replace {path} or use "
                    "another output"
                ) from None
            if not isinstance(stored, dict) or not same_settings(stored, self.settings):
                differing = (
                    settings_difference(stored, self.settings) if isinstance(stored, dict) else []
                )
                detail = f" (differing: {', '.join(differing)})" if differing else ""
                raise ResultsError(
                    f"{path} holds a {self.what} with other settings{detail}; pass --overwrite "
                    "to replace it or use another output"
                )
            self.resuming = True
            return
        if not any(path.iterdir()):
            return
        if (path / "run.json").is_file():
            if self.overwrite:
                return
            raise ResultsError(
                f"{path} holds results without a settings.json (an older leelalab?); pass "
                "--overwrite to replace them or use another output"
            )
        raise ResultsError(
            f"{path} exists and is not a leelalab output directory; choose another output"
        )

    def complete(self, *names: str) -> bool:
        """Whether a resumed run already wrote ``run.json`` and ``names``: nothing to do."""
        done = self.resuming and all((self.path / n).is_file() for n in ("run.json", *names))
        if done:
            LOG.info("%s holds this %s, complete with these settings: kept", self.path, self.what)
        return done

    def __enter__(self) -> RunDirectory:
        if self.path.exists() and not self.resuming and any(self.path.iterdir()):
            kept = remove_output(self.path)  # overwrite (refused in _inspect otherwise)
            note_foreign_files(self.path, [str(p.relative_to(self.path)) for p in kept])
        if not self.path.exists():
            self._created.append(self.path)
            for parent in self.path.parents:
                if parent.exists():
                    break
                self._created.append(parent)
            self.path.mkdir(parents=True)
        if not self.resuming:
            write_text_atomically(
                self.path / SETTINGS_FILE, json.dumps(self.settings, indent=2, sort_keys=True)
            )
        self.opened = True
        return self

    def discard(self) -> None:
        """Delete this folder once its results were merged elsewhere (a work folder of parts
        or chunks): only what leelalab wrote in it goes, so a user's file stays, and with it
        the folder. The one way a command removes its own work folder."""
        if not self.path.is_dir():
            return
        remove_output(self.path)
        if self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()

    def write_record(self, **fields: Any) -> Path:
        """The run record (``run.json``): settings, ``fields``, seconds since construction."""
        return write_run_record(self.path, self.settings, started=self.started, **fields)

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None or self.resuming or _holds_results(self.path):
            return
        if self._created:
            # Nothing but what this session made: remove it, the outermost folder included.
            shutil.rmtree(self._created[-1], ignore_errors=True)
            return
        # A directory that was there before: leave what it held before this run.
        foreign = foreign_files(self.path)
        for name in directory_files(self.path):
            if name not in foreign:
                (self.path / name).unlink()
        _remove_empty_folders(self.path)


class ChunkedRun(RunDirectory):
    """Chunk bookkeeping of one resumable run in ``output`` (a :class:`RunDirectory`)."""

    def __init__(
        self,
        output: str | os.PathLike[str],
        settings: Mapping[str, Any],
        *,
        overwrite: bool = False,
    ) -> None:
        super().__init__(output, settings, overwrite=overwrite)
        self.output = self.path
        self.chunks = self.output / "chunks"

    def __enter__(self) -> ChunkedRun:
        super().__enter__()
        self.chunks.mkdir(exist_ok=True)
        return self

    def chunk_path(self, number: int) -> Path:
        return self.chunks / f"{number:05d}.h5"

    def _open(self) -> None:
        """Create the directory on first write when used without ``with`` (then nothing is
        cleaned up on failure)."""
        if not self.opened:
            self.__enter__()

    def done(self, number: int) -> bool:
        return self.chunk_path(number).is_file()

    def write_chunk(
        self,
        number: int,
        arrays: Mapping[str, np.ndarray | list[str]],
        attrs: Mapping[str, Any] = {},
    ) -> None:
        self._open()
        write_h5_atomically(self.chunk_path(number), arrays, attrs)

    def iter_chunks(self) -> Iterator[tuple[dict[str, np.ndarray], dict[str, Any]]]:
        for path in sorted(self.chunks.glob("*.h5")):
            yield read_h5(path)

    def merge(self, name: str, attrs: Mapping[str, Any]) -> Path:
        """Concatenate every chunk (axis 0) into ``output/name``."""
        self._open()
        parts: dict[str, list[np.ndarray]] = {}
        for arrays, _ in self.iter_chunks():
            for key, value in arrays.items():
                parts.setdefault(key, []).append(value)
        merged = {key: np.concatenate(values, axis=0) for key, values in parts.items()}
        path = self.output / name
        write_h5_atomically(path, merged, attrs)
        return path

    def write_run_json(self, record: Mapping[str, Any]) -> Path:
        """The run record: settings and ``record`` (see :meth:`RunDirectory.write_record`)."""
        self._open()
        return self.write_record(**record)


@dataclass(frozen=True)
class ChunkPlan:
    """What a chunked run writes, besides its chunks.

    Attributes:
        results_file: the merged HDF5 file's name in the output directory.
        attrs: its attributes (JSON-able; ``format`` names the layout).
        run_record: fields the run record adds to the settings.
        chunk_size: items per chunk (the unit of resuming; recorded with the settings).
        description: the progress bar's label.
        before: called with the output directory once it exists, before the first chunk
            (side files, an engine cache).
    """

    results_file: str
    attrs: Mapping[str, Any] = field(default_factory=dict)
    run_record: Mapping[str, Any] = field(default_factory=dict)
    chunk_size: int = 8
    description: str = ""
    before: Callable[[Path], None] | None = None


def run_in_chunks(
    items: Sequence[T],
    output: str | os.PathLike[str],
    settings: Mapping[str, Any],
    compute: Callable[[list[T]], Arrays] | ChunkJob,
    plan: ChunkPlan,
    *,
    progress: bool = True,
    overwrite: bool = False,
    executor: Executor = LOCAL,
) -> Path:
    """Run ``compute`` over fixed chunks of ``items``, resumably; merge; write ``run.json``.

    ``compute(chunk)`` (a function, or a :class:`~leelalab.runs.executor.ChunkJob` whose
    ``compute(state, chunk)`` a Ray worker can run) returns arrays whose axis 0 is the
    chunk's items. Chunks run on ``executor``; the merged file does not depend on it.
    ``plan`` names the merged file and what the record adds (:class:`ChunkPlan`).
    Returns the merged results file's path.

    The output directory follows :class:`RunDirectory`: the same settings resume (a
    complete run is returned as it is), other settings are refused unless ``overwrite``,
    and a run that fails before its first chunk leaves nothing behind.
    """
    results_file, chunk_size = plan.results_file, plan.chunk_size
    started = time.perf_counter()
    executor.check_available()
    run = ChunkedRun(output, {**settings, "chunk_size": chunk_size}, overwrite=overwrite)
    if run.complete(results_file):
        return run.output / results_file
    with run:
        if plan.before is not None:
            plan.before(run.output)
        job = (
            compute
            if isinstance(compute, ChunkJob)
            else FunctionJob(compute, "its chunks are computed by a local function")
        )
        computed = 0
        bar = tqdm(total=len(items), desc=plan.description, unit="puzzle", disable=not progress)

        starts = range(0, len(items), chunk_size)
        finished = sum(run.done(number) for number in range(len(starts)))
        if finished:
            LOG.info("resuming %s: %d of %d chunks done", run.output, finished, len(starts))

        def pending() -> Iterator[tuple[int, list[T]]]:
            for number, start in enumerate(starts):
                chunk = list(items[start : start + chunk_size])
                if run.done(number):
                    bar.update(len(chunk))
                else:
                    yield number, chunk

        def write(number: int, arrays: Arrays) -> None:
            nonlocal computed
            run.write_chunk(number, arrays)
            size = len(items[number * chunk_size : (number + 1) * chunk_size])
            computed += size
            bar.update(size)

        map_chunks(job, pending(), write, executor)
        bar.close()
        path = run.merge(results_file, plan.attrs)
        run.write_run_json(
            {
                **plan.run_record,
                "items": len(items),
                "items_computed_this_session": computed,
                "seconds": round(time.perf_counter() - started, 2),
                "executor": executor.describe(),
            }
        )
    return path
