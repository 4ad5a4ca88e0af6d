"""Steering along a bilinear probe's direction: is the probed 3rd-move target causally used?

The look-ahead paper's bilinear probe (:class:`leelalab.probing.probes.BilinearProbe`) scores
square ``s`` as the 3rd move's target from the residual stream ``x`` after one layer, read at
the *query* square ``q`` (the 1st move's target) and at ``s``:

    logit(s) = x_sᵀ W_xᵀ W_z x_q / √k + c,      P(s) = softmax_s logit(s).

*Direction.* To make the probe read "the 3rd move goes to s′" we change only the residual at
``q``. It is the probe's query, and also the key of square ``q``; the direction that raises
``log P(s′)`` fastest is its gradient with respect to ``x_q`` through both roles,

    δ(s′) = [ W_zᵀ W_x (x_{s′} − Σ_s P(s) x_s)  +  (1[s′ = q] − P(q)) W_xᵀ W_z x_q ] / √k,

whose first (query-side) term points the query, through ``W_zᵀ W_x``, towards the key of
``s′`` and away from the probe's current expectation, and whose second (key-side) term keeps
the key of ``q`` itself from growing along the query (otherwise ``logit(q)``, quadratic in
``x_q``, wins for long steps). ``δ`` depends on the position (through the keys), as the probe's
reading does. A step along ``δ`` raises every ``logit(s)`` by ``⟨W_x x_s, W_z v⟩/√k``, so for
large steps another square whose key is long along that direction can overtake ``s′``; the
vector we add is therefore the one of the chosen length that maximises ``log P(s′)``
(projected gradient ascent on the sphere, started at ``δ``; :func:`steering_vector`). Only
its component in the row space of ``W_z`` (rank ≤ k) changes the probe's reading. We add it,
with length ``α · r̄`` where ``r̄`` is the mean norm of the residual per square in that
position and layer, to ``x_q`` after layer ℓ and finish the forward pass from there
(``net.run_from(ℓ, ·)``). The baseline adds random directions (uniform on the sphere) of the
same length at the same square.

*Success.* A target ``s′`` is chosen among squares other than the line's real 3rd-move target
for which some legal 1st move is *consistent* with it while the network's current top move is
not. A 1st move ``m`` is **consistent with s′** when, after ``m`` (and a pass by the opponent),
the piece that moved could move to ``s′`` (a pseudo-legal move from ``m``'s target square to
``s′``): the piece would be the one to go to ``s′`` on the solver's next move. Steering
*succeeds* when the network's top move after steering is consistent with ``s′``. We also keep
whether the top move changed at all, the change of policy mass on the consistent moves, and
whether the probe itself now predicts ``s′`` (a check that the intervention does what the
probe says).

Puzzles come from the probe's held-out split (the grouped split of its first seed), with at
least 3 moves; positions are the clean puzzle positions without history, as the probe saw.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import chess
import numpy as np
import torch

from leelalab.analyses.inside_settings import SteeringConfig
from leelalab.analyses.run_records import save_summary
from leelalab.errors import LeelaLabError
from leelalab.lc0.squares import permutation
from leelalab.models.base import LeelaNetwork
from leelalab.models.batch import PositionBatch
from leelalab.probing.lens import residual_width
from leelalab.probing.probes import BilinearProbe, ProbeConfig, grouped_split, load_probe
from leelalab.puzzles.dataset import DatasetPuzzle, iter_dataset
from leelalab.runs.experiment import Results
from leelalab.runs.records import format_name, read_json, read_run_record
from leelalab.runs.results import ChunkPlan, read_h5, run_in_chunks, sha256_file
from leelalab.stats import bootstrap, proportion_ci

RESULTS_FILE = "steering.h5"


class SteeringError(LeelaLabError):
    """Steering cannot run with these probes or this dataset."""


def probe_direction(probe: BilinearProbe, residual: torch.Tensor, query: int, target: int):
    """``δ(s′)`` of the module docstring for one position (``residual`` is ``(64, d)``): the
    gradient of the probe's ``log P(target)`` with respect to the residual at ``query``, through
    both roles that residual plays (the query, and the key of square ``query``)."""
    keys = residual @ probe.w_x.T  # (64, k)
    u = residual[query] @ probe.w_z.T  # (k,)
    p = torch.softmax(keys @ u / math.sqrt(probe.rank) + probe.bias, dim=0)
    query_side = probe.w_z.T @ (keys[target] - p @ keys)
    key_side = (float(target == query) - p[query]) * (probe.w_x.T @ u)
    return (query_side + key_side) / math.sqrt(probe.rank)


def reachable_squares(board: chess.Board) -> dict[chess.Move, set[int]]:
    """For each legal move ``m``: the real squares the moved piece could move to next
    (pseudo-legal moves from ``m``'s target square after ``m`` and a pass by the opponent)."""
    reach = {}
    for move in board.legal_moves:
        after = board.copy(stack=False)
        after.push(move)
        after.push(chess.Move.null())
        reach[move] = {
            m.to_square
            for m in after.generate_pseudo_legal_moves(from_mask=chess.BB_SQUARES[move.to_square])
        }
    return reach


def consistent_moves(board: chess.Board, square: int) -> list[chess.Move]:
    """Legal moves of ``board`` consistent with real ``square`` (see the module docstring)."""
    return [move for move, squares in reachable_squares(board).items() if square in squares]


def steering_vectors(
    probe: BilinearProbe,
    residual: torch.Tensor,
    query: int,
    targets: Sequence[int],
    norms: Sequence[float],
    steps: int = 60,
) -> torch.Tensor:
    """``(len(targets), d)``: for each ``(target, norm)`` pair, a vector of length at most
    ``norm`` added at ``query`` that raises the probe's ``log P(target)`` as far as projected
    gradient ascent on the ball of that radius gets (normalised steps of decreasing length,
    started at the gradient direction :func:`probe_direction` scaled to ``norm``; the best
    iterate is kept, so it is never worse than that start).

    The objective is the probe's reading of the steered residual, in which the residual at
    ``query`` is both the query and the key of square ``query``; the key part makes it
    quadratic, so the optimum found is local.
    """
    target_index = torch.as_tensor(list(targets), dtype=torch.long)
    radius = torch.as_tensor(list(norms), dtype=residual.dtype)[:, None]
    w_x, w_z = probe.w_x.detach(), probe.w_z.detach()
    residual = residual.detach()
    with torch.no_grad():
        start = torch.stack([probe_direction(probe, residual, query, int(t)) for t in targets])
        keys = residual @ w_x.T
    rows = torch.arange(len(target_index))

    def objective(vector: torch.Tensor) -> torch.Tensor:
        steered_query = residual[query] + vector  # (n, d)
        steered_keys = keys.expand(len(vector), -1, -1).clone()
        steered_keys[:, query] = steered_query @ w_x.T
        u = steered_query @ w_z.T  # (n, k)
        logits = torch.einsum("nsk,nk->ns", steered_keys, u) / math.sqrt(probe.rank)
        return torch.log_softmax(logits, dim=1)[rows, target_index]

    vector = radius * start / start.norm(dim=1, keepdim=True).clamp_min(1e-12)
    best = vector.clone()
    with torch.no_grad():
        best_value = objective(vector)
    for step in range(steps):
        with torch.enable_grad():
            vector = vector.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(objective(vector).sum(), vector)
        with torch.no_grad():
            length = 0.5 * radius / math.sqrt(step + 1)
            vector = vector + length * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
            vector = vector * torch.clamp(radius / vector.norm(dim=1, keepdim=True), max=1.0)
            value = objective(vector)
            improved = value > best_value
            best[improved] = vector[improved]
            best_value = torch.maximum(best_value, value)
    return best.detach()


def steering_vector(
    probe: BilinearProbe, residual: torch.Tensor, query: int, target: int, norm: float
) -> torch.Tensor:
    """:func:`steering_vectors` for one target and length."""
    return steering_vectors(probe, residual, query, [target], [norm])[0]


@dataclass
class SteeringSummary(Results):
    """``summary.json`` of a steering run (:func:`summarize_steering`): per layer and scale,
    success of the probe direction and of random directions with intervals."""

    FORMAT = format_name("steering")
    FILE = "summary.json"
    HINT = "a `leelalab steer` directory"

    puzzles: int
    targets: int
    config: dict[str, Any]
    rows: list[dict[str, Any]]


def _probe_layers(directory: Path) -> dict[int, str]:
    layers = {}
    for weights in sorted(directory.glob("*.safetensors")):
        hook = weights.name[: -len(".safetensors")]
        match = re.fullmatch(r"blocks\.(\d+)\.hook_resid_post", hook)
        if match:
            layers[int(match.group(1))] = hook
    if not layers:
        raise SteeringError(f"{directory}: no saved residual-stream probes (*.safetensors)")
    return layers


def _load_probes(directory: Path, layers: Sequence[int]) -> tuple[dict[int, Any], ProbeConfig]:
    available = _probe_layers(directory)
    missing = [layer for layer in layers if layer not in available]
    if missing:
        raise SteeringError(f"{directory}: no probe for layers {missing}")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise SteeringError(f"{directory}: no config.json (a `leelalab probe train` directory?)")
    try:
        config = ProbeConfig(**read_json(config_path, hint="a `leelalab probe train` directory"))
    except TypeError as error:
        raise SteeringError(f"{config_path}: not a probe configuration ({error})") from None
    if config.probe != "bilinear" or config.target != "move3_target":
        raise SteeringError(
            f"{directory}: steering needs the bilinear move3_target probe, not "
            f"{config.probe} / {config.target}"
        )
    if config.query != "move1_target":
        raise SteeringError(f"{directory}: the probe's query must be move1_target")
    probes = {layer: load_probe(directory, available[layer])[0] for layer in layers}
    return probes, config


def check_probe_network(directory: Path, probes: dict[int, Any], network: LeelaNetwork) -> None:
    """One line naming the probe directory when its probes were trained on another network
    (by the store's recorded sha256, else by the residual width)."""
    try:
        record = read_run_record(directory)
    except LeelaLabError:
        record = {}
    store = record.get("store_settings") if isinstance(record.get("store_settings"), dict) else {}
    trained_on, expected = store.get("network"), store.get("network_sha256")
    if expected and network.sha256 and expected != network.sha256:
        raise SteeringError(
            f"{directory}: the probes were trained on {trained_on} (sha256 {expected[:12]}…), "
            f"not {network.source} (sha256 {network.sha256[:12]}…); pass that network with "
            "--net, or train probes on this one"
        )
    width = residual_width(network)
    for layer, probe in probes.items():
        if layer >= network.n_layers or probe.w_x.shape[-1] != width:
            raise SteeringError(
                f"{directory}: the probe of layer {layer} reads a {probe.w_x.shape[-1]}-wide "
                f"residual stream of another network; {network.source} has {network.n_layers} "
                f"layers of width {width}"
            )


def held_out_puzzles(
    dataset: str | os.PathLike[str], probe_directory: str | os.PathLike[str], config: ProbeConfig
) -> list[DatasetPuzzle]:
    """The probe's test-split puzzles with at least 3 moves, in dataset order.

    The split is :func:`grouped_split` over the puzzle ids of the store the probe was trained
    on (``run.json``) with the probe's first seed and test fraction.
    """
    run = read_run_record(probe_directory, hint="the probe's split cannot be rebuilt without it")
    store_settings = run.get("store_settings", {})
    puzzles = list(
        iter_dataset(
            dataset,
            selected_only=bool(store_settings.get("selected_only", False)),
            limit=store_settings.get("limit"),
        )
    )
    min_moves = int(store_settings.get("min_moves", 1))
    puzzles = [p for p in puzzles if p.n_moves >= min_moves]
    if store_settings.get("puzzles") not in (None, len(puzzles)):
        raise SteeringError(
            f"{dataset}: {len(puzzles)} puzzles, but the probe's store had "
            f"{store_settings.get('puzzles')}; steer on the dataset the probe was trained on"
        )
    _, test = grouped_split([p.id for p in puzzles], config.test_fraction, config.seeds[0])
    held = {puzzles[i].id for i in test}
    return [p for p in puzzles if p.id in held and p.n_moves >= 3]


def _targets(
    puzzle: DatasetPuzzle,
    reach: dict[chess.Move, set[int]],
    top: chess.Move,
    input_format: int,
    count: int,
    seed: int,
) -> list[tuple[int, list[chess.Move]]]:
    """Up to ``count`` (model square s′, consistent moves) with ``top`` not consistent."""
    board = puzzle.clean_board
    real = permutation(board, input_format)
    third = puzzle.target_square(3, "model", input_format)
    eligible = []
    for model_square in range(64):
        if model_square == third:
            continue
        square = int(real[model_square])
        moves = [move for move, squares in reach.items() if square in squares]
        if moves and top not in moves:
            eligible.append((model_square, moves))
    random.Random(f"{seed}:{puzzle.id}").shuffle(eligible)
    return eligible[:count]


@dataclass
class _Job:
    """One (puzzle row, target) to steer: the query square, s′, the consistent moves'
    policy indices, their probability mass before steering and the top move's index."""

    row: int
    target: int
    query: int
    square: int
    consistent: torch.Tensor
    mass: float
    top_index: int


def _plan(
    positions: PositionBatch,
    puzzles: Sequence[DatasetPuzzle],
    clean_policy: torch.Tensor,
    config: SteeringConfig,
) -> tuple[list[_Job], list[str], np.ndarray]:
    """The jobs of a chunk, each puzzle's top move and the chosen target squares."""
    input_format = positions.input_format
    target_squares = np.full((len(puzzles), config.targets_per_puzzle), -1, dtype=np.int16)
    jobs: list[_Job] = []
    top_moves = []
    for row, puzzle in enumerate(puzzles):
        board, moves, indices = positions.boards[row], positions.moves[row], positions.indices[row]
        best = int(clean_policy[row, indices].argmax())
        top_moves.append(moves[best].uci())
        query = puzzle.target_square(1, "model", input_format)
        assert query is not None
        reach = reachable_squares(board)
        chosen = _targets(
            puzzle, reach, moves[best], input_format, config.targets_per_puzzle, config.seed
        )
        for t, (square, consistent) in enumerate(chosen):
            target_squares[row, t] = square
            index = torch.tensor([positions.move_index(row, m) for m in consistent])
            mass = float(clean_policy[row, index].sum())
            jobs.append(_Job(row, t, query, square, index, mass, int(indices[best])))
    return jobs, top_moves, target_squares


def _steered_residuals(
    probe: BilinearProbe,
    residuals: torch.Tensor,
    jobs: Sequence[_Job],
    config: SteeringConfig,
    generator: torch.Generator,
) -> tuple[list[torch.Tensor], list[tuple[_Job, int, int]]]:
    """Per job, scale and direction (0: the probe's, then random ones) the steered residual
    stream, and its ``(job, scale index, direction index)``."""
    scales = config.scales
    steered_all, keys = [], []
    for row in sorted({job.row for job in jobs}):
        row_jobs = [job for job in jobs if job.row == row]
        residual, query = residuals[row], row_jobs[0].query
        norm = float(residual.norm(dim=-1).mean())
        probe_vectors = steering_vectors(
            probe,
            residual,
            query,
            [job.square for job in row_jobs for _ in scales],
            [scale * norm for _ in row_jobs for scale in scales],
        )
        for j, job in enumerate(row_jobs):
            noise = torch.randn(config.random_directions, residual.shape[-1], generator=generator)
            units = noise / noise.norm(dim=1, keepdim=True)
            for a, scale in enumerate(scales):
                vectors = [probe_vectors[j * len(scales) + a]]
                vectors += [scale * norm * unit.to(residual) for unit in units]
                for d, vector in enumerate(vectors):
                    steered = residual.clone()
                    steered[query] = steered[query] + vector
                    steered_all.append(steered)
                    keys.append((job, a, d))
    return steered_all, keys


def _steer_chunk(
    network: LeelaNetwork,
    probes: dict[int, BilinearProbe],
    puzzles: Sequence[DatasetPuzzle],
    config: SteeringConfig,
    batch_size: int = 256,
) -> dict[str, Any]:
    layers = sorted(probes)
    input_format = int(network.network_format.input)
    positions = PositionBatch.encode([p.clean_board for p in puzzles], input_format)
    planes = torch.from_numpy(positions.planes).to(network.device, network.dtype)
    masks = positions.mask(network.device)
    names = [network.residual_hook_name(layer) for layer in layers]
    with torch.no_grad():
        clean, cache = network.run_with_cache(planes, names_filter=names)
    clean_policy = torch.softmax(clean.policy_logits.masked_fill(~masks, float("-inf")), -1)
    shape = (len(puzzles), config.targets_per_puzzle, len(layers), len(config.scales))
    shape += (1 + config.random_directions,)
    success = np.zeros(shape, dtype=bool)
    changed = np.zeros(shape, dtype=bool)
    mass_change = np.full(shape, np.nan, dtype=np.float32)
    probe_hit = np.zeros(shape, dtype=bool)
    generator = torch.Generator().manual_seed(config.seed)
    jobs, top_moves, target_squares = _plan(positions, puzzles, clean_policy, config)
    for li, layer in enumerate(layers):
        residuals = cache[network.residual_hook_name(layer)]
        steered_all, keys = _steered_residuals(probes[layer], residuals, jobs, config, generator)
        for start in range(0, len(steered_all), batch_size):
            batch = torch.stack(steered_all[start : start + batch_size])
            batch_keys = keys[start : start + batch_size]
            rows = torch.tensor([job.row for job, _, _ in batch_keys], device=network.device)
            with torch.no_grad():
                out = network.run_from(layer, batch)
                policy = torch.softmax(
                    out.policy_logits.masked_fill(~masks[rows], float("-inf")), -1
                )
                queries = torch.tensor([job.query for job, _, _ in batch_keys])
                predicted = probes[layer](batch, queries).argmax(-1).tolist()
            tops = policy.argmax(-1).tolist()
            for b, (job, a, d) in enumerate(batch_keys):
                index = (job.row, job.target, li, a, d)
                success[index] = tops[b] in set(job.consistent.tolist())
                changed[index] = tops[b] != job.top_index
                mass_change[index] = float(policy[b, job.consistent].sum()) - job.mass
                probe_hit[index] = predicted[b] == job.square
    return {
        "puzzle_ids": [p.id for p in puzzles],
        "top_move": top_moves,
        "target_squares": target_squares,
        "success": success,
        "changed": changed,
        "mass_change": mass_change,
        "probe_hit": probe_hit,
    }


def run_steering(
    network: LeelaNetwork,
    dataset: str | os.PathLike[str],
    probe_directory: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: SteeringConfig | None = None,
    *,
    chunk_size: int = 16,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Steer the network along the probe's directions on held-out puzzles (resumable).

    Writes ``output/steering.h5`` (per puzzle, target, layer, scale and direction — index 0 the
    probe's, then the random ones: success, top move changed, change of mass on the
    consistent moves, probe predicts s′), ``summary.json`` (:class:`SteeringSummary`) and
    ``run.json``. The probes are checked against ``network`` before the output is touched.
    """
    config = config or SteeringConfig()
    dataset, probe_directory = Path(dataset), Path(probe_directory)
    layers = config.layers if config.layers is not None else sorted(_probe_layers(probe_directory))
    probes, probe_config = _load_probes(probe_directory, layers)
    check_probe_network(probe_directory, probes, network)
    puzzles = held_out_puzzles(dataset, probe_directory, probe_config)
    if config.limit is not None:
        puzzles = puzzles[: config.limit]
    if not puzzles:
        raise SteeringError(f"{dataset}: no held-out puzzle with 3 moves to steer")
    config = config.replace(layers=tuple(layers))
    settings = {
        "analysis": "steering",
        "dataset": str(dataset.resolve()),
        "dataset_sha256": sha256_file(dataset / "dataset.jsonl"),
        "network": network.source,
        "network_sha256": network.sha256,
        "probes": str(probe_directory.resolve()),
        "probe_sha256": {
            str(layer): sha256_file(probe_directory / f"blocks.{layer}.hook_resid_post.safetensors")
            for layer in layers
        },
        "config": asdict(config),
    }
    path = run_in_chunks(
        puzzles,
        output,
        settings,
        lambda chunk: _steer_chunk(network, probes, chunk, config),
        ChunkPlan(
            results_file=RESULTS_FILE,
            attrs={"config": asdict(config)},
            chunk_size=chunk_size,
            description="steering",
        ),
        progress=progress,
        overwrite=overwrite,
    )
    save_summary(output, SteeringSummary.from_json(summarize_steering(path)))
    return path


def summarize_steering(path: str | os.PathLike[str], *, seed: int = 0) -> dict[str, Any]:
    """Per layer and scale: success rates of the probe direction and of random directions,
    their difference, change rates, mass change and probe hits, with bootstrap intervals over
    puzzles (targets of one puzzle stay together)."""
    arrays, attrs = read_h5(path)
    config = json.loads(attrs["config"]) if isinstance(attrs["config"], str) else attrs["config"]
    valid = arrays["target_squares"] >= 0  # (n, targets)
    puzzles = np.nonzero(valid.any(axis=1))[0]
    n = puzzles.size
    layers, scales = config["layers"], config["scales"]
    rows: list[dict[str, Any]] = []

    def per_puzzle(values: np.ndarray) -> np.ndarray:
        """Mean over each puzzle's valid targets: ``values`` (n, targets) → (n,)."""
        total = np.where(valid, values, 0).sum(axis=1)
        return total[puzzles] / valid[puzzles].sum(axis=1)

    for li, layer in enumerate(layers):
        for a, scale in enumerate(scales):
            probe_success = per_puzzle(arrays["success"][:, :, li, a, 0])
            random_success = per_puzzle(arrays["success"][:, :, li, a, 1:].mean(axis=-1))
            probe_changed = per_puzzle(arrays["changed"][:, :, li, a, 0])
            random_changed = per_puzzle(arrays["changed"][:, :, li, a, 1:].mean(axis=-1))
            probe_mass = per_puzzle(np.nan_to_num(arrays["mass_change"][:, :, li, a, 0]))
            random_mass = per_puzzle(
                np.nan_to_num(arrays["mass_change"][:, :, li, a, 1:]).mean(axis=-1)
            )
            hit = per_puzzle(arrays["probe_hit"][:, :, li, a, 0])
            units_hit = valid & arrays["probe_hit"][:, :, li, a, 0]
            given_hit = proportion_ci(
                int((arrays["success"][:, :, li, a, 0] & units_hit).sum()), int(units_hit.sum())
            )

            def ci(values: np.ndarray) -> dict[str, Any]:
                return bootstrap(lambda i: values[i].mean(), n, seed=seed).to_json()

            rows.append(
                {
                    "layer": layer,
                    "scale": scale,
                    "probe_success": ci(probe_success),
                    "random_success": ci(random_success),
                    "success_difference": ci(probe_success - random_success),
                    "probe_changed": ci(probe_changed),
                    "random_changed": ci(random_changed),
                    "probe_mass_change": ci(probe_mass),
                    "random_mass_change": ci(random_mass),
                    "probe_predicts_target": ci(hit),
                    "probe_success_given_probe_hit": given_hit.to_json(),
                }
            )
    return {
        "puzzles": int(n),
        "targets": int(valid.sum()),
        "config": config,
        "rows": rows,
    }
