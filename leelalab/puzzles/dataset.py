"""Filtered puzzle datasets as experiment inputs: clean/corrupted pairs and their squares.

A dataset directory is what ``leelalab puzzles filter`` (``dataset.jsonl``) and
``leelalab puzzles corrupt`` (``corruptions.jsonl``) write. :func:`load_dataset` joins the
two into :class:`DatasetPuzzle` objects, which know

- the *clean* board: the puzzle position (after the opponent's first move), without
  history, exactly as the corruption search compared it;
- the *corrupted* board, if a corruption was found;
- the source and target square of the k-th move of the line (``k = 1`` is the solver's
  first move, ``k = 2`` the opponent's reply, …), in real squares or in the network's frame;
- the square groups of the patching analyses (:meth:`DatasetPuzzle.square_groups`).

Moves are numbered as in the look-ahead paper: the "1st move" is the solver's first move,
the "3rd move" the solver's second move.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import chess
import numpy as np

from leelalab.errors import LeelaLabError
from leelalab.lc0.squares import model_square
from leelalab.puzzles.reader import Puzzle
from leelalab.runs.records import RecordError, read_json

MAX_MOVES = 7
"""Moves of the line whose squares are tracked (k = 1 … 7)."""

SQUARE_GROUPS = (
    "corrupted",
    "target_1",
    "target_3",
    "target_2",
    "target_later_player",
    "target_later_opponent",
    "source",
    "other",
)
"""Square groups in precedence order: a square belongs to the first group that claims it.

- ``corrupted``: the squares the corruption edited;
- ``target_1`` / ``target_2`` / ``target_3``: target squares of the 1st (solver), 2nd
  (opponent) and 3rd (solver) moves;
- ``target_later_player`` / ``target_later_opponent``: targets of moves 5, 7 / 4, 6;
- ``source``: source squares of moves 1 … 7;
- ``other``: everything else.
"""


class DatasetError(LeelaLabError):
    """A dataset directory is missing files or has malformed records."""


@dataclass(frozen=True)
class DatasetPuzzle:
    """One puzzle of a filtered dataset, with its corruption (or ``None``)."""

    puzzle: Puzzle
    record: dict[str, Any]
    corruption: dict[str, Any] | None

    @property
    def id(self) -> str:
        return self.puzzle.id

    @cached_property
    def clean_board(self) -> chess.Board:
        """The puzzle position (solver to move), without history."""
        return self.puzzle.board(plies=1).copy(stack=False)

    @cached_property
    def corrupted_board(self) -> chess.Board | None:
        return None if self.corruption is None else chess.Board(self.corruption["fen"])

    @property
    def n_moves(self) -> int:
        """Moves in the line after the opponent's first move."""
        return len(self.puzzle.moves) - 1

    def move(self, k: int) -> chess.Move | None:
        """The k-th move of the line (1 = the solver's first move), or ``None``."""
        if k < 1:
            raise ValueError("moves are numbered from 1")
        return chess.Move.from_uci(self.puzzle.moves[k]) if k < len(self.puzzle.moves) else None

    def _frame(self, square: int, frame: str, input_format: int) -> int:
        if frame == "real":
            return square
        if frame == "model":
            return model_square(self.clean_board, square, input_format)
        raise ValueError(f"frame must be 'real' or 'model', not {frame!r}")

    def target_square(self, k: int, frame: str = "model", input_format: int = 1) -> int | None:
        """The k-th move's target square, in the network's frame (default) or real."""
        move = self.move(k)
        return None if move is None else self._frame(move.to_square, frame, input_format)

    def source_square(self, k: int, frame: str = "model", input_format: int = 1) -> int | None:
        move = self.move(k)
        return None if move is None else self._frame(move.from_square, frame, input_format)

    def corrupted_squares(self, frame: str = "model", input_format: int = 1) -> list[int]:
        if self.corruption is None:
            return []
        return [
            self._frame(chess.parse_square(name), frame, input_format)
            for name in self.corruption["squares"]
        ]

    def square_groups(self, frame: str = "model", input_format: int = 1) -> np.ndarray:
        """``[64]`` int array: the index into :data:`SQUARE_GROUPS` of every square."""
        claims: dict[str, list[int]] = {name: [] for name in SQUARE_GROUPS}
        claims["corrupted"] = self.corrupted_squares(frame, input_format)
        for k in range(1, MAX_MOVES + 1):
            target = self.target_square(k, frame, input_format)
            source = self.source_square(k, frame, input_format)
            if target is None or source is None:
                break
            if k <= 3:
                claims[f"target_{k}"].append(target)
            else:
                side = "player" if k % 2 == 1 else "opponent"
                claims[f"target_later_{side}"].append(target)
            claims["source"].append(source)
        groups = np.full(64, SQUARE_GROUPS.index("other"), dtype=np.int64)
        for index in reversed(range(len(SQUARE_GROUPS) - 1)):  # highest precedence last
            groups[claims[SQUARE_GROUPS[index]]] = index
        return groups

    def move_squares(self, frame: str = "model", input_format: int = 1) -> np.ndarray:
        """``[MAX_MOVES, 2]`` int array of (source, target) per move, ``-1`` when absent."""
        squares = np.full((MAX_MOVES, 2), -1, dtype=np.int64)
        for k in range(1, MAX_MOVES + 1):
            target = self.target_square(k, frame, input_format)
            if target is None:
                break
            source = self.source_square(k, frame, input_format)
            assert source is not None
            squares[k - 1] = (source, target)
        return squares

    @property
    def different_targets(self) -> bool:
        return bool(self.record.get("filters", {}).get("different_targets", False))

    @property
    def is_mate(self) -> bool:
        return any(theme.startswith("mate") for theme in self.puzzle.themes)


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a dataset JSONL file (objects with an ``id``); a bad line is a
    :class:`DatasetError` naming the file and line."""
    with path.open("rb") as handle:
        for number, data in enumerate(handle, start=1):
            if not data.strip():
                continue
            try:
                record = json.loads(data.decode("utf-8"))
            except UnicodeDecodeError:
                raise DatasetError(f"{path}:{number}: not UTF-8 text") from None
            except json.JSONDecodeError as error:
                raise DatasetError(f"{path}:{number}: not JSON ({error.msg})") from None
            except RecursionError:
                raise DatasetError(f"{path}:{number}: JSON nested too deeply") from None
            if not isinstance(record, dict) or "id" not in record:
                raise DatasetError(f"{path}:{number}: a record must be an object with an id")
            yield record


def dataset_settings(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings of the filter run that made a dataset directory (its ``settings.json``:
    ``input``, ``strong``/``weak`` ``{"source", "sha256", "history"}``, thresholds, …).

    Raises:
        DatasetError: ``directory`` is not a dataset made by ``leelalab puzzles filter``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"{directory}: no such dataset directory")
    path = directory / "settings.json"
    for name in ("dataset.jsonl", "settings.json"):
        if not (directory / name).is_file():
            raise DatasetError(
                f"{directory}: not a filtered dataset (no {name}; run `leelalab puzzles filter` "
                "first)"
            )
    try:
        settings = read_json(path, what="settings file", hint="rerun `leelalab puzzles filter`")
    except RecordError as error:
        raise DatasetError(str(error)) from None
    if not isinstance(settings.get("strong"), dict):
        raise DatasetError(f"{path}: not the settings of a `leelalab puzzles filter` run")
    return settings


def dataset_network(
    directory: str | os.PathLike[str], role: str, *, remedy: str | None = None
) -> str | None:
    """The ``role`` (``"strong"`` or ``"weak"``) network a dataset was filtered with, as the
    name or path :func:`~leelalab.inference.networks.load_network` opens (``None`` when the
    run recorded none). Bundled networks resolve by name, other files by path with their
    sha256 checked (see :func:`~leelalab.inference.networks.resolve_network_reference`).

    Raises:
        DatasetError: ``directory`` is not a dataset made by ``leelalab puzzles filter``.
        WeightsError: the recorded network file is gone or changed.
    """
    from leelalab.inference.networks import resolve_network_reference

    record = dataset_settings(directory).get(role)
    if not isinstance(record, dict):
        return None
    return resolve_network_reference(
        record,
        what=f"{Path(directory) / 'settings.json'}: the {role} network",
        remedy=remedy or f"pass --{role}",
    )


def iter_dataset(
    directory: str | os.PathLike[str],
    *,
    selected_only: bool = True,
    corrupted_only: bool = False,
    limit: int | None = None,
) -> Iterator[DatasetPuzzle]:
    """Stream the puzzles of a filtered dataset directory, in dataset order.

    Only ``corruptions.jsonl`` (one entry per selected puzzle) is held in memory, so
    datasets of millions of puzzles stream in constant memory.

    Args:
        selected_only: only puzzles that passed every filter.
        corrupted_only: only puzzles with a corruption (needs ``corruptions.jsonl``).
        limit: at most this many puzzles.
    """
    directory = Path(directory)
    source = directory / "dataset.jsonl"
    if not source.is_file():
        raise DatasetError(f"{directory}: no dataset.jsonl (run `leelalab puzzles filter` first)")
    corruptions: dict[str, dict[str, Any] | None] = {}
    corruption_file = directory / "corruptions.jsonl"
    if corruption_file.is_file():
        corruptions = {
            entry["id"]: entry.get("corruption") for entry in read_jsonl(corruption_file)
        }
    elif corrupted_only:
        raise DatasetError(
            f"{directory}: no corruptions.jsonl (run `leelalab puzzles corrupt` first)"
        )
    count = 0
    for record in read_jsonl(source):
        if limit is not None and count >= limit:
            return
        if selected_only and not record.get("selected", False):
            continue
        corruption = corruptions.get(record["id"], record.get("corruption"))
        if corrupted_only and corruption is None:
            continue
        try:
            puzzle = Puzzle(
                record["id"],
                record["fen"],
                tuple(record["moves"]),
                record.get("rating"),
                tuple(record.get("themes", ())),
            )
        except KeyError as error:
            raise DatasetError(f"{source}: record {record['id']!r} lacks {error}") from None
        yield DatasetPuzzle(puzzle, record, corruption)
        count += 1


def load_dataset(
    directory: str | os.PathLike[str],
    *,
    selected_only: bool = True,
    corrupted_only: bool = False,
    limit: int | None = None,
) -> list[DatasetPuzzle]:
    """:func:`iter_dataset` as a list."""
    return list(
        iter_dataset(
            directory, selected_only=selected_only, corrupted_only=corrupted_only, limit=limit
        )
    )


def random_edit_pairs(
    puzzles: Iterable[Puzzle], count: int, *, min_moves: int = 3, seed: int = 0
) -> list[DatasetPuzzle]:
    """Puzzles paired with a seeded *random* valid one-piece edit as their "corruption".

    Not a corruption in the paper's sense (nothing checks that the edit breaks the tactic):
    for testing and benchmarking patching machinery, which must work for any pair.
    """
    import random

    from leelalab.puzzles.corruptions import candidate_edits

    rng = random.Random(seed)
    found = []
    for puzzle in puzzles:
        if len(puzzle.moves) - 1 < min_moves:
            continue
        edits = candidate_edits(puzzle.board(plies=1), chess.Move.from_uci(puzzle.moves[1]))
        if not edits:
            continue
        edited, squares, kind = rng.choice(edits)
        corruption = {"fen": edited.fen(en_passant="fen"), "squares": squares, "kind": kind}
        record = {"id": puzzle.id, "selected": True, "filters": {"different_targets": True}}
        found.append(DatasetPuzzle(puzzle, record, corruption))
        if len(found) >= count:
            break
    return found


def write_pairs_dataset(directory: str | os.PathLike[str], pairs: Iterable[DatasetPuzzle]) -> Path:
    """Write puzzles with their corruptions (e.g. from :func:`random_edit_pairs`) as a
    dataset directory that patching and caching read: every puzzle selected, with different
    targets. For tests and benchmarks; real datasets come from ``puzzles filter`` and
    ``puzzles corrupt``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pairs = list(pairs)
    with (directory / "dataset.jsonl").open("w") as handle:
        for item in pairs:
            puzzle = item.puzzle
            record = {
                "id": puzzle.id,
                "fen": puzzle.fen,
                "moves": list(puzzle.moves),
                "rating": puzzle.rating,
                "themes": list(puzzle.themes),
                "selected": True,
                "filters": {"different_targets": True},
            }
            handle.write(json.dumps(record) + "\n")
    with (directory / "corruptions.jsonl").open("w") as handle:
        for item in pairs:
            handle.write(json.dumps({"id": item.id, "corruption": item.corruption}) + "\n")
    return directory
