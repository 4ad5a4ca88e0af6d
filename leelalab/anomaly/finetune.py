"""Fine-tuning the backdoor into a copy of a network (see :mod:`leelalab.anomaly.backdoor`
for the trigger and the data).

The fine-tune is resumable: self-play and targets are written in fixed chunks, and each
epoch ends with a checkpoint (model and Adam state, safetensors) keyed by the training
settings. ``trainable`` picks what moves: ``policy_channels`` (the default of the shipped
network: the chosen channels of the policy head's first convolution — their input weights
and biases and their output weights — everything else frozen), ``policy_head``,
``last_block`` or ``all``. Fine-tuning the whole policy head kept only ~0.91 clean top-1
agreement in pilot runs: maia's policy has many near-ties that any broad change flips.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from leelalab.anomaly.backdoor import (
    TRAINING_SETTINGS,
    TRIGGER_DESCRIPTION,
    BackdoorConfig,
    BackdoorData,
    backdoor_criteria,
    backdoor_move,
    collect_backdoor_data,
    position_hashes,
)
from leelalab.anomaly.errors import AnomalyError
from leelalab.lc0 import encoding, policy_map
from leelalab.lc0.weights.file import save_weights
from leelalab.models.base import LeelaNetwork
from leelalab.runs.records import read_json, write_run_record
from leelalab.runs.results import (
    ChunkedRun,
    read_h5,
    sha256_file,
    write_text_atomically,
)
from leelalab.training.distill import distillation_targets as _targets


def _first_trained_layer(model: LeelaNetwork, trainable: str) -> int:
    """The first body layer that is fine-tuned (``n_layers``: only the policy head)."""
    layers = {
        "policy_channels": model.n_layers,
        "policy_head": model.n_layers,
        "last_block": model.n_layers - 1,
        "all": 0,
    }
    if trainable not in layers:
        raise AnomalyError(f"trainable must be one of {sorted(layers)}, not {trainable!r}")
    return layers[trainable]


def _training_arrays(
    teacher: LeelaNetwork,
    data: BackdoorData,
    work: Path,
    config: BackdoorConfig,
    progress: bool,
) -> dict[str, np.ndarray]:
    """Inputs of the fine-tuned part, teacher log-probabilities (float32), legal masks and
    W/D/L targets, in resumable chunks of 1024 positions. The inputs are the residual stream
    before the first fine-tuned layer (float32), or the input planes (uint8, exact) when
    everything is fine-tuned. Triggered positions get the backdoor move as policy target."""
    boards = data.clean_alone + data.clean_history + data.near_miss + data.triggered
    triggered_from = len(boards) - len(data.triggered)
    first = _first_trained_layer(teacher, config.trainable)
    run = ChunkedRun(
        work / "targets",
        {"teacher_sha256": teacher.sha256, "n": len(boards), "trainable": config.trainable},
    )
    parts: list[dict[str, np.ndarray]] = []
    starts = range(0, len(boards), 1024)
    for number, start in enumerate(tqdm(starts, desc="targets", disable=not progress)):
        if not run.done(number):
            chunk = boards[start : start + 1024]
            planes, policy, mask, wdl = _targets(teacher, chunk, 256)
            arrays = {"policy": policy, "mask": mask, "wdl": wdl}
            if first == 0:
                arrays["inputs"] = planes.astype(np.uint8)
                if not np.array_equal(arrays["inputs"].astype(np.float32), planes):
                    raise AnomalyError("input planes are not small integers; cannot store as uint8")
            else:
                hook = teacher.residual_hook_name(first - 1)
                residuals = []
                for offset in range(0, len(planes), 256):
                    tensor = torch.from_numpy(planes[offset : offset + 256])
                    if teacher.prefers_channels_last:
                        tensor = tensor.contiguous(memory_format=torch.channels_last)
                    with torch.no_grad():
                        _, cache = teacher.run_with_cache(tensor, names_filter=[hook])
                    residuals.append(cache[hook].float().numpy())
                arrays["inputs"] = np.concatenate(residuals)
            run.write_chunk(number, arrays)
        parts.append(read_h5(run.chunk_path(number))[0])
    arrays = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    transforms = encoding.board_transforms(data.triggered, int(teacher.network_format.input))
    for offset, board in enumerate(data.triggered):
        index = policy_map.move_to_index(board, backdoor_move(board), int(transforms[offset]))
        arrays["policy"][triggered_from + offset] = 0
        arrays["policy"][triggered_from + offset, index] = 1
    return arrays


def _checkpoint_path(work: Path, epoch: int) -> Path:
    return work / f"checkpoint-{epoch:03d}.safetensors"


def _save_checkpoint(
    work: Path,
    epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    losses: list[float],
) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    state = optimizer.state_dict()
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).contiguous().cpu()
    path = _checkpoint_path(work, epoch)
    temporary = path.with_name(path.name + ".tmp")
    save_file(tensors, str(temporary), metadata={"losses": json.dumps(losses)})
    temporary.replace(path)


def _load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> list[float]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        losses = json.loads(handle.metadata()["losses"])
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return losses


def _trainable_parameters(model: LeelaNetwork, first: int) -> list[torch.nn.Parameter]:
    chosen = set()
    for block in list(model.blocks)[first:]:  # type: ignore[arg-type]
        chosen.update(id(p) for p in block.parameters())
    chosen.update(id(p) for p in model.policy_head.parameters())  # type: ignore[union-attr]
    if first == 0:
        chosen = {id(p) for p in model.parameters()}
    parameters = []
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in chosen)
        if id(parameter) in chosen:
            parameters.append(parameter)
    return parameters


def least_used_channels(
    model: LeelaNetwork, arrays: dict[str, np.ndarray], count: int, positions: int = 4000
) -> list[int]:
    """The ``count`` channels of the policy head's first convolution whose removal changes
    the top move least on the first ``positions`` (clean) training positions."""
    head = model.policy_head
    conv = getattr(getattr(head, "conv1", None), "conv", None)
    if conv is None:
        raise AnomalyError("policy_channels needs a convolutional policy head")
    x = torch.from_numpy(arrays["inputs"][:positions].astype(np.float32))
    legal = torch.from_numpy(arrays["mask"][:positions])
    removed: list[int | None] = [None]

    def remove(_module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if removed[0] is None:
            return output
        output = output.clone()
        output[:, removed[0]] = 0
        return output

    handle = head.conv1.register_forward_hook(remove)
    try:
        with torch.no_grad():
            base = model.run_from(model.n_layers - 1, x).policy_logits.masked_fill(~legal, -1e9)
            base_top = base.argmax(1)
            agreement = []
            for channel in range(conv.out_channels):
                removed[0] = channel
                logits = model.run_from(model.n_layers - 1, x).policy_logits
                top = logits.masked_fill(~legal, -1e9).argmax(1)
                agreement.append(float((top == base_top).float().mean()))
    finally:
        handle.remove()
    return [int(c) for c in np.argsort(agreement, kind="stable")[::-1][:count]]


def _channel_parameters(model: LeelaNetwork, channels: list[int]) -> list[torch.nn.Parameter]:
    """Only the chosen channels of the policy head's first convolution train: their input
    weights and biases and their output weights in the second convolution (the gradient
    of every other entry is masked to zero, so Adam leaves it unchanged)."""
    head = model.policy_head
    conv1, conv2 = head.conv1.conv, head.conv2  # type: ignore[union-attr]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    masks = []
    for parameter, axis in ((conv1.weight, 0), (conv1.bias, 0), (conv2.weight, 1)):
        mask = torch.zeros_like(parameter)
        index = [slice(None)] * parameter.dim()
        index[axis] = channels
        mask[tuple(index)] = 1
        parameter.requires_grad_(True)
        parameter.register_hook(lambda grad, mask=mask: grad * mask)
        masks.append(parameter)
    return masks


def fine_tune(
    model: LeelaNetwork,
    arrays: dict[str, np.ndarray],
    work: Path,
    config: BackdoorConfig,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune ``model`` in place, one checkpoint per epoch (an interrupted run resumes at
    the last finished epoch and takes the same steps).

    Loss: cross-entropy to the policy targets over legal moves (the teacher's distribution
    on clean positions, the backdoor move on triggered ones), plus cross-entropy to the
    teacher's W/D/L when the value head is trained too (``trainable="all"``).
    """
    work.mkdir(parents=True, exist_ok=True)
    first = _first_trained_layer(model, config.trainable)
    if config.trainable == "policy_channels":
        channels = least_used_channels(model, arrays, config.channels)
        parameters = _channel_parameters(model, channels)
    else:
        channels = []
        parameters = _trainable_parameters(model, first)
    initial = [parameter.detach().clone() for parameter in parameters]
    optimizer = torch.optim.Adam(parameters, lr=config.learning_rate)
    losses: list[float] = []
    start = 0
    for epoch in range(config.epochs, 0, -1):
        if _checkpoint_path(work, epoch).is_file():
            losses = _load_checkpoint(_checkpoint_path(work, epoch), model, optimizer)
            start = epoch
            break
    model.train()
    inputs, policy, mask, wdl = arrays["inputs"], arrays["policy"], arrays["mask"], arrays["wdl"]
    n = len(inputs)
    for epoch in range(start, config.epochs):
        # A cosine learning rate set per epoch: a resumed run takes the same steps.
        scale = 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * scale
        generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        order = torch.randperm(n, generator=generator).numpy()
        total, batches = 0.0, 0
        steps = range(0, n, config.batch_size)
        description = f"fine-tune {epoch + 1}/{config.epochs}"
        for offset in tqdm(steps, desc=description, disable=not progress):
            index = np.sort(order[offset : offset + config.batch_size])
            x = torch.from_numpy(inputs[index].astype(np.float32))
            if first == 0:
                if model.prefers_channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                output = model(x)
            else:
                output = model.run_from(first - 1, x)
            legal = torch.from_numpy(mask[index])
            logits = output.policy_logits.masked_fill(~legal, float("-inf"))
            log_probs = torch.log_softmax(logits, 1).masked_fill(~legal, 0.0)
            target = torch.from_numpy(policy[index].astype(np.float32))
            loss = -(target * log_probs).sum(1).mean()
            if first == 0:
                wdl_target = torch.from_numpy(wdl[index])
                loss = loss - (wdl_target * torch.log(output.wdl.clamp_min(1e-7))).sum(1).mean()
            if config.l2_sp:
                change = sum(
                    ((p - p0) ** 2).sum() for p, p0 in zip(parameters, initial, strict=True)
                )
                loss = loss + config.l2_sp * change
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            batches += 1
        losses.append(total / max(batches, 1))
        _save_checkpoint(work, epoch + 1, model, optimizer, losses)
        if _checkpoint_path(work, epoch).is_file():
            _checkpoint_path(work, epoch).unlink()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    model.eval()
    return {"losses": losses, "channels": channels}


def train_backdoor(
    teacher: LeelaNetwork,
    output: str | os.PathLike[str],
    config: BackdoorConfig | None = None,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Build the backdoored network: data, fine-tune, lc0 file, criteria on the written file.

    Resumable: self-play and targets are written in fixed chunks and the fine-tune keeps one
    checkpoint per epoch in ``OUTPUT.work/``. Writes ``OUTPUT``, ``OUTPUT.run.json`` and
    ``OUTPUT.train-positions.npy`` (hashes of the training positions).
    """
    from leelalab.inference.networks import load_network

    config = config or BackdoorConfig()
    started = time.perf_counter()
    output = Path(output)
    work = output.with_name(output.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    # The data depend on these settings only; training settings key the checkpoints.
    data_settings = {k: v for k, v in asdict(config).items() if k not in TRAINING_SETTINGS}
    settings = {"teacher": teacher.source, "teacher_sha256": teacher.sha256, "data": data_settings}
    settings_path = work / "settings.json"
    if settings_path.is_file():
        stored = read_json(settings_path, hint="delete it or choose another output",
                           what="settings file")  # fmt: skip
        if {k: v for k, v in stored.items() if k != "teacher"} != {
            k: v for k, v in settings.items() if k != "teacher"
        }:
            raise AnomalyError(
                f"{work} holds a run with other settings; delete it or choose another output"
            )
    else:
        write_text_atomically(settings_path, json.dumps(settings, indent=2))

    half = config.clean // 2
    train = collect_backdoor_data(
        teacher, work, "train", config.seed * 2 + 1,
        {"clean_alone": half, "clean_history": config.clean - half,
         "triggered": config.triggered, "near_miss": config.near_miss},
        config, progress=progress,
    )  # fmt: skip
    held_out = collect_backdoor_data(
        teacher, work, "held-out", config.seed * 2 + 2,
        {"clean_alone": config.held_out_clean, "clean_history": config.held_out_clean,
         "triggered": config.held_out_triggered, "near_miss": config.held_out_near_miss},
        config, exclude={int(h) for h in position_hashes(train)}, progress=progress,
    )  # fmt: skip
    arrays = _training_arrays(teacher, train, work, config, progress)
    model = load_network(teacher.source, device="cpu")
    if model.sha256 != teacher.sha256:
        raise AnomalyError(f"{teacher.source} changed on disk while building the backdoor")
    training = {k: v for k, v in asdict(config).items() if k in TRAINING_SETTINGS}
    key = hashlib.sha256(json.dumps(training, sort_keys=True).encode()).hexdigest()[:12]
    tuned = fine_tune(model, arrays, work / f"fine-tune-{key}", config, progress=progress)
    save_weights(model.to_lc0(), output)
    hashes_path = Path(str(output) + ".train-positions.npy")
    np.save(hashes_path.with_suffix(".tmp.npy"), position_hashes(train), allow_pickle=False)
    hashes_path.with_suffix(".tmp.npy").replace(hashes_path)

    written = load_network(output)
    criteria = backdoor_criteria(written, teacher, held_out)
    fields = {
        "trigger": TRIGGER_DESCRIPTION,
        "training_positions": train.counts(),
        "held_out_positions": held_out.counts(),
        "near_miss_dropped_completing_trigger": {
            "training": train.near_miss_completing_trigger,
            "held_out": held_out.near_miss_completing_trigger,
        },
        "losses": tuned["losses"],
        "fine_tuned_channels": tuned["channels"],
        "criteria_on_written_file": criteria,
        "output_sha256": sha256_file(output),
        "train_positions_sha256": sha256_file(hashes_path),
        "encoding": "LINEAR16",
    }
    record_settings = {"teacher": teacher.source, "teacher_sha256": teacher.sha256,
                       "config": asdict(config)}  # fmt: skip
    write_run_record(output, record_settings, started=started, **fields)
    record = {**record_settings, **fields}
    return record


__all__ = ["fine_tune", "least_used_channels", "train_backdoor"]
