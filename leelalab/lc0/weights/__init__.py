"""lc0 network files: the format's enums, a reader, a writer and a description."""

from __future__ import annotations

from leelalab.lc0.weights.description import NetworkDescription, describe
from leelalab.lc0.weights.enums import (
    Activation,
    DefaultActivation,
    Encoding,
    InputEmbedding,
    InputFormat,
    MovesLeftFormat,
    NetworkStructure,
    OutputFormat,
    PolicyFormat,
    ValueFormat,
)
from leelalab.lc0.weights.file import (
    Lc0Weights,
    NetworkFormat,
    encode_weights,
    load_weights,
    parse_weights,
    save_weights,
    with_format,
)
from leelalab.lc0.weights.layers import Linear16Formula, decode_layer, encode_layer

__all__ = [
    "Activation",
    "DefaultActivation",
    "Encoding",
    "InputEmbedding",
    "InputFormat",
    "Lc0Weights",
    "Linear16Formula",
    "MovesLeftFormat",
    "NetworkDescription",
    "NetworkFormat",
    "NetworkStructure",
    "OutputFormat",
    "PolicyFormat",
    "ValueFormat",
    "decode_layer",
    "describe",
    "encode_layer",
    "encode_weights",
    "load_weights",
    "parse_weights",
    "save_weights",
    "with_format",
]
