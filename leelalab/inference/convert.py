"""Converting networks between lc0 ``.pb.gz``/``.pb``, ONNX and safetensors, by file suffix."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from leelalab.errors import LeelaLabError
from leelalab.inference.networks import load_network
from leelalab.inference.onnx import export_onnx
from leelalab.inference.safetensors_io import save_safetensors
from leelalab.lc0.weights.enums import Encoding
from leelalab.lc0.weights.file import save_weights


def convert(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    input_format: int = 1,
    encoding: Encoding = Encoding.LINEAR16,
) -> Path:
    """Convert between ``.pb.gz``/``.pb``, ``.onnx`` and ``.safetensors`` by file suffix.

    Args:
        encoding: layer encoding of ``.pb.gz`` outputs. LINEAR16 (16-bit quantisation, read
            by every lc0) is lossy; FLOAT32 is exact but needs lc0 >= 0.33, so such files are
            marked with that minimum version and older lc0 refuses them cleanly.
    """
    target = Path(target)
    network = load_network(source, input_format=input_format).to(
        memory_format=torch.contiguous_format
    )
    name = target.name
    if name.endswith(".onnx"):
        return export_onnx(network, target)
    if name.endswith(".safetensors"):
        return save_safetensors(network, target)
    if name.endswith(".pb.gz") or name.endswith(".pb"):
        min_version = None if encoding == Encoding.LINEAR16 else (0, 33, 0)
        return save_weights(network.to_lc0(), target, encoding=encoding, min_version=min_version)
    raise LeelaLabError(f"{target}: unknown output format (use .pb.gz, .pb, .onnx or .safetensors)")
