"""Result directories of long experiments: resumable HDF5 chunks, a merged file, ``run.json``.

A run writes one small HDF5 file per chunk of puzzles into ``OUTPUT/chunks/``, each
atomically (written under a temporary name, then renamed), so an interrupted run — even by
``kill -9`` — loses at most the chunk in progress and resumes at the first missing chunk.
Because chunks are fixed puzzle ranges computed independently, a resumed run produces the
same numbers as an uninterrupted one. At the end the chunks are concatenated (axis 0 =
puzzles) into one HDF5 file, and ``run.json`` records inputs, hashes, versions, parameters
and timing. ``settings.json`` guards against resuming with different settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np
from tqdm.auto import tqdm

from leelalab.errors import LeelaLabError

T = TypeVar("T")
Arrays = Mapping[str, np.ndarray | list[str]]


class ResultsError(LeelaLabError):
    """A results directory or file is missing, foreign or inconsistent."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def versions() -> dict[str, str]:
    import chess
    import torch

    from leelalab._version import __version__

    return {
        "leelalab": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "chess": chess.__version__,
    }


def write_text_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def _write_value(group: h5py.Group, name: str, value: np.ndarray | list[str]) -> None:
    if isinstance(value, list) or (isinstance(value, np.ndarray) and value.dtype.kind in "UO"):
        group.create_dataset(name, data=np.asarray(value, dtype=object), dtype=h5py.string_dtype())
    else:
        group.create_dataset(name, data=value)


def write_h5_atomically(
    path: Path, arrays: Mapping[str, np.ndarray | list[str]], attrs: Mapping[str, Any] = {}
) -> None:
    """Write named arrays (string lists allowed) and JSON-able attributes to ``path``."""
    temporary = path.with_name(path.name + ".tmp")
    with h5py.File(temporary, "w") as handle:
        for name, value in arrays.items():
            _write_value(handle, name, value)
        for key, value in attrs.items():
            handle.attrs[key] = value if isinstance(value, str | int | float) else json.dumps(value)
    temporary.replace(path)


def read_h5(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """All datasets (strings decoded) and attributes of a small HDF5 file."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: no such results file")
    try:
        with h5py.File(path, "r") as handle:
            arrays = {}
            for name, dataset in handle.items():
                if h5py.check_string_dtype(dataset.dtype) is not None:
                    arrays[name] = np.array(dataset.asstr()[()], dtype=object)
                else:
                    arrays[name] = dataset[()]
            attrs = dict(handle.attrs)
    except OSError as error:
        raise ResultsError(f"{path}: not a readable HDF5 file ({error})") from None
    return arrays, attrs


INFORMATIONAL_SETTINGS = ("network", "dataset")
"""Paths recorded for the reader but not compared on resume: the files' hashes are."""


def same_settings(stored: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether a run may resume: equal settings, file paths aside (hashes decide)."""

    def relevant(settings: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in settings.items() if k not in INFORMATIONAL_SETTINGS}

    return relevant(stored) == relevant(current)


class ChunkedRun:
    """Chunk bookkeeping of one resumable run in ``output``."""

    def __init__(self, output: str | os.PathLike[str], settings: Mapping[str, Any]) -> None:
        self.output = Path(output)
        self.chunks = self.output / "chunks"
        self.chunks.mkdir(parents=True, exist_ok=True)
        self.settings = dict(settings)
        settings_path = self.output / "settings.json"
        text = json.dumps(self.settings, indent=2, sort_keys=True)
        if settings_path.exists():
            stored = json.loads(settings_path.read_text(encoding="utf-8"))
            if not same_settings(stored, json.loads(text)):
                raise ResultsError(
                    f"{self.output} holds a run with other settings; use another --output or "
                    "delete it"
                )
        else:
            write_text_atomically(settings_path, text)

    def chunk_path(self, number: int) -> Path:
        return self.chunks / f"{number:05d}.h5"

    def done(self, number: int) -> bool:
        return self.chunk_path(number).is_file()

    def write_chunk(
        self,
        number: int,
        arrays: Mapping[str, np.ndarray | list[str]],
        attrs: Mapping[str, Any] = {},
    ) -> None:
        write_h5_atomically(self.chunk_path(number), arrays, attrs)

    def iter_chunks(self) -> Iterator[tuple[dict[str, np.ndarray], dict[str, Any]]]:
        for path in sorted(self.chunks.glob("*.h5")):
            yield read_h5(path)

    def merge(self, name: str, attrs: Mapping[str, Any]) -> Path:
        """Concatenate every chunk (axis 0) into ``output/name``."""
        parts: dict[str, list[np.ndarray]] = {}
        for arrays, _ in self.iter_chunks():
            for key, value in arrays.items():
                parts.setdefault(key, []).append(value)
        merged = {key: np.concatenate(values, axis=0) for key, values in parts.items()}
        path = self.output / name
        write_h5_atomically(path, merged, attrs)
        return path

    def write_run_json(self, record: Mapping[str, Any]) -> Path:
        path = self.output / "run.json"
        write_text_atomically(path, json.dumps({**self.settings, **record}, indent=2))
        return path


def run_in_chunks(
    items: Sequence[T],
    output: str | os.PathLike[str],
    settings: Mapping[str, Any],
    compute: Callable[[list[T]], Arrays],
    *,
    results_file: str,
    attrs: Mapping[str, Any],
    run_record: Mapping[str, Any] = {},
    chunk_size: int = 8,
    description: str = "",
    progress: bool = True,
) -> Path:
    """Run ``compute`` over fixed chunks of ``items``, resumably; merge; write ``run.json``.

    ``compute(chunk)`` returns arrays whose axis 0 is the chunk's items. Returns the merged
    results file's path.
    """
    started = time.perf_counter()
    run = ChunkedRun(output, {**settings, "chunk_size": chunk_size})
    computed = 0
    bar = tqdm(total=len(items), desc=description, unit="puzzle", disable=not progress)
    for number, start in enumerate(range(0, len(items), chunk_size)):
        chunk = list(items[start : start + chunk_size])
        if not run.done(number):
            run.write_chunk(number, compute(chunk))
            computed += len(chunk)
        bar.update(len(chunk))
    bar.close()
    path = run.merge(results_file, attrs)
    run.write_run_json(
        {
            **run_record,
            "items": len(items),
            "items_computed_this_session": computed,
            "seconds_this_session": round(time.perf_counter() - started, 2),
            "versions": versions(),
        }
    )
    return path
