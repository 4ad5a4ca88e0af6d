"""The paper's patching experiment on two strata (prediction 1 of
:mod:`leelalab.analyses.predictions`).

Every puzzle of the paper's stratum and a seeded random sample of the unfiltered stratum get
a corrupted twin (``corrupt_dataset(..., ids=...)``, the paper's procedure; resumable), and
residual-stream patching then runs over all of them at once (``run_residual_patching(...,
ids=...)``; resumable). Strata are read back from puzzle ids, so one patching run serves
every stratum (the weak-solved one too).

The analysis never writes into the filter run it reads (another command's output, whose
hashes later runs check): the corruptions go into a working dataset inside its own output.

On disk (``OUTPUT/``): ``corrupted/`` (``dataset.jsonl``: the sampled puzzles' records as
the filter wrote them; ``corruptions.jsonl``: the dataset's own corruptions of those
puzzles, extended by the search), ``patching/`` (the residual-patching run:
``patching.h5``, its ``run.json``, and ``strata_sample.json``), ``strata_patching.json``
(:class:`StrataPatchingResults`), ``settings.json`` and ``run.json``.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from leelalab.analyses.settings import StrataPatchingSettings
from leelalab.analyses.strata import strata_ids
from leelalab.errors import LeelaLabError
from leelalab.models.base import LeelaNetwork
from leelalab.runs.experiment import Results
from leelalab.runs.records import RecordError, canonical_format, format_name

if TYPE_CHECKING:
    from leelalab.puzzles.corruptions import CorruptionThresholds

SAMPLE_FILE = "strata_sample.json"
WORKING_DATASET = "corrupted"
PATCHING_RUN = "patching"
PATCHING_FILE = "patching.h5"
PATCHING_HINT = "give an `analyze strata-patching` output (or a `patch residual` run)"


@dataclass
class StrataPatchingResults(Results):
    """What the corruption search and the patching run covered."""

    FORMAT: ClassVar[str] = format_name("strata-patching", 1)
    FILE: ClassVar[str] = "strata_patching.json"
    HINT: ClassVar[str] = "run `leelalab analyze strata-patching`"

    corruptions: dict[str, int] = field(default_factory=dict)
    """``selected`` (puzzles searched), ``corrupted`` (with a corruption), ``computed``."""
    puzzles: int = 0
    patching: str = f"{PATCHING_RUN}/{PATCHING_FILE}"
    """The patching results, relative to the output directory."""
    paper: list[str] = field(default_factory=list)
    unfiltered: list[str] = field(default_factory=list)


def strata_sample(
    directory: str | os.PathLike[str], unfiltered: int, *, seed: int = 0
) -> dict[str, list[str]]:
    """Every puzzle of the paper's stratum and ``unfiltered`` puzzles of the unfiltered one
    (the first ones of a seeded shuffle, so larger samples extend smaller ones)."""
    ids = strata_ids(directory)
    pool = list(ids["unfiltered"])
    random.Random(seed).shuffle(pool)
    return {"paper": list(ids["paper"]), "unfiltered": sorted(pool[:unfiltered])}


def write_working_dataset(source: Path, target: Path, ids: set[str]) -> None:
    """``target/dataset.jsonl``: the records of ``ids`` copied from ``source`` byte for byte
    (dataset order); ``target/corruptions.jsonl``: ``source``'s corruptions of them, unless
    ``target`` already has its own (a resumed run keeps what its search found)."""
    from leelalab.puzzles.dataset import read_jsonl
    from leelalab.runs.records import write_text_atomically

    target.mkdir(parents=True, exist_ok=True)
    lines = []
    with (source / "dataset.jsonl").open("rb") as handle:
        for line in handle:
            if line.strip() and json.loads(line).get("id") in ids:
                lines.append(line.decode("utf-8").rstrip("\n") + "\n")
    write_text_atomically(target / "dataset.jsonl", "".join(lines))
    corruptions = target / "corruptions.jsonl"
    if corruptions.is_file() or not (source / "corruptions.jsonl").is_file():
        return
    kept = [
        json.dumps({"id": entry["id"], "corruption": entry.get("corruption")}) + "\n"
        for entry in read_jsonl(source / "corruptions.jsonl")
        if entry["id"] in ids
    ]
    write_text_atomically(corruptions, "".join(kept))


def run_strata_patching(
    settings: StrataPatchingSettings,
    directory: str | os.PathLike[str],
    output: str | os.PathLike[str],
    strong: LeelaNetwork,
    weak: LeelaNetwork,
    *,
    thresholds: CorruptionThresholds | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> StrataPatchingResults:
    """Corrupt, then patch, the paper stratum and an unfiltered sample of ``directory`` (a
    filter run, read only) into ``output``. ``thresholds``: the corruption search's
    (default: the paper's)."""
    from leelalab.patching.residual import run_residual_patching
    from leelalab.patching.settings import ResidualPatchingSettings
    from leelalab.puzzles.filter import corrupt_dataset
    from leelalab.runs.records import write_text_atomically
    from leelalab.runs.results import RunDirectory, dataset_provenance

    directory, output = Path(directory), Path(output)
    sample = strata_sample(directory, settings.unfiltered, seed=settings.seed)
    union = sorted(set(sample["paper"]) | set(sample["unfiltered"]))
    if not union:
        raise LeelaLabError(f"{directory}: neither stratum has a puzzle")
    record = {
        "experiment": "strata_patching",
        **settings.to_json(),
        **dataset_provenance(strong, directory, None),
        "weak": weak.source,
        "weak_sha256": weak.sha256,
        "thresholds": None if thresholds is None else asdict(thresholds),
    }
    run = RunDirectory(output, record, overwrite=overwrite, what="strata-patching run")
    if run.complete(StrataPatchingResults.FILE):
        return StrataPatchingResults.load(output)
    with run:
        working = output / WORKING_DATASET
        write_working_dataset(directory, working, set(union))
        counts = corrupt_dataset(working, strong, weak, thresholds, ids=union, progress=progress)
        path = run_residual_patching(
            strong,
            working,
            output / PATCHING_RUN,
            ResidualPatchingSettings(chunk_size=settings.chunk_size),
            ids=union,
            progress=progress,
        )
        # Beside the patching results, where readers of them look for the sample.
        write_text_atomically(
            path.parent / SAMPLE_FILE,
            json.dumps(
                {"seed": settings.seed, "unfiltered_sample": settings.unfiltered, **sample},
                indent=2,
            ),
        )
        results = StrataPatchingResults(
            corruptions=counts,
            puzzles=len(union),
            patching=path.relative_to(output).as_posix(),
            paper=sample["paper"],
            unfiltered=sample["unfiltered"],
        )
        results.save(output)
        run.write_record(format=results.FORMAT, inputs={"dataset": directory / "dataset.jsonl"})
    return results


def patching_results_file(path: str | os.PathLike[str]) -> Path:
    """The ``patching.h5`` of an ``analyze strata-patching`` output, of a ``patch
    residual`` run, or the file itself — checked to be residual-patching results.

    Raises:
        RecordError: one line naming the path (missing, not HDF5, another kind of file).
    """
    from leelalab.patching.residual import RESULTS_FORMAT

    path = Path(path)
    if path.is_dir():
        candidates = (path / PATCHING_RUN / PATCHING_FILE, path / PATCHING_FILE)
        found = next((candidate for candidate in candidates if candidate.is_file()), None)
        if found is None:
            raise RecordError(f"{path}: no {PATCHING_FILE} in it; {PATCHING_HINT}")
        path = found
    elif not path.is_file():
        raise RecordError(f"{path}: no such patching results; {PATCHING_HINT}")
    found_format = _h5_format(path)
    if canonical_format(found_format) != canonical_format(RESULTS_FORMAT):
        kind = f"a {found_format} file" if found_format else "not residual-patching results"
        raise RecordError(f"{path}: {kind}; {PATCHING_HINT}")
    return path


def _h5_format(path: Path) -> Any:
    """The ``format`` attribute of an HDF5 file (``None`` without one), read alone: the
    file may hold groups (an activation store) that a results reader cannot take."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            value = handle.attrs.get("format")
    except OSError:
        raise RecordError(f"{path}: not a readable HDF5 file; {PATCHING_HINT}") from None
    return value.decode() if isinstance(value, bytes) else value
