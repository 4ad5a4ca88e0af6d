"""Layer dynamics of the policy on puzzles: where the solution appears and whether it is lost.

For every puzzle of a filter run, at the puzzle position (after the opponent's move, with the
history lc0 would see: the same boards the filter evaluated), the logit lens — and a tuned
lens if given — reads the policy and W/D/L after every layer (:mod:`leelalab.probing.lens`).
Per puzzle and layer we keep the rank and probability of the solution's 1st move among the
legal moves, the lens's top move, W/D/L, and ``KL(final ‖ lens)`` over the legal moves.

Derived per puzzle (see :func:`emergence`):

- *layer of emergence*: the first layer at which the solution is the lens's top-1 move;
- *found then lost*: top-1 at some layer and not top-1 at a later layer (even if regained);
- *forgotten* (Sandmann et al.'s "forgotten puzzles"): top-1 at some layer but not at the
  last one, i.e. the network's own output misses a solution an earlier layer had; and its
  strictest form, *overridden at the last layer*: top-1 after the last-but-one layer, not
  after the last.

Groups: the strata of :mod:`leelalab.analyses.strata` (``paper``, ``unfiltered``,
``weak-solved``), plus ``all`` (every puzzle), ``structural`` (not mate-in-1, at least 3
plies: the filter's structural conditions) and ``strong-missed`` (structural, and the network's
top move is not the solution: the only group where "forgotten" can happen, since the other
strata require the final top move to be right). Every group comes from one network: the strata
from the filter's strong network and ``strong-missed`` from the network under study, so the
two must be the same network (:func:`check_dataset_network`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chess
import numpy as np
import torch

from leelalab.analyses.inside_settings import LensRunSettings
from leelalab.analyses.run_records import save_summary
from leelalab.analyses.strata import STRATA, strata_of
from leelalab.errors import LeelaLabError
from leelalab.models.base import LeelaNetwork
from leelalab.models.batch import PositionBatch
from leelalab.probing.lens import (
    TunedLens,
    lens_layers,
    lens_outputs,
    load_tuned_lens,
    policy_kl,
)
from leelalab.puzzles.dataset import dataset_settings
from leelalab.runs.experiment import Results
from leelalab.runs.records import format_name
from leelalab.runs.results import ChunkPlan, read_h5, run_in_chunks, sha256_file
from leelalab.stats import mean_ci, proportion_ci

RESULTS_FILE = "lens.h5"
GROUPS = ("all", "structural", *STRATA, "strong-missed")
LENS_KINDS = ("logit", "tuned")


@dataclass
class LensSummary(Results):
    """``summary.json`` of a lens run: group-wise numbers per lens kind (see
    :func:`summarize_lens`). ``logit`` / ``tuned`` map ``groups`` and
    ``unfiltered_by_line_length`` to ``Estimate.to_json`` dicts; ``tuned`` is None without
    a tuned lens."""

    FORMAT = format_name("lens")
    FILE = "summary.json"
    HINT = "a `leelalab lens run` directory"

    layers: list[int]
    n_puzzles: int
    logit: dict[str, Any] | None = None
    tuned: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        # A lens kind that was not run is absent, as in files written before the format.
        return {key: value for key, value in super().to_json().items() if value is not None}

    def kinds(self) -> dict[str, dict[str, Any]]:
        """``{"logit": …, "tuned": …}`` for the lens kinds of this run."""
        return {kind: getattr(self, kind) for kind in LENS_KINDS if getattr(self, kind)}


def _records(directory: Path, limit: int | None) -> list[dict[str, Any]]:
    source = directory / "dataset.jsonl"
    if not source.is_file():
        raise LeelaLabError(f"{directory}: no dataset.jsonl (run `leelalab puzzles filter` first)")
    records = []
    with source.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise LeelaLabError(f"{source}:{number}: not JSON ({error.msg})") from None
            if len(record.get("moves", [])) < 2:
                continue
            records.append(record)
            if limit is not None and len(records) >= limit:
                break
    if not records:
        raise LeelaLabError(f"{source}: no puzzle with a solution move")
    return records


def puzzle_position(record: dict[str, Any]) -> chess.Board:
    """The puzzle position with its history (root = the puzzle FEN), as the filter saw it."""
    board = chess.Board(record["fen"])
    board.push_uci(record["moves"][0])
    return board


def check_dataset_network(directory: Path, network: LeelaNetwork) -> None:
    """One clear error when the filter run was made with another strong network.

    The strata (``paper``, ``unfiltered``, ``weak-solved``) were decided by the filter's strong
    network and ``strong-missed`` by the network under study: with two networks the groups
    would be silently mixed. Networks without a sha256 (built in memory) are not checked.
    """
    strong = dataset_settings(directory)["strong"]
    expected = strong.get("sha256")
    if expected and network.sha256 and expected != network.sha256:
        raise LeelaLabError(
            f"{directory} was filtered with the strong network {strong.get('source')} (sha256 "
            f"{expected[:12]}…), not {network.source} (sha256 {network.sha256[:12]}…): its "
            "groups would mix the two networks; pass that network, or filter the puzzles "
            "with this one"
        )


def _group_flags(record: dict[str, Any], final_top: str) -> dict[str, bool]:
    strata = strata_of(record)
    flags = record.get("filters", {})
    structural = bool(flags.get("not_mate_in_1")) and bool(flags.get("pv_length"))
    return {
        "all": True,
        "structural": structural,
        **{name: name in strata for name in STRATA},
        "strong-missed": structural and final_top != record["moves"][1],
    }


def lens_chunk(
    network: LeelaNetwork,
    records: Sequence[dict[str, Any]],
    tuned: TunedLens | None = None,
) -> dict[str, Any]:
    """The per-puzzle lens arrays of one chunk (axis 0 = puzzles, axis 1 = layers)."""
    positions = PositionBatch.encode(
        [puzzle_position(r) for r in records], int(network.network_format.input)
    )
    planes = torch.from_numpy(positions.planes)
    masks = positions.mask(network.device)
    solution = torch.tensor(
        [positions.move_index(row, r["moves"][1]) for row, r in enumerate(records)],
        device=network.device,
    )
    arrays: dict[str, Any] = {}
    kinds = [("logit", None)] + ([("tuned", tuned)] if tuned is not None else [])
    final_top: list[str] = []
    for kind, lens in kinds:
        out = lens_outputs(network, planes, tuned=lens)
        masked = out.policy_logits.masked_fill(~masks, float("-inf"))
        probs = torch.softmax(masked, dim=-1)  # (layers, batch, 1858)
        batch = torch.arange(len(positions), device=network.device)
        solution_prob = probs[:, batch, solution]  # (layers, batch)
        rank = (probs > solution_prob[..., None]).sum(-1)
        top = masked.argmax(-1)
        kl = torch.stack(
            [
                policy_kl(out.final.policy_logits, out.policy_logits[i], masks)
                for i in range(len(out.layers))
            ]
        )
        top_moves = [
            [positions.move_at(b, index).uci() for index in top[:, b].tolist()]
            for b in range(len(positions))
        ]
        arrays[f"{kind}_rank"] = rank.T.cpu().numpy().astype(np.int16)
        arrays[f"{kind}_prob"] = solution_prob.T.cpu().numpy().astype(np.float32)
        arrays[f"{kind}_kl"] = kl.T.cpu().numpy().astype(np.float32)
        arrays[f"{kind}_wdl"] = out.wdl.permute(1, 0, 2).cpu().numpy().astype(np.float32)
        arrays[f"{kind}_top"] = np.array([json.dumps(moves) for moves in top_moves], dtype=object)
        if kind == "logit":
            final = out.final.policy_logits.masked_fill(~masks, float("-inf")).argmax(-1)
            final_top = [
                positions.move_at(b, index).uci() for b, index in enumerate(final.tolist())
            ]
    groups = [_group_flags(r, t) for r, t in zip(records, final_top, strict=True)]
    arrays.update(
        {
            "puzzle_ids": [r["id"] for r in records],
            "solution": [r["moves"][1] for r in records],
            "final_top": final_top,
            "n_moves": np.array([len(r["moves"]) - 1 for r in records], dtype=np.int16),
            "rating": np.array([r.get("rating") or 0 for r in records], dtype=np.int32),
            "is_mate": np.array(
                [any(t.startswith("mate") for t in r.get("themes", ())) for r in records]
            ),
        }
    )
    for name in GROUPS:
        arrays[f"group_{name}"] = np.array([g[name] for g in groups], dtype=bool)
    return arrays


def run_lens_analysis(
    network: LeelaNetwork,
    directory: str | os.PathLike[str],
    output: str | os.PathLike[str],
    settings: LensRunSettings | None = None,
    *,
    tuned_lens: str | os.PathLike[str] | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Lens arrays of every puzzle of a filter run, resumable in fixed chunks.

    Writes ``output/lens.h5`` (see :func:`lens_chunk`), ``output/summary.json``
    (:class:`LensSummary`) and ``output/run.json``. Every input is checked before the output
    is touched (``overwrite`` removes only what an earlier run wrote).
    """
    settings = settings or LensRunSettings()
    directory, output = Path(directory), Path(output)
    records = _records(directory, settings.limit)
    check_dataset_network(directory, network)
    tuned, tuned_sha = None, None
    if tuned_lens is not None:
        tuned, _ = load_tuned_lens(tuned_lens, network)
        tuned_sha = sha256_file(Path(tuned_lens) / "lens.safetensors")
    run_settings = {
        "analysis": "lens",
        "dataset": str(directory.resolve()),
        "dataset_sha256": sha256_file(directory / "dataset.jsonl"),
        "network": network.source,
        "network_sha256": network.sha256,
        "tuned_lens": str(Path(tuned_lens).resolve()) if tuned_lens else None,
        "tuned_lens_sha256": tuned_sha,
        "limit": settings.limit,
        "layers": lens_layers(network),
        "history": "lc0",
    }
    path = run_in_chunks(
        records,
        output,
        run_settings,
        lambda chunk: lens_chunk(network, chunk, tuned),
        ChunkPlan(
            results_file=RESULTS_FILE,
            attrs={"layers": lens_layers(network), "network": network.source or ""},
            chunk_size=settings.chunk_size,
            description="lens",
        ),
        progress=progress,
        overwrite=overwrite,
    )
    save_summary(output, LensSummary.from_json(summarize_lens(path)))
    return path


def emergence(rank: np.ndarray) -> dict[str, np.ndarray]:
    """Per puzzle, from ``rank[puzzle, layer]`` (0 = the solution is the lens's top move):

    ``layer_index`` of emergence (−1 when never top-1), ``found`` (top-1 at some layer),
    ``found_then_lost`` (top-1 at some layer, not at a later one), ``forgotten`` (top-1 at
    some layer, not at the last), ``overridden_at_last_layer`` (top-1 at the last-but-one
    layer, not at the last: the strictest form of "forgotten").
    """
    top = np.asarray(rank) == 0
    found = top.any(axis=1)
    first = np.where(found, top.argmax(axis=1), -1)
    later_miss = np.zeros_like(found)
    for layer in range(top.shape[1] - 1):
        later_miss |= top[:, layer] & ~top[:, layer + 1 :].all(axis=1)
    return {
        "layer_index": first,
        "found": found,
        "found_then_lost": later_miss,
        "forgotten": found & ~top[:, -1],
        "overridden_at_last_layer": top[:, -2] & ~top[:, -1] if top.shape[1] > 1 else ~found,
    }


def _rate(flags: np.ndarray) -> dict[str, Any]:
    return proportion_ci(int(flags.sum()), int(flags.size)).to_json()


def summarize_lens(path: str | os.PathLike[str], *, seed: int = 0) -> dict[str, Any]:
    """Group-wise numbers from ``lens.h5`` with 95% intervals (Wilson for rates, bootstrap
    over puzzles for means)."""
    arrays, attrs = read_h5(path)
    layers = json.loads(attrs["layers"]) if isinstance(attrs["layers"], str) else attrs["layers"]
    layers = [int(x) for x in layers]
    summary: dict[str, Any] = {"layers": layers, "n_puzzles": int(len(arrays["puzzle_ids"]))}
    for kind in LENS_KINDS:
        if f"{kind}_rank" not in arrays:
            continue
        rank, kl = arrays[f"{kind}_rank"], arrays[f"{kind}_kl"]
        derived = emergence(rank)
        groups: dict[str, Any] = {}
        for name in GROUPS:
            member = arrays[f"group_{name}"].astype(bool)
            found = derived["found"][member]
            first = derived["layer_index"][member]
            groups[name] = {
                "n": int(member.sum()),
                "final_top1": _rate(rank[member, -1] == 0),
                "found_at_some_layer": _rate(found),
                "found_then_lost": _rate(derived["found_then_lost"][member]),
                "forgotten": _rate(derived["forgotten"][member]),
                "overridden_at_last_layer": _rate(derived["overridden_at_last_layer"][member]),
                "emergence_layer_mean": _layer_mean(first[found], layers, seed),
                "top1_by_layer": [_rate(rank[member, i] == 0) for i in range(len(layers))],
                "kl_by_layer": [
                    mean_ci(kl[member, i], seed=seed).to_json() if member.any() else None
                    for i in range(len(layers))
                ],
            }
        by_length: dict[str, Any] = {}
        solved = arrays["group_unfiltered"].astype(bool)
        for label, lo, hi in _length_bins(arrays["n_moves"]):
            member = solved & (arrays["n_moves"] >= lo) & (arrays["n_moves"] <= hi)
            first = derived["layer_index"][member]
            by_length[label] = {
                "n": int(member.sum()),
                "emergence_layer_mean": _layer_mean(first[first >= 0], layers, seed),
                "found_then_lost": _rate(derived["found_then_lost"][member]),
                "share_found_by_layer": [
                    _rate((first >= 0) & (first <= i)) for i in range(len(layers))
                ],
            }
        summary[kind] = {"groups": groups, "unfiltered_by_line_length": by_length}
    return summary


def _layer_mean(indices: np.ndarray, layers: list[int], seed: int) -> dict[str, Any] | None:
    """Mean layer (in layer numbers, −1 = input layer) with a bootstrap interval."""
    if indices.size == 0:
        return None
    return mean_ci(np.asarray(layers)[indices].astype(float), seed=seed).to_json()


def _length_bins(n_moves: np.ndarray) -> list[tuple[str, int, int]]:
    """Line-length bins (plies after the opponent's move): 3, 5, 7, 9+ (1 = mate-in-1)."""
    return [("1", 1, 2), ("3", 3, 4), ("5", 5, 6), ("7", 7, 8), ("9+", 9, 10_000)]


def load_lens_results(directory: str | os.PathLike[str]) -> tuple[dict[str, Any], LensSummary]:
    """``lens.h5`` arrays and the :class:`LensSummary` of a lens analysis directory."""
    directory = Path(directory)
    summary = LensSummary.load(directory)
    arrays, _ = read_h5(directory / RESULTS_FILE)
    return arrays, summary
