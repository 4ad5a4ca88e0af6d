"""Residual-stream activation patching over every (layer, square), and its aggregates.

For each clean/corrupted puzzle pair and each body layer ``L`` and square ``s``, the base
run's residual stream after layer ``L`` at ``s`` is replaced by the source run's and the
forward finishes from there. Noising runs clean and patches in corrupted activations (the
look-ahead paper's experiment); denoising does the reverse. Metrics and the sign
convention are those of :mod:`leelalab.patching.pairs`: positive = the clean activation at that
site supports the clean top move.

Cost. The naive sweep runs ``L × 64`` full forwards per puzzle. This one caches both runs
once, packs many (puzzle, square) patches of the same layer into one batch, and restarts
each patched forward at layer ``L + 1`` with :meth:`LeelaNetwork.run_from`; a patch that
does not change the activation (identical base and source vectors, e.g. outside a
convolution's receptive field) has effect exactly 0 and is not run at all.

Results are indexed by **real squares** (``0 = a1 … 63 = h8``), whatever the network's
frame, so boards can be drawn directly.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from leelalab.errors import LeelaLabError
from leelalab.inference.jobs import NetworkJob
from leelalab.models.base import LeelaNetwork
from leelalab.patching.pairs import (
    METRICS,
    Direction,
    PreparedPairs,
    RunMetrics,
    clean_top_moves,
    effects,
    prepare_pairs,
)
from leelalab.patching.settings import ResidualPatchingSettings
from leelalab.puzzles.dataset import SQUARE_GROUPS, DatasetPuzzle
from leelalab.runs.executor import LOCAL, Executor
from leelalab.runs.records import format_name


@dataclass
class PatchingBatchResult:
    """Residual patching of a batch of puzzles.

    ``effects[metric]`` has shape ``(puzzles, layers, 64)`` over real squares;
    ``clean`` / ``corrupted`` hold each run's ``log_odds`` and ``wl`` per puzzle.
    """

    effects: dict[str, np.ndarray]
    clean: dict[str, np.ndarray]
    corrupted: dict[str, np.ndarray]
    forwards: int
    """Patched forwards actually run (rows), for cost accounting."""
    layer_rows: int
    """Σ over patched rows of the layers each row ran through (body-layer cost)."""


def _runs(
    network: LeelaNetwork, pairs: PreparedPairs, hook_names: list[str]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], RunMetrics, RunMetrics, torch.Tensor]:
    with torch.no_grad():
        clean_out, clean_cache = network.run_with_cache(pairs.clean_planes, names_filter=hook_names)
        corrupted_out, corrupted_cache = network.run_with_cache(
            pairs.corrupted_planes, names_filter=hook_names
        )
    top = clean_top_moves(clean_out, pairs.clean_legal)
    clean = RunMetrics.of(clean_out, pairs.clean_legal, top)
    corrupted = RunMetrics.of(corrupted_out, pairs.corrupted_legal, top)
    return clean_cache, corrupted_cache, clean, corrupted, top


def patch_residual_batch(
    network: LeelaNetwork,
    pairs: PreparedPairs,
    layers: Sequence[int],
    *,
    direction: Direction = "noising",
    max_rows: int = 512,
    skip_identical: bool = True,
) -> PatchingBatchResult:
    """Patch every square of every layer in ``layers`` for a batch of prepared pairs."""
    hook_names = [network.residual_hook_name(layer) for layer in layers]
    clean_cache, corrupted_cache, clean, corrupted, top = _runs(network, pairs, hook_names)
    if direction == "noising":
        base_cache, source_cache, base, legal = (
            clean_cache,
            corrupted_cache,
            clean,
            pairs.clean_legal,
        )
    else:
        base_cache, source_cache, base, legal = (
            corrupted_cache,
            clean_cache,
            corrupted,
            pairs.corrupted_legal,
        )
    n = len(pairs)
    out = {metric: np.zeros((n, len(layers), 64), dtype=np.float32) for metric in METRICS}
    forwards = layer_rows = 0
    for layer_position, (layer, name) in enumerate(zip(layers, hook_names, strict=True)):
        base_resid, source_resid = base_cache[name], source_cache[name]
        if skip_identical:
            changed = (base_resid != source_resid).any(dim=-1)  # (n, 64)
        else:
            changed = torch.ones(n, 64, dtype=torch.bool, device=base_resid.device)
        rows, squares = changed.nonzero(as_tuple=True)
        for start in range(0, rows.numel(), max_rows):
            row = rows[start : start + max_rows]
            square = squares[start : start + max_rows]
            patched = base_resid.index_select(0, row).clone()
            index = torch.arange(row.numel(), device=row.device)
            patched[index, square] = source_resid[row, square]
            with torch.no_grad():
                output = network.run_from(layer, patched)
            metrics = RunMetrics.of(output, legal[row], top[row])
            values = effects(base, metrics, row, direction)
            real = pairs.real_of_model[row.cpu().numpy(), square.cpu().numpy()]
            for metric in METRICS:
                out[metric][row.cpu().numpy(), layer_position, real] = (
                    values[metric].float().cpu().numpy()
                )
            forwards += row.numel()
            layer_rows += row.numel() * (network.n_layers - layer - 1)
    return PatchingBatchResult(
        out,
        {"log_odds": clean.log_odds.cpu().numpy(), "wl": clean.wl.cpu().numpy()},
        {"log_odds": corrupted.log_odds.cpu().numpy(), "wl": corrupted.wl.cpu().numpy()},
        forwards,
        layer_rows,
    )


def patch_residual_naive(
    network: LeelaNetwork,
    pairs: PreparedPairs,
    layers: Sequence[int],
    *,
    direction: Direction = "noising",
) -> np.ndarray:
    """The reference sweep: one full forward per (layer, square), all puzzles batched,
    patching through the hook point. Returns ``log_odds`` effects ``(puzzles, layers, 64)``
    over real squares. Slow; for tests and the cost benchmark."""
    from leelalab.patching.primitives import replace_at_squares

    hook_names = [network.residual_hook_name(layer) for layer in layers]
    clean_cache, corrupted_cache, clean, corrupted, top = _runs(network, pairs, hook_names)
    base_planes, _ = pairs.base_and_source(direction)
    source_cache = corrupted_cache if direction == "noising" else clean_cache
    base = clean if direction == "noising" else corrupted
    legal = pairs.base_legal(direction)
    n = len(pairs)
    out = np.zeros((n, len(layers), 64), dtype=np.float32)
    rows = torch.arange(n, device=base_planes.device)
    for layer_position, name in enumerate(hook_names):
        for square in range(64):
            with torch.no_grad():
                output = network.run_with_hooks(
                    base_planes,
                    fwd_hooks=[(name, replace_at_squares(source_cache[name], [square]))],
                )
            values = effects(base, RunMetrics.of(output, legal, top), rows, direction)
            real = pairs.real_of_model[:, square]
            out[np.arange(n), layer_position, real] = values["log_odds"].float().cpu().numpy()
    return out


# ----------------------------------------------------------------------------- aggregates


@dataclass
class GroupCurve:
    """One square group's effect per layer: mean over puzzles ± 2 SEM, and puzzle count."""

    group: str
    mean: np.ndarray
    two_sem: np.ndarray
    count: int


def group_effects(
    effects_by_square: np.ndarray,
    groups: np.ndarray,
    *,
    reduce: str = "max",
    puzzles: np.ndarray | None = None,
) -> dict[str, GroupCurve]:
    """Per square group and layer: mean ± 2 SEM over puzzles of the group's effect.

    Args:
        effects_by_square: ``(puzzles, layers, 64)``.
        groups: ``(puzzles, 64)`` indices into :data:`~leelalab.puzzles.dataset.SQUARE_GROUPS`.
        reduce: ``"max"`` over the group's squares (the paper's) or ``"mean"``.
        puzzles: boolean mask of the puzzles to include (a subset).
    """
    if reduce not in ("max", "mean"):
        raise ValueError("reduce must be 'max' or 'mean'")
    if puzzles is not None:
        effects_by_square, groups = effects_by_square[puzzles], groups[puzzles]
    curves = {}
    for index, name in enumerate(SQUARE_GROUPS):
        member = groups == index  # (puzzles, 64)
        present = member.any(axis=1)
        if not present.any():
            continue
        values = np.where(member[:, None, :], effects_by_square, np.nan)[present]
        with np.errstate(all="ignore"):
            per_puzzle = (
                np.nanmax(values, axis=2) if reduce == "max" else np.nanmean(values, axis=2)
            )
        count = per_puzzle.shape[0]
        std = per_puzzle.std(axis=0, ddof=1) if count > 1 else np.zeros(per_puzzle.shape[1])
        curves[name] = GroupCurve(name, per_puzzle.mean(axis=0), 2 * std / math.sqrt(count), count)
    return curves


def rank_statistics(
    effects_by_square: np.ndarray, groups: np.ndarray, group: str = "target_3"
) -> dict[str, np.ndarray]:
    """How often ``group``'s best square is the most important non-corrupted square.

    Returns per layer: ``top1`` (fraction of puzzles where it is the argmax over all
    non-corrupted squares) and ``mean_rank`` (1 = most important), over the puzzles that
    have the group.
    """
    index = SQUARE_GROUPS.index(group)
    corrupted = groups == SQUARE_GROUPS.index("corrupted")
    member = groups == index
    present = member.any(axis=1)
    values = np.where(corrupted[:, None, :], -np.inf, effects_by_square)[present]
    member = member[present]
    best_in_group = np.where(member[:, None, :], values, -np.inf).max(axis=2)  # (p, layers)
    rank = 1 + (values > best_in_group[:, :, None]).sum(axis=2)
    return {
        "top1": (rank == 1).mean(axis=0),
        "mean_rank": rank.mean(axis=0),
        "count": present.sum(),
    }


def subsets(
    different_targets: np.ndarray, is_mate: np.ndarray, n_moves: np.ndarray
) -> dict[str, np.ndarray]:
    """The puzzle subsets reported by default (boolean masks)."""
    return {
        "all": np.ones_like(is_mate, dtype=bool),
        "different targets": different_targets.astype(bool),
        "same targets": ~different_targets.astype(bool),
        "mate": is_mate.astype(bool),
        "non-mate": ~is_mate.astype(bool),
        "3 moves": n_moves <= 3,
        "5+ moves": n_moves >= 5,
    }


def usable_pairs(
    network: LeelaNetwork, puzzles: Sequence[DatasetPuzzle]
) -> tuple[list[DatasetPuzzle], dict[str, int]]:
    """The puzzles that can be patched (corrupted, same frame), and counts of the rest."""
    from leelalab.patching.pairs import same_frame

    kept, counts = [], {"no corruption": 0, "different canonical frame": 0}
    for puzzle in puzzles:
        if puzzle.corrupted_board is None:
            counts["no corruption"] += 1
        elif not same_frame(network, puzzle):
            counts["different canonical frame"] += 1
        else:
            kept.append(puzzle)
    return kept, counts


def load_pairs(
    network: LeelaNetwork,
    dataset: str | os.PathLike[str],
    limit: int | None = None,
    *,
    ids: Collection[str] | None = None,
) -> tuple[list[DatasetPuzzle], dict[str, int]]:
    """The usable clean/corrupted pairs of a dataset directory, and counts of the rest.

    ``ids`` picks puzzles by id (selected or not: e.g. a stratum) instead of the selection.

    Raises:
        DatasetError: not a dataset; no ``corruptions.jsonl`` (the message says to run
            ``leelalab puzzles corrupt``); no selected puzzle; no usable pair.
    """
    from leelalab.puzzles.dataset import DatasetError, load_dataset

    dataset = Path(dataset)
    if ids is None:
        puzzles = load_dataset(dataset, limit=limit)  # checks that it is a dataset
    else:
        wanted = set(ids)
        puzzles = [p for p in load_dataset(dataset, selected_only=False) if p.id in wanted]
        puzzles = puzzles[:limit] if limit is not None else puzzles
    if not (dataset / "corruptions.jsonl").is_file():
        raise DatasetError(
            f"{dataset}: the dataset has no corruptions (no corruptions.jsonl); run "
            f"`leelalab puzzles corrupt {dataset}` first"
        )
    if not puzzles:
        which = "selected puzzle" if ids is None else "puzzle of the given ids"
        raise DatasetError(f"{dataset}: no {which} to patch")
    kept, left_out = usable_pairs(network, puzzles)
    if not kept:
        reasons = ", ".join(f"{count} {reason}" for reason, count in left_out.items() if count)
        raise DatasetError(
            f"{dataset}: none of the {len(puzzles)} selected puzzles has a usable corruption "
            f"({reasons})"
        )
    return kept, left_out


# ----------------------------------------------------------------------------- runs on disk

RESULTS_FILE = "patching.h5"
RESULTS_FORMAT = format_name("residual-patching")
"""Files written as ``leelalab.residual_patching/1`` or ``leelalab.patching.residual/1``
(the same layout) read as this (:data:`~leelalab.runs.records.LEGACY_FORMATS`)."""
RESULTS_HINT = "make it with `leelalab patch residual`"
SIGN_CONVENTION = (
    "positive = the clean activation at the patched site supports the clean top move; "
    "noising: metric(clean) - metric(patched); denoising: metric(patched) - metric(corrupted); "
    "kl = KL(base || patched)"
)


def _puzzle_arrays(puzzles: Sequence[DatasetPuzzle]) -> dict[str, np.ndarray | list[str]]:
    return {
        "puzzle_ids": [p.id for p in puzzles],
        "square_groups": np.stack([p.square_groups(frame="real") for p in puzzles]).astype(np.int8),
        "move_squares": np.stack([p.move_squares(frame="real") for p in puzzles]).astype(np.int8),
        "different_targets": np.array([p.different_targets for p in puzzles]),
        "is_mate": np.array([p.is_mate for p in puzzles]),
        "n_moves": np.array([p.n_moves for p in puzzles], dtype=np.int16),
    }


def run_residual_patching(
    network: LeelaNetwork,
    dataset: str | os.PathLike[str],
    output: str | os.PathLike[str],
    settings: ResidualPatchingSettings | None = None,
    *,
    ids: Collection[str] | None = None,
    progress: bool = True,
    overwrite: bool = False,
    executor: Executor = LOCAL,
) -> Path:
    """Residual patching of every usable puzzle of a dataset directory; resumable.

    ``settings``: layers, direction, limit, chunk size, rows per forward
    (:class:`~leelalab.patching.settings.ResidualPatchingSettings`; defaults when None).

    ``ids`` patches the puzzles with these ids (selected by the filter or not, e.g. one
    stratum of :mod:`leelalab.analyses.strata`) instead of the selected ones.

    Writes ``output/patching.h5`` (effects ``(puzzles, layers, 64)`` per metric over real
    squares, clean/corrupted metric values, square groups, move squares, puzzle flags),
    ``output/run.json`` and the ``chunks/`` it was merged from. Returns the results path.
    The dataset is checked (:func:`load_pairs`) before ``output`` is created; ``output``
    follows :func:`~leelalab.runs.results.run_in_chunks` (``overwrite`` replaces a run with
    other settings).
    """
    from leelalab.runs.results import ChunkPlan, dataset_provenance, run_in_chunks

    settings = settings or ResidualPatchingSettings()
    direction, limit = settings.direction, settings.limit
    layers = (
        list(range(network.n_layers))
        if settings.layers is None
        else [int(x) for x in settings.layers]
    )
    for layer in layers:
        network._check_layer(layer)
    dataset_path = Path(dataset)
    puzzles, left_out = load_pairs(network, dataset_path, limit, ids=ids)
    recorded = {
        "experiment": "residual_patching",
        "layers": layers,
        "direction": direction,
    } | dataset_provenance(network, dataset_path, limit)
    if ids is not None:
        recorded["ids_sha256"] = hashlib.sha256(" ".join(sorted(set(ids))).encode()).hexdigest()

    job = ResidualPatchingJob(network, layers, direction, settings.max_rows)
    attrs = {
        "format": RESULTS_FORMAT,
        "sign_convention": SIGN_CONVENTION,
        "direction": direction,
        "layers": json.dumps(layers),
        "square_groups": json.dumps(list(SQUARE_GROUPS)),
        "network": str(network.source),
        "squares": "real squares, 0 = a1 ... 63 = h8",
    }
    path = run_in_chunks(
        puzzles,
        output,
        recorded,
        job,
        ChunkPlan(
            results_file=RESULTS_FILE,
            attrs=attrs,
            run_record={
                "results_format": RESULTS_FORMAT,
                "sign_convention": SIGN_CONVENTION,
                "left_out": left_out,
            },
            chunk_size=settings.chunk_size,
            description="residual patching",
        ),
        progress=progress,
        overwrite=overwrite,
        executor=executor,
    )
    return path


class ResidualPatchingJob(NetworkJob):
    """One chunk of :func:`run_residual_patching`: patch every (layer, square) of its pairs."""

    def __init__(
        self, network: LeelaNetwork, layers: list[int], direction: Direction, max_rows: int
    ) -> None:
        super().__init__(network=network)
        self.layers = layers
        self.direction = direction
        self.max_rows = max_rows

    def compute(
        self, state: dict[str, LeelaNetwork], chunk: list[DatasetPuzzle]
    ) -> dict[str, np.ndarray | list[str]]:
        network = state["network"]
        result = patch_residual_batch(
            network,
            prepare_pairs(network, chunk),
            self.layers,
            direction=self.direction,
            max_rows=self.max_rows,
        )
        arrays: dict[str, np.ndarray | list[str]] = {**_puzzle_arrays(chunk), **result.effects}
        for metric in ("log_odds", "wl"):
            arrays[f"clean_{metric}"] = result.clean[metric]
            arrays[f"corrupted_{metric}"] = result.corrupted[metric]
        return arrays

    def describe_chunk(self, number: int, payload: list[DatasetPuzzle]) -> str:
        return f"chunk {number} (puzzles {payload[0].id}…{payload[-1].id})"


@dataclass
class PatchingResults:
    """A merged ``patching.h5``: arrays by name plus the layers and direction."""

    arrays: dict[str, np.ndarray]
    layers: list[int]
    direction: str
    network: str

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PatchingResults:
        """The results of a run directory (or its ``patching.h5``); a missing, truncated or
        foreign file is one :class:`~leelalab.runs.records.RecordError` line."""
        from leelalab.runs.records import read_result

        path = Path(path)
        if path.is_dir():
            path = path / RESULTS_FILE
        arrays, attrs = read_result(path, RESULTS_FORMAT, hint=RESULTS_HINT)
        return cls(
            arrays, json.loads(attrs["layers"]), str(attrs["direction"]), str(attrs["network"])
        )

    def effects(self, metric: str = "log_odds") -> np.ndarray:
        """``(puzzles, layers, 64)`` effects; ``metric`` may also be ``normalized``
        (``log_odds`` divided by the clean − corrupted log-odds gap)."""
        if metric == "normalized":
            gap = self.arrays["clean_log_odds"] - self.arrays["corrupted_log_odds"]
            return self.arrays["log_odds"] / gap[:, None, None]
        if metric not in METRICS:
            raise LeelaLabError(
                f"unknown metric {metric!r}; choose from {METRICS + ('normalized',)}"
            )
        return self.arrays[metric]

    @property
    def groups(self) -> np.ndarray:
        return self.arrays["square_groups"].astype(np.int64)

    def subsets(self) -> dict[str, np.ndarray]:
        return subsets(
            self.arrays["different_targets"], self.arrays["is_mate"], self.arrays["n_moves"]
        )

    def group_table(
        self, metric: str = "log_odds", reduce: str = "max", subset: str = "all"
    ) -> dict[str, GroupCurve]:
        masks = self.subsets()
        if subset not in masks:
            raise LeelaLabError(f"unknown subset {subset!r}; choose from {sorted(masks)}")
        return group_effects(
            self.effects(metric), self.groups, reduce=reduce, puzzles=masks[subset]
        )


__all__ = [
    "GroupCurve",
    "PatchingResults",
    "run_residual_patching",
    "PatchingBatchResult",
    "group_effects",
    "load_pairs",
    "patch_residual_batch",
    "patch_residual_naive",
    "prepare_pairs",
    "rank_statistics",
    "subsets",
    "usable_pairs",
]
