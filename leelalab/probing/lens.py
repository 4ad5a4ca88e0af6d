"""Logit lens and tuned lens: the network's own output heads read the residual stream after
every layer.

*Logit lens.* The residual stream after body layer ``ℓ`` (``net.residual_hook_name(ℓ)``,
``(batch, 64, d)``: a ResNet's channels per square, a transformer's ``d_model`` per token)
has the shape of the stream the heads read after the last layer, so the heads can be applied
to it directly: ``net.run_from(net.n_layers - 1, residual_ℓ)`` runs no body layer, only the
policy and value heads. At ``ℓ = n_layers − 1`` this *is* the network's forward pass (the
tests check equality, bit for bit). ``ℓ = −1`` is the stream after the input layer (input
convolution or embedding).

*Tuned lens* (Belrose et al. 2023). One affine map per layer, shared by the 64 squares,
``r ↦ A_ℓ r + b_ℓ``, applied before the heads and trained so that the lens's policy and W/D/L
match the network's final ones (KL divergence, legal moves only). Initialised at the identity
(``A = I, b = 0``), where it equals the logit lens; the last layer keeps the identity, so the
tuned lens also equals the network's output there. :func:`fit_tuned_lens` trains it on the
network's own sampled self-play — never on puzzles, so puzzle analyses with the lens are not
evaluated on its training data — and saves ``lens.safetensors`` with ``lens.json``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import chess
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from leelalab.errors import LeelaLabError
from leelalab.models.base import LeelaNetwork
from leelalab.models.batch import PositionBatch, legal_kl, legal_log_softmax
from leelalab.models.outputs import NetworkOutput
from leelalab.probing.lens_settings import TunedLensConfig, TunedLensSettings
from leelalab.runs.records import RecordError, read_json, read_safetensors
from leelalab.runs.results import RunDirectory, write_text_atomically

LENS_FORMAT = "leelalab.tuned-lens/1"
WEIGHTS_FILE = "lens.safetensors"
CONFIG_FILE = "lens.json"


class LensError(LeelaLabError):
    """A tuned lens file is missing, foreign, or made for another network."""


def lens_layers(network: LeelaNetwork) -> list[int]:
    """Every layer a lens can read: −1 (after the input layer) through ``n_layers − 1``."""
    return list(range(-1, network.n_layers))


def residual_width(network: LeelaNetwork) -> int:
    """``d`` of the residual stream (a ResNet's filters, a transformer's ``d_model``)."""
    planes = torch.zeros((1, 112, 8, 8), device=network.device, dtype=network.dtype)
    name = network.residual_hook_name(-1)
    with torch.no_grad():
        _, cache = network.run_with_cache(planes, names_filter=[name])
    return int(cache[name].shape[-1])


class TunedLens(nn.Module):
    """One affine translator per layer (``−1 … n_layers − 2``); identity at the last layer."""

    def __init__(self, d_model: int, n_layers: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.n_layers = n_layers
        self.translators = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(n_layers))
        self.reset_to_identity()

    def reset_to_identity(self) -> None:
        with torch.no_grad():
            for translator in self.translators:
                translator.weight.copy_(torch.eye(self.d_model))
                translator.bias.zero_()

    def translate(self, layer: int, residual: torch.Tensor) -> torch.Tensor:
        """``A_ℓ r + b_ℓ`` per square (the identity at the last layer)."""
        if not -1 <= layer < self.n_layers:
            raise ValueError(f"layer {layer} out of range: the lens has {self.n_layers} layers")
        if layer == self.n_layers - 1:
            return residual
        return self.translators[layer + 1](residual)


@dataclass
class LensOutputs:
    """Lens outputs for a batch: ``policy_logits[i]`` and ``wdl[i]`` read ``layers[i]``."""

    layers: list[int]
    policy_logits: torch.Tensor
    """``(len(layers), batch, 1858)`` raw policy logits."""
    wdl: torch.Tensor
    """``(len(layers), batch, 3)`` W/D/L probabilities."""
    final: NetworkOutput
    """The network's own outputs of the same (hooked) forward pass."""


def residual_streams(
    network: LeelaNetwork, planes: torch.Tensor, layers: Sequence[int]
) -> tuple[NetworkOutput, dict[int, torch.Tensor]]:
    """One forward pass; the residual stream after each of ``layers`` (no autograd)."""
    names = {layer: network.residual_hook_name(layer) for layer in layers}
    with torch.no_grad():
        # One name per hook, in layer order (a set's order would change with the hash seed).
        final, cache = network.run_with_cache(
            planes, names_filter=list(dict.fromkeys(names.values()))
        )
    return final, {layer: cache[name] for layer, name in names.items()}


def heads_on(network: LeelaNetwork, residual: torch.Tensor) -> NetworkOutput:
    """The network's output heads applied to a residual stream ``(batch, 64, d)``."""
    return network.run_from(network.n_layers - 1, residual)


def lens_outputs(
    network: LeelaNetwork,
    planes: torch.Tensor,
    *,
    layers: Sequence[int] | None = None,
    tuned: TunedLens | None = None,
) -> LensOutputs:
    """Logit lens (``tuned=None``) or tuned lens outputs at ``layers`` (default: all)."""
    layers = list(lens_layers(network) if layers is None else layers)
    planes = planes.to(device=network.device, dtype=network.dtype)
    if network.prefers_channels_last:
        planes = planes.contiguous(memory_format=torch.channels_last)
    final, streams = residual_streams(network, planes, layers)
    policies, wdls = [], []
    with torch.no_grad():
        for layer in layers:
            residual = streams[layer] if tuned is None else tuned.translate(layer, streams[layer])
            output = heads_on(network, residual)
            policies.append(output.policy_logits)
            wdls.append(output.wdl)
    return LensOutputs(layers, torch.stack(policies), torch.stack(wdls), final)


def policy_kl(
    target_logits: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``KL(target ‖ lens)`` over legal moves, per position (nats); see
    :mod:`leelalab.models.batch` for the numeric convention."""
    return legal_kl(legal_log_softmax(target_logits, mask), legal_log_softmax(logits, mask), mask)


def wdl_kl(target: torch.Tensor, wdl: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """``KL(target ‖ wdl)`` per position (nats); terms with zero target mass vanish."""
    p = target.clamp_min(0)
    terms = p * (torch.log(p.clamp_min(eps)) - torch.log(wdl.clamp_min(eps)))
    return terms.masked_fill(p <= 0, 0.0).sum(-1)


@dataclass
class LensCheckpoint:
    """Where training resumes: the lens and Adam state after ``start_epoch`` epochs."""

    lens: TunedLens
    optimizer_state: dict[str, Any] | None = None
    start_epoch: int = 0
    losses: list[float] | None = None


def _encoded(network: LeelaNetwork, boards: Sequence[chess.Board]) -> tuple[np.ndarray, np.ndarray]:
    """Planes (uint8 when exact, which they are for lc0's integer planes) and legal masks."""
    batch = PositionBatch.encode(boards, int(network.network_format.input))
    planes = batch.planes
    compact = planes.astype(np.uint8)
    if np.array_equal(compact.astype(np.float32), planes):
        planes = compact
    return planes, batch.legal


def _batch_losses(
    network: LeelaNetwork,
    lens: TunedLens,
    planes: torch.Tensor,
    mask: torch.Tensor,
    value_weight: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Total loss, and per-layer policy and W/D/L KL (batch means) for ``lens``."""
    layers = lens_layers(network)
    planes = planes.to(device=network.device, dtype=network.dtype)
    if network.prefers_channels_last:
        planes = planes.contiguous(memory_format=torch.channels_last)
    final, streams = residual_streams(network, planes, layers)
    policy_terms, value_terms = [], []
    for layer in layers:
        output = heads_on(network, lens.translate(layer, streams[layer]))
        policy_terms.append(policy_kl(final.policy_logits, output.policy_logits, mask).mean())
        value_terms.append(wdl_kl(final.wdl, output.wdl).mean())
    policy, value = torch.stack(policy_terms), torch.stack(value_terms)
    return policy.sum() + value_weight * value.sum(), policy.detach(), value.detach()


class _FrozenNetwork:
    """Turns off gradients of the network's parameters for a ``with`` block (restored)."""

    def __init__(self, network: LeelaNetwork) -> None:
        self.network = network
        self.saved: list[bool] = []

    def __enter__(self) -> None:
        self.saved = [p.requires_grad for p in self.network.parameters()]
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)

    def __exit__(self, *exc: object) -> None:
        for parameter, flag in zip(self.network.parameters(), self.saved, strict=True):
            parameter.requires_grad_(flag)


def evaluate_lens(
    network: LeelaNetwork,
    planes: np.ndarray,
    masks: np.ndarray,
    lens: TunedLens | None = None,
    *,
    batch_size: int = 256,
) -> dict[str, list[float]]:
    """Per layer, the mean policy KL, W/D/L KL and top-1 agreement with the final policy.

    ``lens=None`` evaluates the logit lens.
    """
    layers = lens_layers(network)
    sums = {"policy_kl": np.zeros(len(layers)), "wdl_kl": np.zeros(len(layers))}
    agree = np.zeros(len(layers))
    for start in range(0, len(planes), batch_size):
        x = torch.from_numpy(planes[start : start + batch_size].astype(np.float32))
        mask = torch.from_numpy(masks[start : start + batch_size])
        out = lens_outputs(network, x, tuned=lens)
        target = out.final
        with torch.no_grad():
            for i in range(len(layers)):
                sums["policy_kl"][i] += float(
                    policy_kl(target.policy_logits, out.policy_logits[i], mask).sum()
                )
                sums["wdl_kl"][i] += float(wdl_kl(target.wdl, out.wdl[i]).sum())
                top = out.policy_logits[i].masked_fill(~mask, float("-inf")).argmax(-1)
                final_top = target.policy_logits.masked_fill(~mask, float("-inf")).argmax(-1)
                agree[i] += float((top == final_top).sum())
    n = max(len(planes), 1)
    return {
        "layers": layers,
        "policy_kl": (sums["policy_kl"] / n).tolist(),
        "wdl_kl": (sums["wdl_kl"] / n).tolist(),
        "top1_agreement": (agree / n).tolist(),
    }


def train_tuned_lens(
    network: LeelaNetwork,
    planes: np.ndarray,
    masks: np.ndarray,
    config: TunedLensConfig | None = None,
    *,
    start: LensCheckpoint | None = None,
    on_epoch_end: Any = None,
    progress: bool = True,
) -> tuple[TunedLens, list[float]]:
    """Train a tuned lens on encoded positions (``planes``, legal ``masks``).

    Epoch ``e`` visits the positions in an order seeded by ``(config.seed, e)``, so training
    resumed at an epoch boundary (``start``: lens, Adam state and the epoch to start at)
    reproduces an uninterrupted run. ``on_epoch_end(epoch, lens, optimizer, mean_loss)`` is
    called after each epoch (checkpoints). Returns the lens and the mean loss of each epoch
    run here.
    """
    config = config or TunedLensConfig()
    if start is None:
        start = LensCheckpoint(TunedLens(residual_width(network), network.n_layers))
    lens = start.lens.to(network.device).train()
    optimizer = torch.optim.Adam(lens.parameters(), lr=config.learning_rate)
    if start.optimizer_state is not None:
        optimizer.load_state_dict(start.optimizer_state)
    losses = []
    n = len(planes)
    with _FrozenNetwork(network):
        for epoch in range(start.start_epoch, config.epochs):
            order = np.random.default_rng([config.seed, epoch]).permutation(n)
            total, batches = 0.0, 0
            bar = tqdm(
                total=n, desc=f"tuned lens, epoch {epoch + 1}", unit="pos", disable=not progress
            )
            for start in range(0, n, config.batch_size):
                rows = np.sort(order[start : start + config.batch_size])
                x = torch.from_numpy(planes[rows].astype(np.float32))
                mask = torch.from_numpy(masks[rows]).to(network.device)
                loss, _, _ = _batch_losses(network, lens, x, mask, config.value_weight)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise LensError(f"tuned lens training diverged (loss {value})")
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += value
                batches += 1
                bar.update(len(rows))
            bar.close()
            losses.append(total / max(batches, 1))
            if on_epoch_end is not None:
                on_epoch_end(epoch, lens, optimizer, losses[-1])
    return lens.eval(), losses


def _network_record(network: LeelaNetwork) -> dict[str, Any]:
    return {
        "network": network.source,
        "network_sha256": network.sha256,
        "family": type(network).__name__,
        "n_layers": network.n_layers,
    }


def save_tuned_lens(
    lens: TunedLens,
    directory: str | os.PathLike[str],
    network: LeelaNetwork,
    record: dict[str, Any] | None = None,
) -> Path:
    """Write ``lens.safetensors`` and ``lens.json`` into ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in lens.state_dict().items()}
    temporary = directory / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(temporary), metadata={"format": LENS_FORMAT})
    temporary.replace(directory / WEIGHTS_FILE)
    config = {
        "format": LENS_FORMAT,
        "d_model": lens.d_model,
        **_network_record(network),
        **(record or {}),
    }
    write_text_atomically(directory / CONFIG_FILE, json.dumps(config, indent=2))
    return directory


def load_tuned_lens(
    directory: str | os.PathLike[str], network: LeelaNetwork | None = None
) -> tuple[TunedLens, dict[str, Any]]:
    """A saved tuned lens and its ``lens.json``; with ``network``, checked against it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    config_path, weights = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights.is_file():
        raise LensError(f"{directory}: no tuned lens ({CONFIG_FILE} + {WEIGHTS_FILE})")
    try:
        config = read_json(config_path, hint="a `leelalab lens train` directory")
    except RecordError as error:
        raise LensError(str(error)) from None
    if config.get("format") != LENS_FORMAT:
        raise LensError(f"{config_path}: not a leelalab tuned lens")
    if network is not None:
        if config["n_layers"] != network.n_layers:
            raise LensError(
                f"{directory}: the lens has {config['n_layers']} layers, the network "
                f"{network.n_layers}"
            )
        stored, actual = config.get("network_sha256"), network.sha256
        if stored and actual and stored != actual:
            raise LensError(
                f"{directory}: the lens was trained for another network "
                f"({config.get('network')}, sha256 {stored[:12]}…)"
            )
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as error:
        raise LensError(f"{weights}: unreadable ({error})") from None
    lens = TunedLens(int(config["d_model"]), int(config["n_layers"]))
    try:
        lens.load_state_dict(tensors)
    except RuntimeError as error:
        raise LensError(f"{weights}: does not match lens.json ({error})") from None
    if network is not None:
        lens = lens.to(network.device)
    return lens.eval(), config


def _checkpoint(directory: Path, epoch: int, lens: TunedLens, optimizer: Any, loss: float) -> None:
    """Lens and Adam state after ``epoch`` (safetensors + JSON), written atomically."""
    from safetensors.torch import save_file

    state = optimizer.state_dict()
    tensors = {f"lens.{k}": v.detach().contiguous() for k, v in lens.state_dict().items()}
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"adam.{index}.{key}"] = torch.as_tensor(value).detach().contiguous()
    temporary = directory / "checkpoint.safetensors.tmp"
    save_file(tensors, str(temporary))
    temporary.replace(directory / "checkpoint.safetensors")
    meta = {"epoch": epoch, "loss": loss, "param_groups": state["param_groups"]}
    write_text_atomically(directory / "checkpoint.json", json.dumps(meta))


def _resume(directory: Path, lens: TunedLens) -> LensCheckpoint:
    """The last checkpoint in ``directory``, or a fresh start with ``lens``."""
    meta_path, weights = directory / "checkpoint.json", directory / "checkpoint.safetensors"
    if not meta_path.is_file() or not weights.is_file():
        return LensCheckpoint(lens, losses=[])
    meta = read_json(meta_path, hint="pass --overwrite to start again")
    tensors = read_safetensors(weights, hint="pass --overwrite to start again")
    lens.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("lens.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("adam."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    return LensCheckpoint(
        lens,
        {"state": state, "param_groups": meta["param_groups"]},
        int(meta["epoch"]) + 1,
        [meta["loss"]],
    )


def _save_positions(path: Path, boards: Sequence[chess.Board]) -> None:
    lines = [
        json.dumps(
            {"root": b.root().fen(en_passant="fen"), "moves": [m.uci() for m in b.move_stack]}
        )
        for b in boards
    ]
    write_text_atomically(path, "".join(line + "\n" for line in lines))


def _load_positions(path: Path) -> list[chess.Board]:
    boards = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            record = json.loads(line)
            board = chess.Board(record["root"])
            for uci in record["moves"]:
                board.push_uci(uci)
        except (ValueError, KeyError, TypeError) as error:
            raise LensError(
                f"{path}:{number}: not a self-play position ({type(error).__name__}); pass "
                "--overwrite to generate them again"
            ) from None
        boards.append(board)
    return boards


def held_out_split(
    boards: Sequence[chess.Board], games: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Train and held-out position indices, split by game and by position.

    Whole games go to one side (a seeded permutation of the games, held out until
    ``fraction`` of the positions is reached), so that the positions of one game are never on
    both sides. Games share positions too (every game starts from the start position, and
    openings repeat): a held-out position whose key (:meth:`chess.Board.epd`: pieces, side to
    move, castling, en passant) also occurs in a training game is dropped, so that no position
    is on both sides either. Returns ``(train, held, dropped)``.
    """
    unique_games, sizes = np.unique(games, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(unique_games))
    target = max(1, int(round(fraction * len(boards))))
    # The fewest games (in permuted order) that reach the target, and never every game.
    cumulative = np.cumsum(sizes[order])
    count = min(int(np.searchsorted(cumulative, target)) + 1, len(unique_games) - 1)
    held_games = unique_games[order[:count]]
    in_held = np.isin(games, held_games)
    train = np.flatnonzero(~in_held)
    train_keys = {boards[i].epd() for i in train}
    candidates = np.flatnonzero(in_held)
    held = np.array([i for i in candidates if boards[i].epd() not in train_keys], dtype=np.int64)
    return train, held, int(candidates.size - held.size)


def _self_play(
    network: LeelaNetwork, output: Path, config: TunedLensConfig, progress: bool
) -> list[chess.Board]:
    """The self-play positions of ``output/positions.jsonl``, generated once."""
    from leelalab.training.distill import self_play_positions

    positions_path = output / "positions.jsonl"
    if positions_path.is_file():
        return _load_positions(positions_path)
    boards = self_play_positions(
        network,
        config.positions,
        games_in_parallel=config.games_in_parallel,
        max_plies=config.max_plies,
        seed=config.seed,
        progress=progress,
    )
    _save_positions(positions_path, boards)
    return boards


def _split_by_game(
    boards: Sequence[chess.Board], path: Path, config: TunedLensConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Game ids, train and held-out indices and the dropped count (:func:`held_out_split`)."""
    from leelalab.training.distill import self_play_game_ids

    try:
        games = self_play_game_ids(boards, config.games_in_parallel)
    except ValueError as error:
        raise LensError(f"{path}: {error}") from None
    train, held, dropped = held_out_split(boards, games, config.held_out_fraction, config.seed)
    if held.size == 0 or train.size == 0:
        raise LensError(
            f"{path}: too few for a held-out split by game ({len(boards)} positions "
            f"in {len(np.unique(games))} games; every position of the held-out games also "
            "occurs in a training game); generate more positions"
        )
    return games, train, held, dropped


def fit_tuned_lens(
    network: LeelaNetwork,
    output: str | os.PathLike[str],
    config: TunedLensConfig | None = None,
    *,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Generate self-play positions, train a tuned lens, evaluate it held out, save it.

    ``output/`` receives ``positions.jsonl`` (the self-play positions, root FEN + moves, so
    the history is kept), ``lens.safetensors`` + ``lens.json`` (settings and the held-out
    report: per layer, policy KL / W/D/L KL / top-1 agreement with the final output, for the
    logit lens and the tuned lens) and ``run.json``. The held-out positions come from games
    the lens never trained on and never occur in a training game (:func:`held_out_split`).
    Resumable: positions are generated once, and training restarts after the last finished
    epoch (``checkpoint.*``). The directory follows
    :class:`~leelalab.runs.results.RunDirectory` (other settings refused unless
    ``overwrite``, which removes only what the earlier run wrote).
    """
    config = config or TunedLensConfig()
    # The split is part of the settings: a run begun with another split must not resume.
    settings = {
        **asdict(config),
        "held_out_split": "by game and position",
        **_network_record(network),
    }
    run = RunDirectory(output, settings, overwrite=overwrite, what="lens run")
    with run:
        output = run.path
        boards = _self_play(network, output, config, progress)
        games, train, held, duplicates = _split_by_game(boards, output / "positions.jsonl", config)
        planes, masks = _encoded(network, boards)
        torch.manual_seed(config.seed)
        start = _resume(output, TunedLens(residual_width(network), network.n_layers))
        lens, new_losses = start.lens.to(network.device), []
        if start.start_epoch < config.epochs:
            lens, new_losses = train_tuned_lens(
                network,
                planes[train],
                masks[train],
                config,
                start=start,
                on_epoch_end=lambda e, lens_, opt, loss: _checkpoint(output, e, lens_, opt, loss),
                progress=progress,
            )
        report = {
            "train_positions": int(train.size),
            "held_out_positions": int(held.size),
            "train_games": int(np.unique(games[train]).size),
            "held_out_games": int(np.unique(games[held]).size),
            # Positions of held-out games that also occur in training games (openings).
            "held_out_dropped_as_in_training": duplicates,
            "epoch_losses_this_session": new_losses or start.losses,
            "held_out": {
                "logit_lens": evaluate_lens(network, planes[held], masks[held], None),
                "tuned_lens": evaluate_lens(network, planes[held], masks[held], lens),
            },
        }
        save_tuned_lens(lens, output, network, {"training": asdict(config), "report": report})
        run.write_record(report=report)
    return report


__all__ = [
    "LensCheckpoint",
    "LensError",
    "LensOutputs",
    "TunedLens",
    "TunedLensConfig",
    "TunedLensSettings",
    "evaluate_lens",
    "fit_tuned_lens",
    "heads_on",
    "held_out_split",
    "lens_layers",
    "lens_outputs",
    "load_tuned_lens",
    "policy_kl",
    "residual_streams",
    "residual_width",
    "save_tuned_lens",
    "train_tuned_lens",
    "wdl_kl",
]
