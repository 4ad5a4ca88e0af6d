"""Attention-head analyses of attention-body networks: which heads move future-move information.

- :func:`patch_heads_batch` — patch each head's output (``attn.hook_z``, all 64 squares) from
  the source run: a layers × heads grid of effects (the paper's Fig. 4).
- :func:`entry_ablation` — zero single post-softmax attention entries (no renormalisation,
  as in the paper): the 1st-target ← 3rd-target entry of one head compared with random other
  entries of the same head and with the paper's "all other entries" ablation (Fig. 5).
- :func:`head_search` — the same single-entry ablation in every head, ranked: finds the
  paper's L12H12 instead of hard-coding it.
- :func:`piece_movement_scores` / :func:`piece_movement_heads` — score every head by how much
  of its attention falls on squares a knight/bishop/rook/queen/king move away from the query,
  and :func:`piece_movement_ablation` — cut those heads' flow out of the 3rd target (Fig. 7).

Every effect follows :mod:`leelalab.patching.pairs`' sign convention (positive = the intervention
hurts the clean top move, i.e. the clean computation at that site supports it). Squares are
in the network's frame. ResNets have no attention: every function raises
:class:`NeedsAttentionError` for them.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import chess
import numpy as np
import torch

from leelalab.errors import LeelaLabError
from leelalab.hooks import HookPoint
from leelalab.lc0 import encoding, policy_map
from leelalab.models.base import LeelaNetwork
from leelalab.patching.pairs import (
    METRICS,
    Direction,
    PreparedPairs,
    RunMetrics,
    clean_top_moves,
    effects,
)
from leelalab.patching.settings import (
    HeadPatchingSettings,
    HeadSearchSettings,
    PieceMovementSettings,
    SingleEntrySettings,
)
from leelalab.puzzles.dataset import DatasetPuzzle
from leelalab.runs.records import format_name

PIECE_TYPES = ("knight", "bishop", "rook", "queen", "king")


class NeedsAttentionError(LeelaLabError):
    """The analysis needs attention heads and the network has none."""


class NoPuzzleError(LeelaLabError):
    """No puzzle qualifies for an analysis."""


def require_attention(network: LeelaNetwork) -> tuple[int, int]:
    """``(layers, heads)`` of an attention-body network; a clear error for a ResNet."""
    from leelalab.models.transformer import TransformerNetwork

    if not isinstance(network, TransformerNetwork):
        name = network.source or type(network).__name__
        raise NeedsAttentionError(
            f"{name} is a {type(network).__name__} without attention heads; head analyses "
            "need an attention-body network (T80/T82, BT2-BT4, ...)"
        )
    return network.n_layers, network.blocks[0].attn.heads


def _z(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def _pattern(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_pattern"


# ------------------------------------------------------------------------ head patching


def patch_heads_batch(
    network: LeelaNetwork,
    pairs: PreparedPairs,
    layers: Sequence[int] | None = None,
    *,
    direction: Direction = "noising",
    max_rows: int = 256,
) -> dict[str, np.ndarray]:
    """Effects ``(puzzles, layers, heads)`` per metric of patching one head's output."""
    n_layers, n_heads = require_attention(network)
    layers = list(range(n_layers)) if layers is None else list(layers)
    base_planes, source_planes = pairs.base_and_source(direction)
    resid_names = [network.residual_hook_name(layer - 1) for layer in layers]
    with torch.no_grad():
        base_out, base_cache = network.run_with_cache(base_planes, names_filter=resid_names)
        _, source_cache = network.run_with_cache(
            source_planes, names_filter=[_z(layer) for layer in layers]
        )
        clean_out = base_out if direction == "noising" else network(pairs.clean_planes)
    top = clean_top_moves(clean_out, pairs.clean_legal)
    legal = pairs.base_legal(direction)
    base = RunMetrics.of(base_out, legal, top)
    n = len(pairs)
    out = {metric: np.zeros((n, len(layers), n_heads), np.float32) for metric in METRICS}
    puzzle_of_row = torch.arange(n).repeat_interleave(n_heads)
    head_of_row = torch.arange(n_heads).repeat(n)
    for position, (layer, resid_name) in enumerate(zip(layers, resid_names, strict=True)):
        source_z = source_cache[_z(layer)]
        for start in range(0, n * n_heads, max_rows):
            rows = puzzle_of_row[start : start + max_rows].to(source_z.device)
            heads = head_of_row[start : start + max_rows].to(source_z.device)

            def replace(
                z: torch.Tensor,
                *,
                hook: HookPoint,
                rows: torch.Tensor = rows,
                heads: torch.Tensor = heads,
                source_z: torch.Tensor = source_z,
            ) -> torch.Tensor:
                patched = z.clone()
                index = torch.arange(z.shape[0], device=z.device)
                patched[index, :, heads] = source_z[rows, :, heads]
                return patched

            resid = base_cache[resid_name].index_select(0, rows)
            with torch.no_grad(), network.hooks([(_z(layer), replace)]):
                output = network.run_from(layer - 1, resid)
            values = effects(base, RunMetrics.of(output, legal[rows], top[rows]), rows, direction)
            for metric in METRICS:
                out[metric][rows.cpu().numpy(), position, heads.cpu().numpy()] = (
                    values[metric].float().cpu().numpy()
                )
    return out


# ------------------------------------------------------------------ attention entries


@dataclass
class CleanBatch:
    """Clean puzzle positions encoded for a network, with their clean top moves."""

    planes: torch.Tensor
    legal: torch.Tensor
    top: torch.Tensor
    metrics: RunMetrics
    targets: np.ndarray
    """``(puzzles, 7, 2)`` model-frame (source, target) of moves 1…7, −1 when absent."""


def prepare_clean(network: LeelaNetwork, puzzles: Sequence[DatasetPuzzle]) -> CleanBatch:
    fmt = int(network.network_format.input)
    boards = [p.clean_board for p in puzzles]
    planes = torch.from_numpy(encoding.encode_boards(boards, fmt, "lc0")).to(network.device)
    transforms = encoding.board_transforms(boards, fmt)
    legal = torch.from_numpy(
        np.stack(
            [policy_map.legal_mask(b, int(t)) for b, t in zip(boards, transforms, strict=True)]
        )
    ).to(network.device)
    with torch.no_grad():
        output = network(planes)
    top = clean_top_moves(output, legal)
    targets = np.stack([p.move_squares(frame="model", input_format=fmt) for p in puzzles])
    return CleanBatch(planes, legal, top, RunMetrics.of(output, legal, top), targets)


def _ablated_log_odds(
    network: LeelaNetwork,
    batch: CleanBatch,
    rows: torch.Tensor,
    masks: dict[int, torch.Tensor],
) -> torch.Tensor:
    """Log-odds reduction when ``masks[layer]`` (``(rows, heads, 64, 64)`` bool, True =
    zero the entry) are applied to the attention patterns of the given layers."""
    hooks = []
    for layer, mask in masks.items():

        def zero(
            pattern: torch.Tensor, *, hook: HookPoint, mask: torch.Tensor = mask
        ) -> torch.Tensor:
            return pattern.masked_fill(mask, 0.0)

        hooks.append((_pattern(layer), zero))
    first = min(masks)
    resid_name = network.residual_hook_name(first - 1)
    with torch.no_grad():
        _, cache = network.run_with_cache(
            batch.planes.index_select(0, rows), names_filter=resid_name
        )
        with network.hooks(hooks):
            output = network.run_from(first - 1, cache[resid_name])
    metrics = RunMetrics.of(output, batch.legal[rows], batch.top[rows])
    return (batch.metrics.log_odds[rows] - metrics.log_odds).float()


def _entry_masks(
    rows: int,
    heads: int,
    head: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    device: torch.device,
) -> torch.Tensor:
    mask = torch.zeros(rows, heads, 64, 64, dtype=torch.bool, device=device)
    mask[torch.arange(rows, device=device), head, query, key] = True
    return mask


def usable_for_entries(
    puzzles: Sequence[DatasetPuzzle], network: LeelaNetwork
) -> list[DatasetPuzzle]:
    """Puzzles whose 1st and 3rd move targets exist and differ (an entry to ablate)."""
    fmt = int(network.network_format.input)
    kept = []
    for puzzle in puzzles:
        first, third = (
            puzzle.target_square(1, input_format=fmt),
            puzzle.target_square(3, input_format=fmt),
        )
        if first is not None and third is not None and first != third:
            kept.append(puzzle)
    return kept


@dataclass
class EntryAblation:
    """Per-puzzle log-odds reductions of one head's single-entry ablations."""

    layer: int
    head: int
    target: np.ndarray
    """``(puzzles,)``: zeroing the entry query = 1st target, key = 3rd target."""
    random_entries: np.ndarray
    """``(puzzles, samples)``: zeroing one random other entry each."""
    all_other: np.ndarray
    """``(puzzles,)``: zeroing all 4095 other entries (the paper's "other" ablation)."""


def entry_ablation(
    network: LeelaNetwork,
    puzzles: Sequence[DatasetPuzzle],
    layer: int,
    head: int,
    *,
    random_samples: int = 8,
    seed: int = 0,
) -> EntryAblation:
    """Zero the 3rd→1st target entry of one head versus other entries, per puzzle."""
    n_layers, n_heads = require_attention(network)
    if not (0 <= layer < n_layers and 0 <= head < n_heads):
        raise LeelaLabError(f"L{layer}H{head} does not exist ({n_layers} layers × {n_heads} heads)")
    puzzles = usable_for_entries(puzzles, network)
    if not puzzles:
        raise LeelaLabError("no puzzle with distinct 1st and 3rd move targets")
    batch = prepare_clean(network, puzzles)
    device = batch.planes.device
    n = len(puzzles)
    rows = torch.arange(n, device=device)
    query = torch.as_tensor(batch.targets[:, 0, 1], device=device)
    key = torch.as_tensor(batch.targets[:, 2, 1], device=device)
    heads = torch.full((n,), head, device=device)
    target_mask = _entry_masks(n, n_heads, heads, query, key, device)
    target = _ablated_log_odds(network, batch, rows, {layer: target_mask})
    other_mask = torch.zeros_like(target_mask)
    other_mask[:, head] = ~target_mask[:, head]
    all_other = _ablated_log_odds(network, batch, rows, {layer: other_mask})
    generator = np.random.default_rng(seed)
    samples = np.zeros((n, random_samples), np.float32)
    for sample in range(random_samples):
        entries = generator.integers(0, 64 * 64 - 1, size=n)
        # skip the target entry: shift the draws at or above it by one
        target_flat = batch.targets[:, 0, 1] * 64 + batch.targets[:, 2, 1]
        entries = entries + (entries >= target_flat)
        mask = _entry_masks(
            n,
            n_heads,
            heads,
            torch.as_tensor(entries // 64, device=device),
            torch.as_tensor(entries % 64, device=device),
            device,
        )
        samples[:, sample] = _ablated_log_odds(network, batch, rows, {layer: mask}).cpu().numpy()
    return EntryAblation(layer, head, target.cpu().numpy(), samples, all_other.cpu().numpy())


def head_search(
    network: LeelaNetwork,
    puzzles: Sequence[DatasetPuzzle],
    layers: Sequence[int] | None = None,
    *,
    max_rows: int = 256,
) -> np.ndarray:
    """Per-puzzle reductions ``(puzzles, layers, heads)`` of zeroing the 3rd→1st target entry
    in each head, one head at a time. Rank heads by the mean over puzzles."""
    n_layers, n_heads = require_attention(network)
    layers = list(range(n_layers)) if layers is None else list(layers)
    puzzles = usable_for_entries(puzzles, network)
    if not puzzles:
        raise LeelaLabError("no puzzle with distinct 1st and 3rd move targets")
    batch = prepare_clean(network, puzzles)
    device = batch.planes.device
    n = len(puzzles)
    out = np.zeros((n, len(layers), n_heads), np.float32)
    puzzle_of_row = torch.arange(n, device=device).repeat_interleave(n_heads)
    head_of_row = torch.arange(n_heads, device=device).repeat(n)
    query_all = torch.as_tensor(batch.targets[:, 0, 1], device=device)
    key_all = torch.as_tensor(batch.targets[:, 2, 1], device=device)
    for position, layer in enumerate(layers):
        for start in range(0, n * n_heads, max_rows):
            rows = puzzle_of_row[start : start + max_rows]
            heads = head_of_row[start : start + max_rows]
            mask = _entry_masks(
                rows.numel(), n_heads, heads, query_all[rows], key_all[rows], device
            )
            values = _ablated_log_odds(network, batch, rows, {layer: mask})
            out[rows.cpu().numpy(), position, heads.cpu().numpy()] = values.cpu().numpy()
    return out


def rank_heads(
    per_puzzle: np.ndarray, layers: Sequence[int], top: int = 10
) -> list[dict[str, float]]:
    """The ``top`` heads by mean effect, with 2 SEM: ``[{"layer", "head", "mean", "two_sem"}]``."""
    mean = per_puzzle.mean(axis=0)
    n = per_puzzle.shape[0]
    sem = per_puzzle.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.zeros_like(mean)
    order = np.argsort(-mean, axis=None)[:top]
    ranked = []
    for flat in order:
        position, head = np.unravel_index(flat, mean.shape)
        ranked.append(
            {
                "layer": int(layers[position]),
                "head": int(head),
                "mean": float(mean[position, head]),
                "two_sem": float(2 * sem[position, head]),
            }
        )
    return ranked


# --------------------------------------------------------------- piece-movement heads


def piece_move_masks() -> np.ndarray:
    """``(5, 64, 64)`` bool: ``[p, q, k]`` = a piece of type ``PIECE_TYPES[p]`` on ``q`` moves
    to ``k`` on an empty board. Symmetric, and the same in every frame (all the
    symmetries lc0 applies map these move sets onto themselves)."""
    kinds = (chess.KNIGHT, chess.BISHOP, chess.ROOK, chess.QUEEN, chess.KING)
    masks = np.zeros((len(kinds), 64, 64), dtype=bool)
    for p, kind in enumerate(kinds):
        for square in chess.SQUARES:
            board = chess.Board(None)
            board.set_piece_at(square, chess.Piece(kind, chess.WHITE))
            for target in board.attacks(square):
                masks[p, square, target] = True
    return masks


def piece_movement_scores(patterns_mean_mass: np.ndarray) -> np.ndarray:
    """Excess attention ``(…, 5)``: mass on each piece type's move set minus uniform chance.

    ``patterns_mean_mass[..., p]`` is the mean (over positions and queries) attention mass
    on the move set of piece type ``p``.
    """
    chance = piece_move_masks().sum(axis=2).mean(axis=1) / 64.0
    return patterns_mean_mass - chance


def attention_move_mass(
    network: LeelaNetwork, boards: Sequence[chess.Board], *, batch_size: int = 64
) -> np.ndarray:
    """``(layers, heads, 5)``: mean over boards and query squares of each head's attention
    mass on the piece type's move set from the query."""
    n_layers, n_heads = require_attention(network)
    fmt = int(network.network_format.input)
    masks = torch.as_tensor(piece_move_masks(), dtype=torch.float32, device=network.device)
    total = torch.zeros(n_layers, n_heads, len(PIECE_TYPES), dtype=torch.float64)
    names = [_pattern(layer) for layer in range(n_layers)]
    for start in range(0, len(boards), batch_size):
        chunk = list(boards[start : start + batch_size])
        planes = torch.from_numpy(encoding.encode_boards(chunk, fmt, "lc0")).to(network.device)
        with torch.no_grad():
            _, cache = network.run_with_cache(planes, names_filter=names)
        for layer, name in enumerate(names):
            total[layer] += move_mass(cache[name], masks).double().cpu() * len(chunk)
    return (total / len(boards)).numpy()


def move_mass(patterns: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
    """``(heads, 5)`` mean over positions and queries of the attention mass that
    ``patterns`` ``(batch, heads, 64, 64)`` put on each piece type's move set."""
    if masks is None:
        masks = torch.as_tensor(piece_move_masks(), dtype=torch.float32, device=patterns.device)
    batch = patterns.shape[0]
    return torch.einsum("bhqk,pqk->hp", patterns.float(), masks) / (64.0 * batch)


@dataclass
class PieceMovementHeads:
    """Heads assigned to the piece type they follow best, with their scores."""

    scores: np.ndarray
    """``(layers, heads, 5)`` excess attention per piece type."""
    threshold: float

    def heads(self, piece: str) -> list[tuple[int, int, float]]:
        """``(layer, head, score)`` of the heads whose best piece type is ``piece`` and whose
        excess attention reaches the threshold, best first."""
        if piece not in PIECE_TYPES:
            raise LeelaLabError(f"unknown piece type {piece!r}; choose from {PIECE_TYPES}")
        p = PIECE_TYPES.index(piece)
        best = self.scores.argmax(axis=2)
        found = [
            (int(layer), int(head), float(self.scores[layer, head, p]))
            for layer, head in zip(*np.nonzero(best == p), strict=True)
            if self.scores[layer, head, p] >= self.threshold
        ]
        return sorted(found, key=lambda item: -item[2])

    def to_json(self) -> dict[str, list[dict[str, float]]]:
        return {
            piece: [{"layer": l, "head": h, "score": s} for l, h, s in self.heads(piece)]
            for piece in PIECE_TYPES
        }


def piece_movement_heads(
    network: LeelaNetwork, boards: Sequence[chess.Board], *, threshold: float = 0.25
) -> PieceMovementHeads:
    """Score every head on ``boards`` and assign it to its best piece type."""
    return PieceMovementHeads(
        piece_movement_scores(attention_move_mass(network, boards)), threshold
    )


@dataclass
class PieceAblation:
    """Per-puzzle reductions of the piece-movement ablation and its two controls."""

    piece_types: list[str]
    main: np.ndarray
    other_piece_heads: np.ndarray
    random_square: np.ndarray


def piece_movement_ablation(
    network: LeelaNetwork,
    puzzles: Sequence[DatasetPuzzle],
    found: PieceMovementHeads,
    *,
    min_moves: int = 5,
    seed: int = 0,
) -> PieceAblation:
    """Cut the flow out of the 3rd move's target in the heads of the moving piece's type.

    For puzzles of at least ``min_moves`` moves whose 3rd move is made by a knight, bishop
    or rook of the solver (read from the board before the 3rd move — the piece that
    actually moves; the paper read the initial board), zero, in every listed head of that
    piece type and in all layers at once, the attention entries whose key is the 3rd target,
    except the entry whose query is the 3rd move's source. Controls: the same entries in the
    other two piece types' heads; the same heads with a random key square.
    """
    _, n_heads = require_attention(network)
    main_types = ("knight", "bishop", "rook")
    chosen, kinds = [], []
    for puzzle in puzzles:
        if puzzle.n_moves < min_moves:
            continue
        board = puzzle.puzzle.board(plies=3)  # before the 3rd move
        move = puzzle.move(3)
        assert move is not None
        piece = board.piece_at(move.from_square)
        name = chess.piece_name(piece.piece_type) if piece is not None else ""
        if piece is not None and piece.color == board.turn and name in main_types:
            chosen.append(puzzle)
            kinds.append(name)
    if not chosen:
        raise NoPuzzleError(
            f"no puzzle of at least {min_moves} moves whose 3rd move is a knight, bishop or "
            "rook move"
        )
    batch = prepare_clean(network, chosen)
    device = batch.planes.device
    generator = np.random.default_rng(seed)
    results = {"main": [], "other": [], "random": []}
    for index, kind in enumerate(kinds):
        rows = torch.tensor([index], device=device)
        source, key = int(batch.targets[index, 2, 0]), int(batch.targets[index, 2, 1])
        others = [t for t in main_types if t != kind]
        random_key = int(generator.integers(64))
        for label, piece_list, key_square in (
            ("main", [kind], key),
            ("other", others, key),
            ("random", [kind], random_key),
        ):
            masks: dict[int, torch.Tensor] = {}
            for piece in piece_list:
                for layer, head, _ in found.heads(piece):
                    mask = masks.setdefault(
                        layer, torch.zeros(1, n_heads, 64, 64, dtype=torch.bool, device=device)
                    )
                    mask[0, head, :, key_square] = True
                    mask[0, head, source, key_square] = False
            if not masks:
                results[label].append(0.0)
                continue
            results[label].append(float(_ablated_log_odds(network, batch, rows, masks)[0]))
    return PieceAblation(
        kinds,
        np.array(results["main"], np.float32),
        np.array(results["other"], np.float32),
        np.array(results["random"], np.float32),
    )


# ----------------------------------------------------------------------- percentiles


def _binomial_cdf(k: np.ndarray, n: int, p: float) -> np.ndarray:
    ks = np.arange(n + 1)
    log_pmf = (
        np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in ks])
        + ks * math.log(max(p, 1e-300))
        + (n - ks) * math.log(max(1 - p, 1e-300))
    )
    cdf = np.cumsum(np.exp(log_pmf))
    return cdf[np.clip(k, 0, n)]


def percentile_curve(
    values: np.ndarray, percentiles: Sequence[float], confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentiles of ``values`` with distribution-free confidence intervals.

    The interval for the q-quantile uses order statistics ``X(l) … X(u)`` with ``l, u`` from
    the Binomial(n, q) distribution. Returns ``(value, lower, upper)`` arrays.
    """
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = ordered.size
    if n == 0:
        raise LeelaLabError("no values for a percentile curve")
    alpha = (1 - confidence) / 2
    centre, lower, upper = [], [], []
    ks = np.arange(n + 1)
    for percentile in percentiles:
        q = percentile / 100.0
        centre.append(np.percentile(ordered, percentile))
        cdf = _binomial_cdf(ks, n, q)
        low = int(np.searchsorted(cdf, alpha))  # order statistic index (0-based)
        high = int(np.searchsorted(cdf, 1 - alpha))
        lower.append(ordered[max(min(low - 1, n - 1), 0)])
        upper.append(ordered[min(high, n - 1)])
    return np.array(centre), np.array(lower), np.array(upper)


# ------------------------------------------------------------------------- runs on disk

HEAD_PATCHING_FILE = "head_patching.h5"
SINGLE_ENTRY_FILE = "single_entry.h5"
HEAD_SEARCH_FILE = "head_search.h5"
HEAD_PATCHING_FORMAT = format_name("head-patching")
SINGLE_ENTRY_FORMAT = format_name("single-entry")
HEAD_SEARCH_FORMAT = format_name("head-search")
PIECE_MOVEMENT_FORMAT = format_name("piece-movement")
PIECE_MOVEMENT_FILE = "piece_movement.h5"


HEAD_FILES = {
    HEAD_PATCHING_FORMAT: (HEAD_PATCHING_FILE, "patch heads"),
    SINGLE_ENTRY_FORMAT: (SINGLE_ENTRY_FILE, "heads single-entry"),
    HEAD_SEARCH_FORMAT: (HEAD_SEARCH_FILE, "heads search"),
    PIECE_MOVEMENT_FORMAT: (PIECE_MOVEMENT_FILE, "heads piece-movement"),
}
"""Each head experiment's results format → the file it merges into, the command making it."""


@dataclass
class HeadResults:
    """The merged results of a head experiment: arrays (axis 0 = puzzles) and attributes.

    :meth:`load` takes a run directory or its results file and the expected format; a
    missing, truncated or foreign file is one :class:`~leelalab.runs.records.RecordError`
    line naming it.
    """

    format: str
    arrays: dict[str, np.ndarray]
    attrs: dict[str, object]

    @classmethod
    def load(cls, path: str | os.PathLike[str], format: str) -> HeadResults:
        from leelalab.runs.records import read_result

        name, command = HEAD_FILES[format]
        path = Path(path)
        if path.is_dir():
            path = path / name
        arrays, attrs = read_result(path, format, hint=f"make it with `leelalab {command}`")
        return cls(format, arrays, attrs)

    @property
    def layers(self) -> list[int]:
        return [int(x) for x in json.loads(str(self.attrs["layers"]))]


def _flags(puzzles: Sequence[DatasetPuzzle]) -> dict[str, np.ndarray | list[str]]:
    return {
        "puzzle_ids": [p.id for p in puzzles],
        "different_targets": np.array([p.different_targets for p in puzzles]),
        "is_mate": np.array([p.is_mate for p in puzzles]),
        "n_moves": np.array([p.n_moves for p in puzzles], dtype=np.int16),
    }


def _chunk_seed(seed: int, chunk: Sequence[DatasetPuzzle]) -> int:
    # Random draws depend on the chunk's puzzles, not on how far an earlier run got.
    return (seed * 1_000_003 + zlib.crc32(chunk[0].id.encode())) % 2**32


def _dataset_run(
    network: LeelaNetwork,
    dataset: str | os.PathLike[str],
    output: str | os.PathLike[str],
    puzzles: Sequence[DatasetPuzzle],
    recorded: dict[str, object],
    chunks: _Chunks,
) -> Path:
    """:func:`~leelalab.runs.results.run_in_chunks` over ``puzzles`` with the settings every
    head experiment records (its own ``recorded`` and the dataset's provenance)."""
    from leelalab.runs.results import ChunkPlan, dataset_provenance, run_in_chunks

    return run_in_chunks(
        puzzles,
        output,
        recorded | dataset_provenance(network, Path(dataset), chunks.limit),
        chunks.compute,
        ChunkPlan(
            results_file=chunks.results_file,
            attrs=chunks.attrs,
            run_record=chunks.run_record,
            chunk_size=chunks.chunk_size,
            description=chunks.description,
            before=chunks.before,
        ),
        **chunks.options,
    )


@dataclass
class _Chunks:
    """How a head experiment's chunks are computed and written (``limit`` and
    ``chunk_size`` from its settings; ``progress``/``overwrite`` from the call)."""

    compute: Callable[[list[DatasetPuzzle]], dict[str, np.ndarray | list[str]]]
    results_file: str
    attrs: dict[str, object]
    description: str
    limit: int | None
    chunk_size: int
    options: dict[str, bool]
    run_record: dict[str, object] = field(default_factory=dict)
    before: Callable[[Path], None] | None = None


def _selected_for_entries(
    network: LeelaNetwork, dataset: Path, limit: int | None
) -> list[DatasetPuzzle]:
    from leelalab.puzzles.dataset import load_dataset

    puzzles = usable_for_entries(load_dataset(dataset, limit=limit), network)
    if not puzzles:
        raise LeelaLabError(f"{dataset}: no selected puzzle with distinct 1st and 3rd targets")
    return puzzles


ENTRY_CONVENTION = "log-odds reduction of the clean top move (clean - ablated)"


def run_head_patching(
    network: LeelaNetwork,
    dataset: str | os.PathLike[str],
    output: str | os.PathLike[str],
    settings: HeadPatchingSettings | None = None,
    *,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Patch every (layer, head) output from the source run for every usable puzzle.

    The dataset is checked (:func:`~leelalab.patching.residual.load_pairs`) before
    ``output`` is created; ``overwrite`` replaces a run with other settings."""
    from leelalab.patching.pairs import prepare_pairs
    from leelalab.patching.residual import SIGN_CONVENTION, load_pairs

    settings = settings or HeadPatchingSettings()
    direction = settings.direction
    n_layers, n_heads = require_attention(network)
    puzzles, left_out = load_pairs(network, Path(dataset), settings.limit)

    def compute(chunk: list[DatasetPuzzle]) -> dict[str, np.ndarray | list[str]]:
        values = patch_heads_batch(network, prepare_pairs(network, chunk), direction=direction)
        return {**_flags(chunk), **values}

    attrs: dict[str, object] = {
        "format": HEAD_PATCHING_FORMAT,
        "sign_convention": SIGN_CONVENTION,
        "direction": direction,
        "layers": json.dumps(list(range(n_layers))),
        "network": str(network.source),
    }
    chunks = _Chunks(
        compute,
        HEAD_PATCHING_FILE,
        attrs,
        "head patching",
        settings.limit,
        settings.chunk_size,
        {"progress": progress, "overwrite": overwrite},
        run_record={"left_out": left_out, "heads": n_heads},
    )
    recorded = {"experiment": "head_patching", "direction": direction}
    return _dataset_run(network, dataset, output, puzzles, recorded, chunks)


def run_single_entry(
    network: LeelaNetwork,
    dataset: str | os.PathLike[str],
    output: str | os.PathLike[str],
    settings: SingleEntrySettings,
    *,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """:func:`entry_ablation` of one head over a dataset's selected puzzles (no corruption
    needed), resumably; ``overwrite`` replaces a run with other settings."""
    require_attention(network)
    layer, head, seed = settings.layer, settings.head, settings.seed
    puzzles = _selected_for_entries(network, Path(dataset), settings.limit)

    def compute(chunk: list[DatasetPuzzle]) -> dict[str, np.ndarray | list[str]]:
        result = entry_ablation(
            network,
            chunk,
            layer,
            head,
            random_samples=settings.random_samples,
            seed=_chunk_seed(seed, chunk),
        )
        return {
            **_flags(chunk),
            "target": result.target,
            "random_entries": result.random_entries,
            "all_other": result.all_other,
        }

    recorded: dict[str, object] = {
        "experiment": "single_entry",
        "layer": layer,
        "head": head,
        "random_samples": settings.random_samples,
        "seed": seed,
    }
    attrs: dict[str, object] = {
        "format": SINGLE_ENTRY_FORMAT,
        "layer": layer,
        "head": head,
        "sign_convention": ENTRY_CONVENTION,
    }
    chunks = _Chunks(
        compute,
        SINGLE_ENTRY_FILE,
        attrs,
        f"L{layer}H{head} entry ablation",
        settings.limit,
        settings.chunk_size,
        {"progress": progress, "overwrite": overwrite},
    )
    return _dataset_run(network, dataset, output, puzzles, recorded, chunks)


RANKING_FILE = "ranking.json"


def run_head_search(
    network: LeelaNetwork,
    dataset: str | os.PathLike[str],
    output: str | os.PathLike[str],
    settings: HeadSearchSettings | None = None,
    *,
    progress: bool = True,
    overwrite: bool = False,
) -> tuple[Path, list[dict[str, float]]]:
    """:func:`head_search` over a dataset; writes ``head_search.h5`` and ``ranking.json``
    (``overwrite`` replaces a run with other settings)."""
    from leelalab.runs.records import read_run_record, write_run_record
    from leelalab.runs.results import write_text_atomically

    settings = settings or HeadSearchSettings()
    n_layers, _ = require_attention(network)
    puzzles = _selected_for_entries(network, Path(dataset), settings.limit)

    def compute(chunk: list[DatasetPuzzle]) -> dict[str, np.ndarray | list[str]]:
        return {**_flags(chunk), "effects": head_search(network, chunk)}

    attrs: dict[str, object] = {
        "format": HEAD_SEARCH_FORMAT,
        "layers": json.dumps(list(range(n_layers))),
        "sign_convention": ENTRY_CONVENTION,
    }
    chunks = _Chunks(
        compute,
        HEAD_SEARCH_FILE,
        attrs,
        "head search",
        settings.limit,
        settings.chunk_size,
        {"progress": progress, "overwrite": overwrite},
    )
    recorded = {"experiment": "head_search"}
    path = _dataset_run(network, dataset, output, puzzles, recorded, chunks)
    effects = HeadResults.load(path, HEAD_SEARCH_FORMAT).arrays["effects"]
    ranking = rank_heads(effects, list(range(n_layers)), top=settings.top)
    ranking_path = Path(output) / RANKING_FILE
    if not ranking_path.is_file() or json.loads(ranking_path.read_text()) != ranking:
        write_text_atomically(ranking_path, json.dumps(ranking, indent=2))
        # Listed among the run's outputs, so that --overwrite removes it and nothing else.
        record = read_run_record(output)
        seconds = record.pop("seconds", None)
        for key in ("format", "versions", "outputs"):
            record.pop(key, None)
        write_run_record(output, record, seconds=seconds)
    return path, ranking


def _piece_movement_compute(
    network: LeelaNetwork, found: PieceMovementHeads, min_moves: int, seed: int
) -> Callable[[list[DatasetPuzzle]], dict[str, np.ndarray | list[str]]]:
    def compute(chunk: list[DatasetPuzzle]) -> dict[str, np.ndarray | list[str]]:
        try:
            result = piece_movement_ablation(
                network, chunk, found, min_moves=min_moves, seed=_chunk_seed(seed, chunk)
            )
        except NoPuzzleError:
            return {
                "piece_types": [],
                "main": np.zeros(0, np.float32),
                "other_piece_heads": np.zeros(0, np.float32),
                "random_square": np.zeros(0, np.float32),
            }
        return {
            "piece_types": list(result.piece_types),
            "main": result.main,
            "other_piece_heads": result.other_piece_heads,
            "random_square": result.random_square,
        }

    return compute


def run_piece_movement(
    network: LeelaNetwork,
    dataset: str | os.PathLike[str],
    output: str | os.PathLike[str],
    settings: PieceMovementSettings | None = None,
    *,
    progress: bool = True,
    overwrite: bool = False,
) -> tuple[Path, PieceMovementHeads]:
    """Detect piece-movement heads on the dataset's puzzle positions (all puzzles, first
    ``scoring_positions``), write ``heads.json``, then ablate them on the selected puzzles
    (``overwrite`` replaces a run with other settings)."""
    from leelalab.puzzles.dataset import load_dataset
    from leelalab.runs.results import ChunkedRun, dataset_provenance, write_text_atomically

    settings = settings or PieceMovementSettings()
    threshold, limit = settings.threshold, settings.limit
    require_attention(network)
    dataset = Path(dataset)
    boards = [
        p.clean_board
        for p in load_dataset(dataset, selected_only=False, limit=settings.scoring_positions)
    ]
    recorded: dict[str, object] = {
        "experiment": "piece_movement",
        "threshold": threshold,
        "scoring_positions": settings.scoring_positions,
        "min_moves": settings.min_moves,
        "seed": settings.seed,
    }
    # Refuses a run with other settings before any work (nothing is created yet).
    provenance = dataset_provenance(network, dataset, limit)
    ChunkedRun(
        output, recorded | provenance | {"chunk_size": settings.chunk_size}, overwrite=overwrite
    )
    puzzles = [p for p in load_dataset(dataset, limit=limit) if p.n_moves >= settings.min_moves]
    if not boards:
        raise LeelaLabError(f"{dataset}: no puzzle to score the heads on")
    if not puzzles:
        raise LeelaLabError(
            f"{dataset}: no selected puzzle with at least {settings.min_moves} moves"
        )
    found = piece_movement_heads(network, boards, threshold=threshold)

    def write_heads(directory: Path) -> None:
        write_text_atomically(
            directory / "heads.json",
            json.dumps({"threshold": threshold, "heads": found.to_json()}, indent=2),
        )

    attrs: dict[str, object] = {
        "format": PIECE_MOVEMENT_FORMAT,
        "sign_convention": ENTRY_CONVENTION,
        "scores": json.dumps(found.scores.tolist()),
    }
    chunks = _Chunks(
        _piece_movement_compute(network, found, settings.min_moves, settings.seed),
        PIECE_MOVEMENT_FILE,
        attrs,
        "piece-movement ablation",
        limit,
        settings.chunk_size,
        {"progress": progress, "overwrite": overwrite},
        before=write_heads,
    )
    return _dataset_run(network, dataset, output, puzzles, recorded, chunks), found
