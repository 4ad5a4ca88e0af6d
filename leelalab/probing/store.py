"""A disk-backed activation store: hook activations of a puzzle dataset in chunked HDF5.

``cache_activations`` runs a network on the clean puzzle positions of a dataset directory
(``leelalab puzzles filter``) and writes the chosen hook activations, each
``[puzzle, 64, d]`` in the network's square frame, plus per-puzzle metadata (ids, the
source and target squares of moves 1 … 7 in the network's frame, flags, a puzzle type for
control tasks). RAM stays bounded whatever the number of puzzles: work proceeds in parts of
``part_size`` puzzles, each written atomically to ``ACTS.h5.parts/`` (so an interrupted run,
even ``kill -9``, resumes at the first missing part and produces the same numbers), and the
parts are then copied, one at a time, into the final file. ``ACTS.h5.run.json`` records
inputs, hashes, versions and settings.

:class:`ActivationStore` reads a store and streams minibatches from disk.

File layout (``format = "leelalab.activations/1"``)::

    activations/<hook name>   float16|float32 [N, 64, d], chunked by puzzles
    puzzle_ids                str [N]
    move_squares              int8 [N, 7, 2]   (source, target) of moves 1..7, -1 = absent
    puzzle_type               int16 [N]        (is_mate, piece type of the 1st move) code
    is_mate, selected, different_targets       bool [N]
    n_moves                   int16 [N]
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from leelalab.errors import LeelaLabError
from leelalab.inference.jobs import NetworkJob, NetworkSpec
from leelalab.lc0 import encoding
from leelalab.models.base import LeelaNetwork
from leelalab.probing.settings import CacheSettings
from leelalab.puzzles.dataset import DatasetPuzzle, iter_dataset
from leelalab.runs.executor import LOCAL, Executor, map_chunks
from leelalab.runs.records import write_run_record
from leelalab.runs.results import (
    RunDirectory,
    same_settings,
    settings_difference,
    sha256_file,
)

STORE_FORMAT = "leelalab.activations/1"
DTYPES = {"float16": np.float16, "float32": np.float32}


class ActivationStoreError(LeelaLabError):
    """An activation store is missing, foreign, incomplete or asked for something it lacks."""


def resolve_hooks(network: LeelaNetwork, patterns: Sequence[str]) -> list[str]:
    """Hook names matching ``patterns`` (exact names or globs such as
    ``blocks.*.hook_resid_post``), in forward order."""
    return match_hooks(network.hook_names, patterns, "see `leelalab info` or `net.hook_names`")


def match_hooks(names: Sequence[str], patterns: Sequence[str], hint: str) -> list[str]:
    """The ``names`` matching ``patterns`` (exact names or globs), in their order; a pattern
    that matches nothing is one :class:`ActivationStoreError` line ending in ``hint``."""
    chosen = [name for name in names if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    if unmatched:
        raise ActivationStoreError(f"no hook point matches {unmatched}; {hint}")
    return chosen


def randomized_network(network: LeelaNetwork, seed: int) -> LeelaNetwork:
    """The same architecture with seeded random weights: the random-init probing baseline.

    Every submodule with ``reset_parameters`` (convolutions, linear layers, layer norms) is
    re-initialised with PyTorch's default initialisation under ``torch.manual_seed(seed)``;
    other parameters (e.g. embedding gates) are drawn from N(0, 0.02²) around their default.
    """
    clone = copy.deepcopy(network)
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        handled: set[int] = set()
        for module in clone.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset) and module is not clone:
                reset()
                handled.update(id(p) for p in module.parameters(recurse=False))
        with torch.no_grad():
            for parameter in clone.parameters():
                if id(parameter) not in handled:
                    parameter.add_(torch.randn_like(parameter) * 0.02)
    finally:
        torch.random.set_rng_state(generator_state)
    clone.source = f"{network.source} (random init, seed {seed})"
    clone.sha256 = None
    return clone.eval()


def puzzle_type(puzzle: DatasetPuzzle) -> int:
    """A small integer type for control tasks: mate or not × the 1st move's piece type."""
    move = puzzle.move(1)
    piece = puzzle.clean_board.piece_type_at(move.from_square) if move else None
    return int(puzzle.is_mate) * 7 + (piece or 0)


def _metadata(puzzles: Sequence[DatasetPuzzle], input_format: int) -> dict[str, Any]:
    return {
        "puzzle_ids": np.array([p.id for p in puzzles], dtype=object),
        "move_squares": np.stack(
            [p.move_squares(frame="model", input_format=input_format) for p in puzzles]
        ).astype(np.int8),
        "puzzle_type": np.array([puzzle_type(p) for p in puzzles], dtype=np.int16),
        "is_mate": np.array([p.is_mate for p in puzzles]),
        "selected": np.array([bool(p.record.get("selected")) for p in puzzles]),
        "different_targets": np.array([p.different_targets for p in puzzles]),
        "n_moves": np.array([p.n_moves for p in puzzles], dtype=np.int16),
    }


def _write_metadata(handle: h5py.File, metadata: dict[str, Any]) -> None:
    for key, value in metadata.items():
        if value.dtype == object:
            handle.create_dataset(key, data=value, dtype=h5py.string_dtype())
        else:
            handle.create_dataset(key, data=value)


def _parts(
    dataset: Path, selected_only: bool, limit: int | None, min_moves: int, part_size: int
) -> Iterator[list[DatasetPuzzle]]:
    """The dataset's qualifying puzzles in fixed parts, streamed."""
    part: list[DatasetPuzzle] = []
    for puzzle in iter_dataset(dataset, selected_only=selected_only, limit=limit):
        if puzzle.n_moves < min_moves:
            continue
        part.append(puzzle)
        if len(part) == part_size:
            yield part
            part = []
    if part:
        yield part


def _part_arrays(
    network: LeelaNetwork,
    puzzles: Sequence[DatasetPuzzle],
    hooks: list[str],
    dtype: type,
    batch_size: int,
) -> dict[str, np.ndarray]:
    """One part's metadata and activations (``activations/<hook>``: ``(puzzles, 64, d)``)."""
    fmt = int(network.network_format.input)
    arrays: dict[str, Any] = dict(_metadata(puzzles, fmt))
    batches: dict[str, list[np.ndarray]] = {name: [] for name in hooks}
    for start in range(0, len(puzzles), batch_size):
        chunk = puzzles[start : start + batch_size]
        planes = encoding.encode_boards([p.clean_board for p in chunk], fmt, "lc0")
        tensor = torch.from_numpy(planes).to(network.device, network.dtype)
        with torch.no_grad():
            _, cache = network.run_with_cache(tensor, names_filter=hooks)
        for name in hooks:
            values = cache[name]
            if values.dim() != 3 or values.shape[1] != 64:
                raise ActivationStoreError(
                    f"hook {name!r} gives shape {tuple(values.shape)}; the store holds "
                    "(batch, 64, d) square activations (e.g. blocks.*.hook_resid_post)"
                )
            batches[name].append(values.float().cpu().numpy().astype(dtype))
    for name in hooks:
        arrays[f"activations/{name}"] = np.concatenate(batches[name])
    return arrays


def _write_part(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write one part atomically: metadata first, then each hook's activations."""
    temporary = path.with_name(path.name + ".tmp")
    with h5py.File(temporary, "w") as handle:
        _write_metadata(handle, {k: v for k, v in arrays.items() if "/" not in k})
        for key, value in arrays.items():
            if "/" in key:
                handle.create_dataset(key, data=value)
    temporary.replace(path)


class CachingJob(NetworkJob):
    """One part of :func:`cache_activations`: the hooks' activations on its puzzles."""

    def __init__(
        self,
        network: LeelaNetwork,
        hooks: list[str],
        dtype: str,
        batch_size: int,
        random_init: int | None,
        original: LeelaNetwork | None = None,
    ) -> None:
        super().__init__(network=network)
        if original is not None:
            # Workers load the file of the network the random copy was made from.
            self.specs["network"] = NetworkSpec.of(original)
        self.hooks = hooks
        self.dtype = dtype
        self.batch_size = batch_size
        self.random_init = random_init

    def setup(self) -> LeelaNetwork:
        if self._networks is not None:
            return self._networks["network"]
        spec = self.specs["network"]
        assert spec is not None
        # A worker rebuilds the random-init copy from the file and the seed, as the driver did.
        network = spec.load()
        if self.random_init is not None:
            network = randomized_network(network, self.random_init)
        return network

    def compute(self, network: LeelaNetwork, part: list[DatasetPuzzle]) -> dict[str, np.ndarray]:
        return _part_arrays(network, part, self.hooks, DTYPES[self.dtype], self.batch_size)

    def describe_chunk(self, number: int, payload: list[DatasetPuzzle]) -> str:
        return f"part {number} (puzzles {payload[0].id}…{payload[-1].id})"


def cache_activations(
    network: LeelaNetwork,
    dataset: str | os.PathLike[str],
    hooks: Sequence[str],
    output: str | os.PathLike[str],
    settings: CacheSettings | None = None,
    *,
    progress: bool = True,
    overwrite: bool = False,
    executor: Executor = LOCAL,
    **options: Any,
) -> Path:
    """Cache ``hooks`` activations of ``network`` on a dataset's clean puzzle positions.

    The dataset and hooks are checked before anything is written. A complete store at
    ``output`` with the same settings is returned as it is; one with other settings is
    refused unless ``overwrite`` (which replaces it); interrupted parts with the same
    settings resume (:class:`~leelalab.runs.results.RunDirectory` rules).

    Args:
        hooks: hook names or glob patterns.
        settings: dtype (``"float16"``, half the disk and ample for probes, or
            ``"float32"``), batch and part sizes (a part is the unit of resuming and of RAM
            use while copying), limit, selected-only, minimum moves after the opponent's
            first, and ``random_init`` (cache a randomly initialised copy of the network,
            this seed) — :class:`~leelalab.probing.settings.CacheSettings`; ``options``
            override its fields by name.
        overwrite: replace a store (or interrupted parts) made with other settings.
    """
    settings = replace(settings or CacheSettings(), **options)
    dtype, limit, min_moves = settings.dtype, settings.limit, settings.min_moves
    selected_only, part_size, random_init = (
        settings.selected_only,
        settings.part_size,
        settings.random_init,
    )
    if dtype not in DTYPES:
        raise ActivationStoreError(f"dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
    started = time.perf_counter()
    output = Path(output)
    dataset = Path(dataset)
    # The random copy is identified by its seed and the network it copies.
    network_sha256 = network.sha256
    original = network
    if random_init is not None:
        network = randomized_network(network, random_init)
    hook_names = resolve_hooks(network, hooks)
    # A first streaming pass counts the puzzles; nothing is kept in memory.
    total = sum(len(part) for part in _parts(dataset, selected_only, limit, min_moves, part_size))
    if total == 0:
        raise ActivationStoreError(f"{dataset}: no puzzle with at least {min_moves} moves")
    recorded = {
        "format": STORE_FORMAT,
        "dataset": str(dataset.resolve()),
        "dataset_sha256": sha256_file(dataset / "dataset.jsonl"),
        "network": network.source,
        "network_sha256": network_sha256,
        "random_init": random_init,
        "hooks": hook_names,
        "dtype": dtype,
        "limit": limit,
        "selected_only": selected_only,
        "min_moves": min_moves,
        "part_size": part_size,
        "puzzles": total,
    }
    if _existing_store(output, recorded, overwrite):
        return output
    parts_dir = output.with_name(output.name + ".parts")
    run_directory = RunDirectory(
        parts_dir, recorded, overwrite=overwrite, what="interrupted activation caching"
    )
    with run_directory:
        if overwrite:
            output.unlink(missing_ok=True)
            output.with_name(output.name + ".run.json").unlink(missing_ok=True)
        job = CachingJob(network, hook_names, dtype, settings.batch_size, random_init, original)
        computed = _cache_parts(
            job, dataset, output, parts_dir, recorded, total, progress, executor
        )
        write_run_record(output, recorded, started=started, puzzles_computed_this_session=computed)
    run_directory.discard()
    return output


def _existing_store(output: Path, settings: dict[str, Any], overwrite: bool) -> bool:
    """Whether ``output`` is already this store; refuses anything else there (unless
    ``overwrite`` and it is an activation store)."""
    if not output.exists():
        return False
    if not output.is_file():
        raise ActivationStoreError(f"{output} exists and is not a file; choose another --output")
    try:
        with h5py.File(output, "r") as handle:
            stored = (
                json.loads(handle.attrs["settings"])
                if handle.attrs.get("format") == STORE_FORMAT
                else None
            )
    except (OSError, KeyError, ValueError):
        stored = None
    if stored is None:
        raise ActivationStoreError(
            f"{output} exists and is not an activation store; choose another --output"
        )
    if overwrite:
        return False
    if same_settings(stored, settings):
        return True
    differing = ", ".join(settings_difference(stored, settings))
    raise ActivationStoreError(
        f"{output} is an activation store with other settings (differing: {differing}); pass "
        "--overwrite to replace it or use another --output"
    )


def _cache_parts(
    job: CachingJob,
    dataset: Path,
    output: Path,
    parts_dir: Path,
    settings: dict[str, Any],
    total: int,
    progress: bool,
    executor: Executor,
) -> int:
    """Compute the missing parts (on ``executor``), then copy every part into ``output``;
    returns the number of puzzles computed (not found in earlier parts)."""
    selected_only, limit = settings["selected_only"], settings["limit"]
    min_moves, part_size = settings["min_moves"], settings["part_size"]
    hook_names = job.hooks
    bar = tqdm(total=total, desc="caching activations", unit="puzzle", disable=not progress)
    computed = parts = 0

    def pending() -> Iterator[tuple[int, list[DatasetPuzzle]]]:
        nonlocal parts
        for number, part in enumerate(_parts(dataset, selected_only, limit, min_moves, part_size)):
            parts = number + 1
            if (parts_dir / f"part-{number:05d}.h5").exists():
                bar.update(len(part))
            else:
                yield number, part

    def write(number: int, arrays: dict[str, np.ndarray]) -> None:
        nonlocal computed
        _write_part(parts_dir / f"part-{number:05d}.h5", arrays)
        size = len(arrays["puzzle_ids"])
        computed += size
        bar.update(size)

    map_chunks(job, pending(), write, executor)
    bar.close()

    # Copy the parts, one at a time, into one file chunked by puzzles.
    temporary = output.with_name(output.name + ".tmp")
    with h5py.File(temporary, "w") as handle:
        start = 0
        for number in range(parts):
            with h5py.File(parts_dir / f"part-{number:05d}.h5", "r") as part_file:
                size = part_file["puzzle_ids"].shape[0]
                for key, source in _datasets(part_file):
                    if key not in handle:
                        chunks = (min(64, total), *source.shape[1:])
                        handle.create_dataset(
                            key,
                            shape=(total, *source.shape[1:]),
                            dtype=source.dtype,
                            chunks=chunks if source.ndim > 1 else None,
                        )
                    handle[key][start : start + size] = source[()]
                start += size
        handle.attrs["format"] = STORE_FORMAT
        handle.attrs["settings"] = json.dumps(settings)
        handle.attrs["hooks"] = json.dumps(hook_names)
    temporary.replace(output)
    return computed


def _datasets(handle: h5py.File) -> list[tuple[str, h5py.Dataset]]:
    found: list[tuple[str, h5py.Dataset]] = []
    handle.visititems(
        lambda name, item: found.append((name, item)) if isinstance(item, h5py.Dataset) else None
    )
    return found


OUTPUT_COLUMNS = ("outputs/policy_logits", "outputs/legal", "outputs/wdl")
"""Per-row network outputs a store may hold besides activations: raw policy logits
``float32 [N, 1858]``, the legal-move mask ``uint8 [N, 233]`` (np.packbits over 1858) and
W/D/L ``float32 [N, 3]``."""
LENS_COLUMN = "lens/kl"
"""Per-row logit-lens KL ``float32 [N, L]``, one column per ``lens_hooks`` entry."""


class RowStore:
    """Read access to an HDF5 store of per-row columns: ``activations/<hook>``
    ``[N, 64, d]`` and, where present, the network's outputs (:data:`OUTPUT_COLUMNS`) and
    the logit lens (:data:`LENS_COLUMN`). The activation stores of probing and the feature
    files of anomaly detection are both read through it; rows stream from disk in blocks
    bounded by a memory budget.

    ``expect_format`` is the ``format`` attribute the file must carry; ``error`` the error
    class (one line naming the file) and ``what`` the file's name in messages.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        expect_format: str,
        *,
        error: type[LeelaLabError] = ActivationStoreError,
        what: str = "activation store",
    ) -> None:
        self.path = Path(path)
        self.error = error
        if not self.path.is_file():
            raise error(f"{self.path}: no such {what}")
        try:
            with h5py.File(self.path, "r") as handle:
                if handle.attrs.get("format") != expect_format:
                    raise error(f"{self.path}: not a leelalab {what}")
                self.hooks: list[str] = json.loads(handle.attrs["hooks"])
                self.lens_hooks: list[str] = json.loads(handle.attrs.get("lens_hooks", "[]"))
                self.settings: dict[str, Any] = json.loads(handle.attrs["settings"])
                self.widths = {h: int(handle[f"activations/{h}"].shape[2]) for h in self.hooks}
                self.n_rows = int(
                    handle.attrs["n"]
                    if "n" in handle.attrs
                    else handle[f"activations/{self.hooks[0]}"].shape[0]
                )
                self.has_outputs = all(column in handle for column in OUTPUT_COLUMNS)
                self._read_metadata(handle)
        except OSError as failure:
            raise error(f"{self.path}: not a readable HDF5 file ({failure})") from None
        except (KeyError, IndexError, ValueError):
            raise error(f"{self.path}: an incomplete {what} (rebuild it)") from None

    def _read_metadata(self, handle: h5py.File) -> None:
        """Read what a kind of store keeps besides its columns (nothing by default)."""

    def check_hook(self, hook: str) -> None:
        if hook not in self.widths:
            raise self.error(f"{self.path} has no activations for {hook!r}; it holds {self.hooks}")

    def iter_rows(
        self,
        column: str,
        rows: np.ndarray,
        *,
        memory_budget_bytes: int = 64 * 2**20,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(positions in rows, values)`` blocks of ``column`` for the sorted ``rows``.

        Contiguous blocks of the file are read (as many rows as fit the budget) and the
        wanted rows picked from them, so RAM is bounded by the budget.
        """
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (np.any(np.diff(rows) < 0) or rows[0] < 0 or rows[-1] >= self.n_rows):
            raise self.error("rows must be sorted and within the store")
        with h5py.File(self.path, "r") as handle:
            if column not in handle:
                raise self.error(f"{self.path} has no {column!r}")
            data = handle[column]
            row_bytes = int(np.prod(data.shape[1:])) * data.dtype.itemsize
            block = max(1, memory_budget_bytes // max(1, 4 * row_bytes))
            position = 0
            while position < rows.size:
                first = rows[position]
                end = np.searchsorted(rows, first + block, side="left")
                wanted = rows[position:end]
                values = data[first : wanted[-1] + 1]
                yield np.arange(position, end), values[wanted - first]
                position = end

    def read_column(self, column: str, rows: np.ndarray) -> np.ndarray:
        """All sorted ``rows`` of a small column (outputs, lens) at once."""
        parts = [values for _, values in self.iter_rows(column, rows)]
        if not parts:
            with h5py.File(self.path, "r") as handle:
                return np.zeros((0, *handle[column].shape[1:]), handle[column].dtype)
        return np.concatenate(parts)


class RowView:
    """Some rows of a store (a split, a class), sorted, with optional labels.

    ``iter_activations(hook)`` streams ``(positions, float32 [b, 64, d])`` blocks and
    ``column(name)`` reads a per-row column; ``positions`` index the view's rows.
    """

    def __init__(
        self,
        store: RowStore,
        rows: np.ndarray,
        *,
        labels: np.ndarray | None = None,
        memory_budget_bytes: int = 64 * 2**20,
    ) -> None:
        self.store = store
        order = np.argsort(rows, kind="stable")
        self.rows = np.asarray(rows, dtype=np.int64)[order]
        self.labels = None if labels is None else np.asarray(labels, dtype=bool)[order]
        self.memory_budget_bytes = memory_budget_bytes

    def __len__(self) -> int:
        return int(self.rows.size)

    def iter_activations(self, hook: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        self.store.check_hook(hook)
        for positions, values in self.store.iter_rows(
            f"activations/{hook}", self.rows, memory_budget_bytes=self.memory_budget_bytes
        ):
            yield positions, values.astype(np.float32)

    def column(self, name: str) -> np.ndarray:
        return self.store.read_column(name, self.rows)


class ActivationStore(RowStore):
    """Read access to a store written by :func:`cache_activations` (a :class:`RowStore`
    with per-puzzle metadata).

    Example::

        store = ActivationStore("acts.h5")
        for x, rows in store.iter_minibatches("blocks.3.hook_resid_post", train, 64, seed=0):
            ...  # x: float32 tensor (batch, 64, d); rows: the puzzle indices
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, STORE_FORMAT)

    def _read_metadata(self, handle: h5py.File) -> None:
        self.puzzle_ids = np.array(handle["puzzle_ids"].asstr()[()], dtype=object)
        self.move_squares = handle["move_squares"][()].astype(np.int64)
        self.puzzle_type = handle["puzzle_type"][()].astype(np.int64)
        self.flags = {key: handle[key][()] for key in ("is_mate", "selected", "different_targets")}
        self.n_moves = handle["n_moves"][()].astype(np.int64)

    @property
    def n(self) -> int:
        return len(self.puzzle_ids)

    def _check(self, hook: str) -> None:
        self.check_hook(hook)

    def read(self, hook: str, indices: np.ndarray | slice | None = None) -> np.ndarray:
        """``[rows, 64, d]`` float32 activations (rows in the order given)."""
        self._check(hook)
        with h5py.File(self.path, "r") as handle:
            data = handle[f"activations/{hook}"]
            if indices is None or isinstance(indices, slice):
                return data[indices or slice(None)].astype(np.float32)
            indices = np.asarray(indices, dtype=np.int64)
            order = np.argsort(indices)
            values = data[indices[order]] if indices.size else np.zeros((0, 64, data.shape[2]))
            out = np.empty_like(values, dtype=np.float32)
            out[order] = values
            return out

    def iter_minibatches(
        self,
        hook: str,
        indices: np.ndarray,
        batch_size: int,
        *,
        seed: int | None = 0,
        memory_budget_bytes: int = 256 * 2**20,
    ) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        """Stream ``(x, rows)`` minibatches of the puzzles in ``indices`` from disk.

        Reads contiguous blocks of puzzles (as many as fit ``memory_budget_bytes``, counting
        the block as read and its shuffled copy), in a seeded random block order, and
        shuffles rows within each block; ``seed=None`` keeps file order. RAM use is bounded
        by the budget.
        """
        self._check(hook)
        width = self.widths[hook]
        itemsize = np.dtype(self.settings.get("dtype", "float32")).itemsize
        block = max(batch_size, memory_budget_bytes // (64 * width * itemsize * 2))
        wanted = np.zeros(self.n, dtype=bool)
        wanted[np.asarray(indices, dtype=np.int64)] = True
        starts = np.arange(0, self.n, block)
        rng = np.random.default_rng(seed) if seed is not None else None
        if rng is not None:
            starts = rng.permutation(starts)
        with h5py.File(self.path, "r") as handle:
            data = handle[f"activations/{hook}"]
            for start in starts:
                rows = np.nonzero(wanted[start : start + block])[0] + start
                if rows.size == 0:
                    continue
                values = data[start : min(start + block, self.n)][rows - start]
                if rng is not None:
                    order = rng.permutation(rows.size)
                    rows, values = rows[order], values[order]
                for first in range(0, rows.size, batch_size):
                    yield (
                        torch.from_numpy(values[first : first + batch_size].astype(np.float32)),
                        rows[first : first + batch_size],
                    )


__all__ = [
    "LENS_COLUMN",
    "OUTPUT_COLUMNS",
    "ActivationStore",
    "ActivationStoreError",
    "RowStore",
    "RowView",
    "cache_activations",
    "puzzle_type",
    "randomized_network",
    "match_hooks",
    "resolve_hooks",
]
