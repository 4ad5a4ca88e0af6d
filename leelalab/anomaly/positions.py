"""Positions of an anomaly-detection task and the task directory that holds them.

A task is a set of positions, each a root FEN plus the moves played from it (so the network
sees the same history planes every time), split three ways:

- ``trusted``: normal positions only; detectors are fitted on them;
- ``pool``: an unlabelled mixture of normal and anomalous positions, which batch detectors
  (QUE, spectral signatures) may use, and on which the supervised skyline probe is trained
  with its labels;
- ``test``: a labelled mixture, held out, on which every detector is evaluated.

Directory layout::

    TASK/positions.jsonl   one JSON object per position (fen, moves, split, anomalous, kind,
                           group, info)
    TASK/task.json         what the task is: kind, network and its sha256, counts, definitions
    TASK/run.json          provenance of the build (inputs, hashes, versions, timing)
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import chess
import numpy as np

from leelalab.anomaly.errors import AnomalyError
from leelalab.lc0.encoding import board_from_fen_and_moves
from leelalab.runs.records import read_json, write_text_atomically

Split = Literal["trusted", "pool", "test"]
SPLITS: tuple[Split, ...] = ("trusted", "pool", "test")
TASK_FORMAT = "leelalab.anomaly-task/1"
TASK_HINT = "build one with `leelalab anomaly task`"


@dataclass(frozen=True)
class TaskPosition:
    """One position of a task.

    Attributes:
        fen: the root FEN (``board.root().fen(en_passant="fen")``).
        moves: UCI moves played from the root; the last position is the one evaluated.
        split: ``trusted``, ``pool`` or ``test``.
        anomalous: the ground-truth label (always False in ``trusted``).
        kind: what the position is (``clean``, ``triggered``, ``shallow``, ``deep``,
            ``natural``, ``chess960``, ``random``, ...).
        group: positions sharing a group (a puzzle, a game) are kept in one split.
        info: anything else (rating, phase, ply, ...).
    """

    fen: str
    moves: tuple[str, ...]
    split: Split
    anomalous: bool
    kind: str
    group: str
    info: dict[str, Any] = field(default_factory=dict)

    def board(self) -> chess.Board:
        return replay(self.fen, self.moves, chess960=bool(self.info.get("chess960")))

    def to_json(self) -> dict[str, Any]:
        return {
            "fen": self.fen,
            "moves": list(self.moves),
            "split": self.split,
            "anomalous": self.anomalous,
            "kind": self.kind,
            "group": self.group,
            "info": self.info,
        }


def replay(fen: str, moves: Sequence[str], *, chess960: bool = False) -> chess.Board:
    """The board after ``moves`` from ``fen``, the moves as history (Chess960 castling as
    king-takes-rook when ``chess960``)."""
    if not chess960:
        return board_from_fen_and_moves(fen, list(moves))
    board = chess.Board(fen, chess960=True)
    for uci in moves:
        board.push_uci(uci)
    return board


def position_of(board: chess.Board, **fields: Any) -> TaskPosition:
    """A :class:`TaskPosition` that replays ``board`` with its move stack as history."""
    root = board.root()
    return TaskPosition(
        fen=root.fen(en_passant="fen", shredder=board.chess960),
        moves=tuple(move.uci() for move in board.move_stack),
        **fields,
    )


def position_key(board: chess.Board) -> str:
    """The current position without clocks (pieces, side to move, castling, en passant):
    the key used to keep a position out of two splits or two data sets.

    Deliberately coarser than :func:`leelalab.engines.position_key` (what an engine is sent,
    history included, the cache's key): two boards that differ only in history or clocks
    are one position here, so neither can leak into the other split.
    """
    return board.fen(en_passant="legal").rsplit(" ", 2)[0]


@dataclass
class Task:
    """A loaded task directory."""

    directory: Path
    positions: list[TaskPosition]
    meta: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.meta["task"])

    def indices(self, split: Split) -> np.ndarray:
        return np.array([i for i, p in enumerate(self.positions) if p.split == split], np.int64)

    def labels(self, indices: np.ndarray | None = None) -> np.ndarray:
        labels = np.array([p.anomalous for p in self.positions], dtype=bool)
        return labels if indices is None else labels[indices]

    def boards(self, indices: Iterable[int] | None = None) -> list[chess.Board]:
        chosen = range(len(self.positions)) if indices is None else indices
        return [self.positions[int(i)].board() for i in chosen]


def write_task(
    directory: str | os.PathLike[str], positions: Sequence[TaskPosition], meta: dict[str, Any]
) -> dict[str, Any]:
    """Write ``positions.jsonl`` and ``task.json`` (counts added) atomically; returns the
    task's description as written (``meta`` with its counts, the format aside)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for position in positions:
        if position.split == "trusted" and position.anomalous:
            raise AnomalyError("a trusted position cannot be anomalous")
    text = "".join(json.dumps(p.to_json(), sort_keys=True) + "\n" for p in positions)
    write_text_atomically(directory / "positions.jsonl", text)
    counts = Counter((p.split, p.kind) for p in positions)
    summary = {
        split: {
            "positions": sum(1 for p in positions if p.split == split),
            "anomalous": sum(1 for p in positions if p.split == split and p.anomalous),
            "kinds": {k: n for (s, k), n in sorted(counts.items()) if s == split},
        }
        for split in SPLITS
    }
    written = {"format": TASK_FORMAT, **meta, "counts": summary}
    write_text_atomically(directory / "task.json", json.dumps(written, indent=2))
    return {**meta, "counts": summary}


def load_task(directory: str | os.PathLike[str]) -> Task:
    """Read a task directory; a missing, foreign or malformed one is one clear error."""
    directory = Path(directory)
    meta_path, positions_path = directory / "task.json", directory / "positions.jsonl"
    if not meta_path.is_file() or not positions_path.is_file():
        raise AnomalyError(
            f"{directory}: not an anomaly task directory (no task.json/positions.jsonl); "
            + TASK_HINT
        )
    meta = read_json(
        meta_path, expect_format=TASK_FORMAT, hint=TASK_HINT, what="anomaly task description"
    )
    positions = []
    with positions_path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                record = json.loads(line)
                positions.append(
                    TaskPosition(
                        fen=record["fen"],
                        moves=tuple(record["moves"]),
                        split=record["split"],
                        anomalous=bool(record["anomalous"]),
                        kind=record["kind"],
                        group=record["group"],
                        info=record.get("info", {}),
                    )
                )
            except (ValueError, KeyError, TypeError):
                raise AnomalyError(f"{positions_path} line {number}: malformed position") from None
            if positions[-1].split not in SPLITS:
                raise AnomalyError(f"{positions_path} line {number}: unknown split")
    counts = meta.get("counts")
    if isinstance(counts, dict):
        expected = sum(int(split.get("positions", 0)) for split in counts.values())
        if expected != len(positions):
            raise AnomalyError(
                f"{positions_path}: {len(positions)} positions where task.json counts "
                f"{expected} (truncated?); rebuild the task"
            )
    return Task(directory, positions, meta)


__all__ = [
    "SPLITS",
    "Split",
    "Task",
    "TaskPosition",
    "load_task",
    "position_key",
    "position_of",
    "replay",
    "write_task",
]
