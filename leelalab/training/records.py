"""What a ``leelalab train`` run recorded beside its network (``NET.pb.gz.run.json``), as a
small typed object for its figure.

Light on purpose (no torch): the figure reads the record without the training code. The
record is the run's run record (format ``leelalab.run/1``; records written before run
records had a format have none), so this is not a :class:`~leelalab.runs.experiment.Results`
file of its own: it is read, never written, here.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from leelalab.runs.records import RUN_RECORD_FORMAT, RecordError, canonical_format, read_json

TRAIN_HINT = "give a network that `leelalab train` wrote, or its .run.json"


@dataclasses.dataclass(frozen=True)
class TrainingRun:
    """Per epoch, the held-out agreement and the losses of a training run, and its set-up."""

    history: list[dict[str, Any]]
    """One entry per epoch (``epoch``, ``held_out_top1``, ``held_out_kl``, ``train_policy``,
    ``train_value``, …) as the trainer's report holds it."""
    held_out_positions: int
    config: dict[str, Any]
    """The training settings, ``student`` (the student's shape) included."""
    teacher: str | None
    """The teacher's source as recorded (a path), or None."""


def _record_path(path: Path) -> Path:
    if path.is_dir():
        raise RecordError(f"{path} is a directory; {TRAIN_HINT}")
    if path.name.endswith(".run.json"):
        return path
    if not path.exists():
        from leelalab.inference.networks import resolve_network

        path = resolve_network(path)
    return Path(f"{path}.run.json")


def load_training_run(path: str | os.PathLike[str]) -> TrainingRun:
    """The record of a training run, given it, the network file or a bundled network's name;
    one line naming the file when it is missing, truncated or not a training run's."""
    path = _record_path(Path(path))
    if not path.is_file():
        raise RecordError(
            f"{path}: no such run record (not the run.json of a `leelalab train` run)"
        )
    record = read_json(path, hint=TRAIN_HINT, what="run record")
    found = record.get("format")
    if found is not None and canonical_format(found) != RUN_RECORD_FORMAT:
        raise RecordError(f"{path}: a {found} file, not the run.json of a `leelalab train` run")
    try:
        report = record["report"]
        teacher = record.get("teacher") or {}
        run = TrainingRun(
            history=list(report["history"]),
            held_out_positions=int(report["held_out"]["positions"]),
            config=dict(record["config"]),
            teacher=teacher.get("source") if isinstance(teacher, dict) else None,
        )
    except (KeyError, TypeError, ValueError):
        raise RecordError(f"{path}: not the run.json of a `leelalab train` run") from None
    return run


__all__ = ["TrainingRun", "load_training_run"]
