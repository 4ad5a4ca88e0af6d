"""One run record, one reader, one format scheme for every file leelalab writes.

Format names follow one scheme, ``leelalab.<kind>/<version>`` (kinds in kebab case, the
version a whole number bumped whenever a reader of the old layout would misread the new
one). Names written by earlier versions of leelalab are listed in :data:`LEGACY_FORMATS`
and read as their current name, so old files stay readable.

Every output carries a run record (``DIR/run.json`` for a directory, ``FILE.run.json``
beside a file) written by :func:`write_run_record`: the settings, the inputs with their
sha256, the library versions, the seconds this invocation took, the record's format and —
for directories — the files the run wrote (``outputs``), which is what lets ``--overwrite``
remove a leelalab output and nothing a user put beside it.

:func:`read_json` and :func:`read_result` are the readers: a missing, truncated, foreign or
older-than-supported file is a :class:`~leelalab.runs.results.ResultsError` of one line that
names the file and says what to run instead.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from leelalab.errors import LeelaLabError

RUN_RECORD_FORMAT = "leelalab.run/1"
RUN_RECORD = "run.json"
SETTINGS_FILE = "settings.json"
FOREIGN_FILE = ".leelalab-foreign.json"
"""Beside a run's files: the files that were in the directory before leelalab wrote into
it (a user's notes), which the run record's ``outputs`` and ``--overwrite`` leave alone."""

_FORMAT = re.compile(r"^leelalab\.([a-z0-9]+(?:-[a-z0-9]+)*)/([1-9][0-9]*)$")

LEGACY_FORMATS: dict[str, str] = {
    # Renamed without a version bump (issue 26): the dotted name is the same layout.
    "leelalab.residual_patching/1": "leelalab.residual-patching/1",
    "leelalab.patching.residual/1": "leelalab.residual-patching/1",
    # The search-versus-pattern analyses' results before the scheme.
    "leelalab.analyses.search/1": "leelalab.search-budgets/1",
    "leelalab.analyses.coupling/1": "leelalab.coupling/1",
    # Underscored kinds of the attention-head analyses (issue 26: kebab case).
    "leelalab.head_patching/1": "leelalab.head-patching/1",
    "leelalab.single_entry/1": "leelalab.single-entry/1",
    "leelalab.head_search/1": "leelalab.head-search/1",
    "leelalab.piece_movement/1": "leelalab.piece-movement/1",
}
"""Older spellings of a format name → the current name of the same layout."""


class RecordError(LeelaLabError):
    """A run record or result file is missing, unreadable, truncated or of another kind."""


def format_name(kind: str, version: int = 1) -> str:
    """``leelalab.<kind>/<version>``, checked against the scheme."""
    name = f"leelalab.{kind}/{version}"
    if not _FORMAT.match(name):
        raise ValueError(f"{name!r} does not follow leelalab.<kebab-kind>/<version>")
    return name


def canonical_format(name: object) -> str | None:
    """The current name of a format name read from a file (legacy names mapped), or None."""
    if not isinstance(name, str):
        return None
    name = LEGACY_FORMATS.get(name, name)
    return name if _FORMAT.match(name) else None


def format_kind(name: object) -> str | None:
    """The ``kind`` part of a (possibly legacy) format name."""
    current = canonical_format(name)
    return None if current is None else current.split("/")[0].removeprefix("leelalab.")


def sha256_file(path: str | os.PathLike[str]) -> str:
    import hashlib

    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    """Versions of leelalab, Python and the libraries a result depends on."""
    import chess
    import h5py
    import numpy as np
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


def record_path(output: str | os.PathLike[str]) -> Path:
    """Where the run record of ``output`` lives: ``DIR/run.json`` or ``FILE.run.json``."""
    output = Path(output)
    return output / RUN_RECORD if output.is_dir() else output.with_name(output.name + ".run.json")


def describe_inputs(inputs: Mapping[str, str | os.PathLike[str] | None]) -> dict[str, Any]:
    """``{name: {"path", "sha256"}}`` for each input file (directories: path only)."""
    described: dict[str, Any] = {}
    for name, path in inputs.items():
        if path is None:
            described[name] = None
            continue
        path = Path(path)
        entry: dict[str, Any] = {"path": str(path.resolve())}
        if path.is_file():
            entry["sha256"] = sha256_file(path)
        described[name] = entry
    return described


def foreign_files(directory: Path) -> set[str]:
    """The files (relative paths) recorded as not leelalab's in ``directory``."""
    path = directory / FOREIGN_FILE
    if not path.is_file():
        return set()
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return set()
    return {str(name) for name in names} if isinstance(names, list) else set()


def _relative_files(directory: Path) -> list[str]:
    return sorted(
        path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file()
    )


def output_files(directory: Path) -> list[str]:
    """The files of a run directory that the run wrote (its record and foreign files aside)."""
    skip = {RUN_RECORD, FOREIGN_FILE} | foreign_files(directory)
    return [
        name
        for name in _relative_files(directory)
        if name not in skip and not name.endswith(".tmp")
    ]


def write_run_record(
    output: str | os.PathLike[str],
    settings: Mapping[str, Any],
    /,
    *,
    seconds: float | None = None,
    started: float | None = None,
    inputs: Mapping[str, str | os.PathLike[str] | None] | None = None,
    **fields: Any,
) -> Path:
    """Write the run record of ``output`` (a directory or a file) and return its path.

    The record is flat so that older readers keep working: the settings, then ``format``,
    ``seconds`` (this invocation; from ``started``, a ``time.perf_counter()`` value, when
    ``seconds`` is not given), ``versions``, ``inputs`` (when given), ``outputs`` (for a
    directory) and any other ``fields`` (``output`` and ``settings`` are positional-only, so
    a field may be called ``settings``). A ``format`` field names the results' format and is
    recorded as ``results_format``: the record's own ``format`` is always ``leelalab.run/1``.
    """
    path = record_path(output)
    if seconds is None and started is not None:
        seconds = time.perf_counter() - started
    record: dict[str, Any] = dict(settings)
    record["format"] = RUN_RECORD_FORMAT
    if seconds is not None:
        record["seconds"] = round(float(seconds), 2)
    record["versions"] = versions()
    if inputs is not None:
        record["inputs"] = describe_inputs(inputs)
    if "format" in fields:  # the results' format: the record's own stays leelalab.run/1
        fields["results_format"] = fields.pop("format")
    record.update(fields)
    if path.name == RUN_RECORD:
        record["outputs"] = output_files(path.parent)
    write_text_atomically(path, json.dumps(record, indent=2) + "\n")
    return path


def amend_run_record(
    output: str | os.PathLike[str],
    *,
    add_outputs: Sequence[str] = (),
    refresh_outputs: bool = False,
    **fields: Any,
) -> Path:
    """Add ``fields`` to the run record of ``output`` (written by :func:`write_run_record`).

    For a step that writes more files after its record (or into another step's directory
    by design, as ``puzzles corrupt`` adds ``corruptions.jsonl`` to its dataset): name
    them in ``add_outputs``, or ``refresh_outputs`` to list every file now in the directory
    but foreign ones, so that ``--overwrite`` later removes them too. Everything else in
    the record (``seconds``, ``format``, ``versions``) stays as the run wrote it.
    """
    path = record_path(output)
    record = read_json(path, what="run record") if path.is_file() else {}
    record.update(fields)
    listed = record.get("outputs")
    if refresh_outputs and path.name == RUN_RECORD:
        record["outputs"] = output_files(path.parent)
    elif add_outputs and isinstance(listed, list):
        record["outputs"] = sorted({*listed, *add_outputs})
    write_text_atomically(path, json.dumps(record, indent=2) + "\n")
    return path


def _hinted(message: str, hint: str) -> str:
    return f"{message}; {hint}" if hint else message


def read_json(
    path: str | os.PathLike[str],
    *,
    expect_format: str | None = None,
    hint: str = "",
    what: str = "file",
) -> dict[str, Any]:
    """A JSON object from ``path``, or one :class:`RecordError` line naming the file.

    ``expect_format`` (a current format name): the file's ``format`` must be it (legacy
    names count as their current name); ``hint`` says what to run to make the file.
    """
    path = Path(path)
    if path.is_dir():
        raise RecordError(_hinted(f"{path} is a directory, not a {what}", hint))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecordError(_hinted(f"{path}: no such {what}", hint)) from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise RecordError(_hinted(f"{path}: unreadable {what} ({reason})", hint)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        cut_short = error.pos >= len(text.rstrip()) or error.msg.startswith("Unterminated")
        truncated = " (truncated?)" if cut_short else ""
        raise RecordError(
            _hinted(f"{path}: not valid JSON at line {error.lineno}{truncated}", hint)
        ) from None
    if not isinstance(data, dict):
        raise RecordError(_hinted(f"{path}: not a leelalab {what} (not a JSON object)", hint))
    if expect_format is not None:
        _check_format(path, data.get("format"), expect_format, hint, what)
    return data


def _check_format(path: Path, found: object, expected: str, hint: str, what: str) -> None:
    current = canonical_format(found)
    if current == expected:
        return
    if current is not None and format_kind(current) == format_kind(expected):
        raise RecordError(
            f"{path}: {what} in format {found}, this leelalab reads {expected}; "
            "rerun the command that made it"
        )
    described = f"a {found} file" if current is not None else "not a leelalab file of this kind"
    raise RecordError(_hinted(f"{path}: {described}, expected {expected}", hint))


def _write_value(group: Any, name: str, value: np.ndarray | list[str]) -> None:
    import h5py

    if isinstance(value, list) or (isinstance(value, np.ndarray) and value.dtype.kind in "UO"):
        group.create_dataset(name, data=np.asarray(value, dtype=object), dtype=h5py.string_dtype())
    else:
        group.create_dataset(name, data=value)


def write_h5_atomically(
    path: Path, arrays: Mapping[str, np.ndarray | list[str]], attrs: Mapping[str, Any] = {}
) -> None:
    """Write named arrays (string lists allowed) and JSON-able attributes to ``path``."""
    import h5py  # lazily: help screens and JSON readers do not need it

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
        raise RecordError(f"{path}: no such results file")
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            arrays = {}
            for name, dataset in handle.items():
                if not isinstance(dataset, h5py.Dataset):
                    raise RecordError(
                        f"{path}: holds a group {name!r}, not a flat results file "
                        "(an activation store?)"
                    )
                if h5py.check_string_dtype(dataset.dtype) is not None:
                    arrays[name] = np.array(dataset.asstr()[()], dtype=object)
                else:
                    arrays[name] = dataset[()]
            attrs = dict(handle.attrs)
    except OSError as error:
        raise RecordError(f"{path}: not a readable HDF5 file ({error})") from None
    return arrays, attrs


def read_safetensors(
    path: str | os.PathLike[str], *, framework: str = "pt", hint: str = ""
) -> dict[str, Any]:
    """The tensors of a ``.safetensors`` file (``framework`` "pt": torch, "np": numpy).

    A missing, truncated or foreign file is one :class:`RecordError` line naming it.
    """
    from safetensors import SafetensorError

    if framework == "np":
        from safetensors.numpy import load_file
    else:
        from safetensors.torch import load_file
    path = Path(path)
    try:
        return dict(load_file(str(path)))
    except FileNotFoundError:
        raise RecordError(_hinted(f"{path}: no such file", hint)) from None
    except (SafetensorError, OSError, ValueError) as error:
        detail = " ".join(str(error).split())
        message = f"{path}: not a readable safetensors file (truncated?) ({detail})"
        raise RecordError(_hinted(message, hint)) from None


def read_result(
    path: str | os.PathLike[str], expect_format: str, *, hint: str = ""
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A result file of a known format: ``.json`` → ``(data, {})``; ``.h5`` → arrays, attrs.

    Missing, truncated, unreadable or foreign files (another format, or no format) are one
    :class:`RecordError` line that names the file.
    """
    path = Path(path)
    if path.suffix == ".json":
        return read_json(path, expect_format=expect_format, hint=hint, what="results file"), {}
    try:
        arrays, attrs = read_h5(path)
    except RecordError as error:
        raise RecordError(_hinted(str(error), hint)) from None
    _check_format(path, attrs.get("format"), expect_format, hint, "results file")
    return arrays, attrs


def read_run_record(output: str | os.PathLike[str], *, hint: str = "") -> dict[str, Any]:
    """The run record of ``output`` (directory or file) as a dict; one line if missing."""
    return read_json(record_path(output), hint=hint, what="run record")


def recorded_outputs(directory: Path) -> list[str] | None:
    """The ``outputs`` a directory's run record lists, or None (no record, or an older one)."""
    try:
        record = json.loads((directory / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    outputs = record.get("outputs") if isinstance(record, dict) else None
    if isinstance(outputs, list) and all(isinstance(name, str) for name in outputs):
        return outputs
    return None


LEELALAB_SUFFIXES = (
    ".json",
    ".jsonl",
    ".h5",
    ".png",
    ".pdf",
    ".safetensors",
    ".npy",
    ".sqlite",
    ".onnx",
    ".pb",
    ".pb.gz",
    ".tmp",
)
"""What a run record written before ``outputs`` existed is taken to own (by file ending)."""


def removable_files(directory: Path) -> tuple[list[Path], list[Path]]:
    """What ``--overwrite`` may delete in a leelalab output directory, and what it keeps.

    Deleted: the record and settings, ``chunks/``, temporary files and the files the run
    record lists as the run's ``outputs`` (an older record without that list: files with a
    leelalab output ending). Kept: everything else — a user's notes, say.
    """
    foreign = foreign_files(directory)
    listed = recorded_outputs(directory)
    remove: list[Path] = []
    keep: list[Path] = []
    for name in _relative_files(directory):
        path = directory / name
        ours = (
            name in (RUN_RECORD, SETTINGS_FILE, FOREIGN_FILE)
            or name.startswith("chunks/")
            or name.endswith(".tmp")
            or (listed is not None and name in listed)
            or (listed is None and name.endswith(LEELALAB_SUFFIXES))
        )
        (remove if ours and name not in foreign else keep).append(path)
    return remove, keep


def directory_files(directory: Path) -> list[str]:
    """Every file below ``directory`` (relative paths), for the foreign-file snapshot."""
    return _relative_files(directory)


def note_foreign_files(directory: Path, names: Sequence[str]) -> None:
    """Record files found in ``directory`` that are not leelalab's (kept by overwrite)."""
    if names:
        write_text_atomically(directory / FOREIGN_FILE, json.dumps(sorted(names)) + "\n")
