"""leelalab's safetensors network files: lossless, no pickle.

The file holds every lc0 layer (as produced by ``network.to_lc0()``) as a float32 tensor keyed
by its dotted lc0 path (``"encoder.3.mha.q_w"``), and the header (``NetworkFormat``) plus
integer fields as JSON metadata, so it rebuilds the same native module with
:func:`load_safetensors_network`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leelalab.errors import CorruptWeightsError, NonFiniteWeightsError, WeightsFileNotFoundError
from leelalab.lc0.weights.file import Lc0Weights, NetworkFormat, check_network_format
from leelalab.models import LeelaNetwork, build_network

FORMAT_KEY = "leelalab.network_format"
INTEGERS_KEY = "leelalab.integer_fields"


def _flatten(
    node: Any, prefix: str, tensors: dict[str, torch.Tensor], integers: dict[str, int]
) -> None:
    if isinstance(node, np.ndarray):
        tensors[prefix] = torch.from_numpy(np.ascontiguousarray(node, dtype=np.float32))
    elif isinstance(node, dict):
        for key, value in node.items():
            _flatten(value, f"{prefix}.{key}" if prefix else key, tensors, integers)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _flatten(value, f"{prefix}.{index}", tensors, integers)
    elif isinstance(node, int):
        integers[prefix] = node


def _insert(tree: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node: Any = tree
    for part, following in zip(parts[:-1], parts[1:], strict=True):
        key: Any = int(part) if isinstance(node, list) else part
        if isinstance(node, list):
            while len(node) <= key:
                node.append({})
        elif key not in node:
            node[key] = [] if following.isdigit() else {}
        node = node[key]
    node[parts[-1]] = value


def save_safetensors(network: LeelaNetwork, path: str | os.PathLike[str]) -> Path:
    from safetensors.torch import save_file

    weights = network.to_lc0()
    tensors: dict[str, torch.Tensor] = {}
    integers: dict[str, int] = {}
    _flatten(weights.weights, "", tensors, integers)
    metadata = {
        FORMAT_KEY: json.dumps(weights.format.to_message()),
        INTEGERS_KEY: json.dumps(integers),
    }
    save_file(tensors, str(path), metadata=metadata)
    return Path(path)


def load_safetensors_network(path: str | os.PathLike[str]) -> LeelaNetwork:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsFileNotFoundError(f"{path}: no such safetensors file")
    try:
        with safe_open(str(path), framework="np") as handle:
            metadata = handle.metadata() or {}
            arrays = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as error:  # safetensors raises its own error types for garbage
        raise CorruptWeightsError(f"{path}: not a valid safetensors file ({error})") from None
    if FORMAT_KEY not in metadata:
        raise CorruptWeightsError(f"{path}: not a leelalab network (no {FORMAT_KEY} metadata)")
    tree: dict[str, Any] = {}

    # Numeric order of list indices, so that "encoder.10" comes after "encoder.9".
    def order(key: str) -> list[Any]:
        return [(0, int(part)) if part.isdigit() else (1, part) for part in key.split(".")]

    try:
        for key in sorted(arrays, key=order):
            _insert(tree, key, arrays[key].astype(np.float32).reshape(-1))
        for key, value in json.loads(metadata.get(INTEGERS_KEY, "{}")).items():
            _insert(tree, key, int(value))
        network_format = NetworkFormat.from_message(json.loads(metadata[FORMAT_KEY]))
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as error:
        raise CorruptWeightsError(
            f"{path}: malformed leelalab metadata or keys ({error})"
        ) from None
    check_network_format(network_format)
    weights = Lc0Weights(format=network_format, weights=tree, source=str(path))
    for name, values in weights.layers():
        if not np.isfinite(values).all():
            raise NonFiniteWeightsError(f"{path}: layer '{name}' holds NaN or infinite values")
    network = build_network(weights)
    network.source = str(path)
    return network
