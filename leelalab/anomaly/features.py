"""Features of a task's positions, extracted once per (network, task) and shared by every
detector: residual-stream activations per square, the network's outputs, and the logit lens.

:func:`extract_features` runs the network over the task's positions in fixed chunks, each
written atomically through :class:`leelalab.runs.results.ChunkedRun` (an interrupted run
resumes at the first missing chunk and gives the same numbers), then copies the chunks one at
a time into one HDF5 file, so RAM stays bounded whatever the number of positions.

File layout (``format = "leelalab.anomaly-features/1"``)::

    activations/<hook>      float16|float32 [N, 64, d]  residual stream, network's square frame
    outputs/policy_logits   float32 [N, 1858]           raw policy head output
    outputs/legal           uint8 [N, 233]              legal-move mask, np.packbits over 1858
    outputs/wdl             float32 [N, 3]
    lens/kl                 float32 [N, L]              KL(final policy || lens policy at hook)

Attributes: ``settings`` (JSON: network and its sha256, task and the sha256 of its
positions, hooks, dtype, ...), ``hooks`` and ``lens_hooks`` (JSON lists). Row ``i`` is the
task's position ``i``.

The *logit lens* applies the output heads to the residual stream after an earlier layer
(``net.run_from(net.n_layers - 1, residual)``); its policy is compared, over the legal moves,
with the final one.

:class:`FeatureStore` reads a file and streams blocks of rows from disk; it is probing's
activation store (:class:`~leelalab.probing.store.RowStore`) with the outputs and lens
columns, and :class:`FeatureView` (a split, which detectors consume) its labelled row view
(:class:`~leelalab.probing.store.RowView`) with the reference networks' outputs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from leelalab.anomaly.errors import AnomalyError
from leelalab.anomaly.positions import Task
from leelalab.lc0 import policy_map
from leelalab.models.base import LeelaNetwork
from leelalab.models.batch import PositionBatch, legal_kl
from leelalab.probing.store import LENS_COLUMN, RowStore, RowView
from leelalab.runs.experiment import Settings, setting
from leelalab.runs.records import write_run_record
from leelalab.runs.results import (
    ChunkedRun,
    same_settings,
    sha256_file,
)

FEATURES_FORMAT = "leelalab.anomaly-features/1"
PACKED_MOVES = (policy_map.NUM_MOVES + 7) // 8
DTYPES = {"float16": np.float16, "float32": np.float32}


def residual_hooks(network: LeelaNetwork) -> list[str]:
    """The residual stream after the input layer and after every body layer."""
    return [network.residual_hook_name(layer) for layer in range(-1, network.n_layers)]


HEAD_HOOKS = ("policy_head.hook_hidden", "value_head.hook_hidden")
"""The heads' hidden layers, kept beside the residual stream when they are per square: a
change confined to a head (a backdoor fine-tuned there) shows only there."""


def default_hooks(network: LeelaNetwork) -> list[str]:
    """The residual stream after every layer, then the heads' per-square hidden layers."""
    hooks = residual_hooks(network)
    heads = [hook for hook in HEAD_HOOKS if hook in network.hook_names]
    if heads:
        planes = torch.zeros((1, 112, 8, 8), dtype=network.dtype, device=network.device)
        with torch.no_grad():
            _, cache = network.run_with_cache(planes, names_filter=heads)
        hooks += [h for h in heads if cache[h].dim() == 3 and cache[h].shape[1] == 64]
    return hooks


def short_layer(hook: str) -> str:
    """``blocks.3.hook_resid_post`` -> ``block 3``, ``input.hook_out`` -> ``input``,
    ``policy_head.hook_hidden`` -> ``policy head``; output-level scores keep their name."""
    parts = hook.split(".")
    if parts[0] == "blocks" and len(parts) > 1 and parts[1].isdigit():
        return f"block {parts[1]}"
    if parts[0] in ("input", "embedding"):
        return "input"
    if parts[0].endswith("_head") and parts[-1] == "hook_hidden":
        return parts[0].replace("_", " ")
    return hook


def layer_order(hook: str) -> tuple[int, str]:
    """Sort key: input, blocks in order, head layers, then anything else."""
    label = short_layer(hook)
    if label == "input":
        return (-1, hook)
    if label.startswith("block "):
        return (int(label.split()[1]), hook)
    if label.endswith(" head"):
        return (10_000 + HEAD_HOOKS.index(hook) if hook in HEAD_HOOKS else 10_500, hook)
    return (20_000, hook)


def task_sha256(task: Task) -> str:
    return sha256_file(task.directory / "positions.jsonl")


class FeatureWriter:
    """Writes a feature file row block by row block (used by the extraction's merge and to
    build synthetic stores in tests)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        n: int,
        widths: Mapping[str, int],
        *,
        lens_hooks: Sequence[str] = (),
        dtype: str = "float16",
        outputs: bool = True,
        settings: Mapping[str, Any] = {},
    ) -> None:
        self.path = Path(path)
        self.temporary = self.path.with_name(self.path.name + ".tmp")
        self.handle = h5py.File(self.temporary, "w")
        chunk = max(1, min(64, n))
        for hook, width in widths.items():
            self.handle.create_dataset(
                f"activations/{hook}", (n, 64, width), DTYPES[dtype], chunks=(chunk, 64, width)
            )
        if outputs:
            self.handle.create_dataset(
                "outputs/policy_logits",
                (n, policy_map.NUM_MOVES),
                np.float32,
                chunks=(chunk, policy_map.NUM_MOVES),
            )
            self.handle.create_dataset("outputs/legal", (n, PACKED_MOVES), np.uint8)
            self.handle.create_dataset("outputs/wdl", (n, 3), np.float32)
        if lens_hooks:
            self.handle.create_dataset("lens/kl", (n, len(lens_hooks)), np.float32)
        self.handle.attrs["format"] = FEATURES_FORMAT
        self.handle.attrs["hooks"] = json.dumps(list(widths))
        self.handle.attrs["lens_hooks"] = json.dumps(list(lens_hooks))
        self.handle.attrs["settings"] = json.dumps(dict(settings))
        self.handle.attrs["n"] = n

    def write(self, start: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Rows ``start:start+len`` of the named datasets (``activations/<hook>``, ...)."""
        for name, values in arrays.items():
            self.handle[name][start : start + len(values)] = values

    def close(self) -> Path:
        self.handle.close()
        self.temporary.replace(self.path)
        return self.path


def write_features(
    path: str | os.PathLike[str],
    activations: Mapping[str, np.ndarray],
    *,
    policy_logits: np.ndarray | None = None,
    legal: np.ndarray | None = None,
    wdl: np.ndarray | None = None,
    lens_kl: np.ndarray | None = None,
    lens_hooks: Sequence[str] = (),
    dtype: str = "float32",
    settings: Mapping[str, Any] = {},
) -> Path:
    """A feature file from in-memory arrays (synthetic features, tests)."""
    n = len(next(iter(activations.values())))
    writer = FeatureWriter(
        path,
        n,
        {hook: values.shape[2] for hook, values in activations.items()},
        lens_hooks=lens_hooks,
        dtype=dtype,
        outputs=policy_logits is not None,
        settings=settings,
    )
    arrays: dict[str, np.ndarray] = {f"activations/{h}": v for h, v in activations.items()}
    if policy_logits is not None:
        if legal is None or wdl is None:
            raise AnomalyError("policy_logits need legal masks and W/D/L")
        arrays.update(
            {
                "outputs/policy_logits": policy_logits,
                "outputs/legal": np.packbits(legal, axis=1),
                "outputs/wdl": wdl,
            }
        )
    if lens_kl is not None:
        arrays["lens/kl"] = lens_kl
    writer.write(0, arrays)
    return writer.close()


def _compute_chunk(
    network: LeelaNetwork,
    task: Task,
    rows: Sequence[int],
    hooks: list[str],
    lens_hooks: list[str],
    dtype: type,
    batch_size: int,
) -> dict[str, np.ndarray]:
    input_format = int(network.network_format.input)
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(rows), batch_size):
        positions = PositionBatch.encode(
            task.boards(rows[start : start + batch_size]), input_format
        )
        planes = torch.from_numpy(positions.planes).to(network.device, network.dtype)
        if network.prefers_channels_last:
            planes = planes.contiguous(memory_format=torch.channels_last)
        legal = positions.mask()
        with torch.no_grad():
            output, cache = network.run_with_cache(planes, names_filter=hooks)
            final = positions.log_probs(output.policy_logits.float().cpu())
            kls = []
            if lens_hooks:
                # Every lens layer in one call of the heads (one large batch).
                stacked = torch.cat([cache[hook] for hook in lens_hooks])
                lens = network.run_from(network.n_layers - 1, stacked).policy_logits.float().cpu()
                for number in range(len(lens_hooks)):
                    part = lens[number * len(positions) : (number + 1) * len(positions)]
                    # Clamped: a score of 0 for an unchanged policy, never a rounding −1e-9.
                    kls.append(legal_kl(final, positions.log_probs(part), legal).clamp_min(0.0))
        batch = {
            "policy_logits": output.policy_logits.float().cpu().numpy(),
            "legal": np.packbits(legal.numpy(), axis=1),
            "wdl": output.wdl.float().cpu().numpy(),
        }
        if kls:
            batch["lens_kl"] = torch.stack(kls, 1).numpy()
        for number, hook in enumerate(hooks):
            values = cache[hook]
            if values.dim() != 3 or values.shape[1] != 64:
                raise AnomalyError(
                    f"hook {hook!r} gives shape {tuple(values.shape)}; features are (batch, 64, d)"
                )
            batch[f"activations_{number}"] = values.float().cpu().numpy().astype(dtype)
        for key, value in batch.items():
            parts.setdefault(key, []).append(value)
    return {key: np.concatenate(values) for key, values in parts.items()}


def features_path(task: Task) -> Path:
    return task.directory / "features.h5"


@dataclasses.dataclass(frozen=True)
class FeatureSettings(Settings):
    """What :func:`extract_features` keeps and how it computes it."""

    hooks: tuple[str, ...] | None = setting(
        None,
        "per-square hooks to keep (default: the residual stream after every layer and the "
        "heads' hidden layers)",
    )
    lens: bool = setting(True, "compute the logit-lens KL at every hook but the last layer's")
    dtype: str = setting(
        "float16",
        "storage type of the activations (float16 halves the disk; statistics are "
        "accumulated in float64 from it)",
        choices=tuple(DTYPES),
    )
    chunk_size: int = setting(512, "positions per resumable chunk", minimum=1)
    batch_size: int = setting(128, "positions per network forward", minimum=1)


def extract_features(
    network: LeelaNetwork,
    task: Task,
    settings: FeatureSettings = FeatureSettings(),
    *,
    output: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Path:
    """Extract (or reuse) the features of every position of ``task`` under ``network``
    into ``output`` (default ``TASK/features.h5``)."""
    started = time.perf_counter()
    lens, dtype = settings.lens, settings.dtype
    chunk_size, batch_size = settings.chunk_size, settings.batch_size
    hooks = list(settings.hooks) if settings.hooks is not None else default_hooks(network)
    unknown = [hook for hook in hooks if hook not in network.hook_names]
    if unknown:
        raise AnomalyError(f"no hook point {unknown} in {network.source}")
    # The lens reads the residual stream of every layer but the last (where it is the output).
    residual = set(residual_hooks(network)[:-1])
    lens_hooks = [hook for hook in hooks if lens and hook in residual]
    path = Path(output) if output is not None else features_path(task)
    settings = {
        "format": FEATURES_FORMAT,
        "network": network.source,
        "network_sha256": network.sha256,
        "input_format": int(network.network_format.input),
        "task": str(task.directory.resolve()),
        "task_sha256": task_sha256(task),
        "hooks": hooks,
        "lens_hooks": lens_hooks,
        "dtype": dtype,
        "chunk_size": chunk_size,
        "positions": len(task.positions),
    }
    if path.is_file():
        stored = FeatureStore(path).settings
        if same_settings({**stored, "task": None}, {**settings, "task": None}):
            return path
        raise AnomalyError(
            f"{path} holds features of other settings (network {stored.get('network')}, "
            f"sha256 {str(stored.get('network_sha256'))[:12]}); delete it to re-extract"
        )
    work = path.with_name(path.name + ".chunks")
    run = ChunkedRun(work, {k: v for k, v in settings.items() if k != "task"})
    rows = list(range(len(task.positions)))
    starts = list(range(0, len(rows), chunk_size))
    computed = 0
    bar = tqdm(total=len(rows), desc="features", unit="pos", disable=not progress)
    np_dtype = DTYPES[dtype]
    for number, start in enumerate(starts):
        chunk = rows[start : start + chunk_size]
        if not run.done(number):
            arrays = _compute_chunk(network, task, chunk, hooks, lens_hooks, np_dtype, batch_size)
            run.write_chunk(number, arrays)
            computed += len(chunk)
        bar.update(len(chunk))
    bar.close()

    # Copy the chunks into one file, one chunk in memory at a time.
    widths: dict[str, int] = {}
    with h5py.File(run.chunk_path(0), "r") as first:
        for number, hook in enumerate(hooks):
            widths[hook] = int(first[f"activations_{number}"].shape[2])
    writer = FeatureWriter(
        path, len(rows), widths, lens_hooks=lens_hooks, dtype=dtype, settings=settings
    )
    try:
        for number, start in enumerate(starts):
            with h5py.File(run.chunk_path(number), "r") as chunk_file:
                arrays = {
                    f"activations/{hook}": chunk_file[f"activations_{i}"][()]
                    for i, hook in enumerate(hooks)
                }
                arrays["outputs/policy_logits"] = chunk_file["policy_logits"][()]
                arrays["outputs/legal"] = chunk_file["legal"][()]
                arrays["outputs/wdl"] = chunk_file["wdl"][()]
                if lens_hooks:
                    arrays["lens/kl"] = chunk_file["lens_kl"][()]
            writer.write(start, arrays)
    finally:
        writer.close()
    write_run_record(path, settings, started=started, positions_computed_this_session=computed)
    run.discard()
    return path


class FeatureStore(RowStore):
    """Read access to a feature file: the activation store of probing
    (:class:`~leelalab.probing.store.RowStore`) with the outputs and lens columns."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, FEATURES_FORMAT, error=AnomalyError, what="feature file")

    @property
    def n(self) -> int:
        return self.n_rows

    def read(self, dataset: str, rows: np.ndarray) -> np.ndarray:
        """All sorted ``rows`` of a small column (outputs, lens) at once."""
        return self.read_column(dataset, rows)


class FeatureView(RowView):
    """Some rows of a feature store (a split), with optional labels and reference outputs.

    Detectors read only through a view: ``iter_activations(hook)`` streams
    ``(positions, float32 [b, 64, d])`` blocks; ``lens_kl()`` and ``reference(name)``
    return per-position arrays. Labels are there for the supervised skyline and for
    evaluation; unsupervised detectors never read them.
    """

    store: FeatureStore

    def __init__(
        self,
        store: FeatureStore,
        rows: np.ndarray,
        *,
        labels: np.ndarray | None = None,
        references: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        memory_budget_bytes: int = 64 * 2**20,
    ) -> None:
        super().__init__(store, rows, labels=labels, memory_budget_bytes=memory_budget_bytes)
        self.references = references or {}

    def lens_kl(self) -> dict[str, np.ndarray]:
        if not self.store.lens_hooks:
            raise AnomalyError(f"{self.store.path} was extracted without the logit lens")
        values = self.column(LENS_COLUMN).astype(np.float64)
        return {hook: values[:, i] for i, hook in enumerate(self.store.lens_hooks)}

    def reference(self, name: str) -> Mapping[str, np.ndarray]:
        if name not in self.references:
            raise AnomalyError(f"no outputs of the reference network {name!r} were given")
        return {key: np.asarray(value)[self.rows] for key, value in self.references[name].items()}

    def subset(self, positions: np.ndarray) -> FeatureView:
        """The view of some of this view's positions (indices into it)."""
        positions = np.asarray(positions, dtype=np.int64)
        return FeatureView(
            self.store,
            self.rows[positions],
            labels=None if self.labels is None else self.labels[positions],
            references=self.references,
            memory_budget_bytes=self.memory_budget_bytes,
        )


__all__ = [
    "FEATURES_FORMAT",
    "FeatureSettings",
    "FeatureStore",
    "FeatureView",
    "FeatureWriter",
    "default_hooks",
    "extract_features",
    "features_path",
    "layer_order",
    "residual_hooks",
    "short_layer",
    "task_sha256",
    "write_features",
]
