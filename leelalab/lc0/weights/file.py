"""Reading and writing lc0 network files (``.pb.gz`` and raw ``.pb``).

A file holds one ``pblczero.Net`` message. :func:`load_weights` returns an
:class:`Lc0Weights`: the typed :class:`NetworkFormat` header (normalised exactly as lc0's
``FixOlderWeightsFile`` does) and the weights as a nested ``dict`` that mirrors lc0's schema,
with every ``Layer`` decoded to a 1-D float32 ``numpy`` array. :func:`save_weights` is the
inverse and is what the tests use to make tiny random networks that lc0 itself can load.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np

from leelalab.errors import (
    CorruptWeightsError,
    UnsupportedNetworkError,
    WeightsError,
    WeightsFileNotFoundError,
    name_source,
)
from leelalab.lc0.weights import schema
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
from leelalab.lc0.weights.layers import (
    Linear16Formula,
    decode_layer,
    encode_layer,
    layer_encoding,
)
from leelalab.lc0.weights.protobuf import Schema, StreamChecker, decode, encode

_GZIP_MAGIC = b"\x1f\x8b"
MAX_NETWORK_BYTES = 2 << 30
"""The default size limit of a decompressed network file (BT4 is ~700 MB): a bound on what a
decompression bomb can cost."""
_READ_CHUNK = 1 << 20
_DECOMPRESS_PIECE = 1 << 20
# Network weights are dense numbers, which gzip hardly shrinks (lc0 files: ~1.1-1.4:1). Past
# 16 MB, a stream that has expanded more than 100:1 is a decompression bomb, not a network.
_RATIO_CHECK_AFTER = 16 << 20
_MAX_RATIO = 100


@dataclass(frozen=True)
class NetworkFormat:
    """The ``NetworkFormat`` header: what the network computes and how to feed it."""

    input: InputFormat = InputFormat.CLASSICAL_112_PLANE
    output: OutputFormat = OutputFormat.UNKNOWN
    network: NetworkStructure = NetworkStructure.UNKNOWN
    policy: PolicyFormat = PolicyFormat.UNKNOWN
    value: ValueFormat = ValueFormat.UNKNOWN
    moves_left: MovesLeftFormat = MovesLeftFormat.NONE
    default_activation: DefaultActivation = DefaultActivation.RELU
    smolgen_activation: Activation = Activation.DEFAULT
    ffn_activation: Activation = Activation.DEFAULT
    input_embedding: InputEmbedding = InputEmbedding.NONE

    @classmethod
    def build(
        cls,
        input_format: int,
        network: NetworkStructure,
        policy: PolicyFormat,
        *,
        wdl: bool,
        moves_left: bool,
        mish: bool,
    ) -> NetworkFormat:
        """The header of a network that a builder makes rather than reads: a WDL or classical
        value head (``output`` and ``value`` agree), a moves-left head or none, and mish or
        relu as the default activation. An attention body's own fields (smolgen and FFN
        activations, input embedding) are set on the result with ``dataclasses.replace``."""
        return cls(
            input=InputFormat(input_format),
            output=OutputFormat.WDL if wdl else OutputFormat.CLASSICAL,
            network=network,
            policy=policy,
            value=ValueFormat.WDL if wdl else ValueFormat.CLASSICAL,
            moves_left=MovesLeftFormat.V1 if moves_left else MovesLeftFormat.NONE,
            default_activation=DefaultActivation.MISH if mish else DefaultActivation.RELU,
        )

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> NetworkFormat:
        values: dict[str, Any] = {}
        for item in fields(cls):
            enum_type = _ENUM_TYPES[item.name]
            raw = message.get(item.name, 0)
            try:
                values[item.name] = enum_type(raw)
            except ValueError:
                raise UnsupportedNetworkError(
                    f"unknown {item.name.replace('_', ' ')} format {raw} in the network header"
                ) from None
        return cls(**values)

    def to_message(self) -> dict[str, int]:
        return {item.name: int(getattr(self, item.name)) for item in fields(self)}


_ENUM_TYPES: dict[str, type[IntEnum]] = {
    "input": InputFormat,
    "output": OutputFormat,
    "network": NetworkStructure,
    "policy": PolicyFormat,
    "value": ValueFormat,
    "moves_left": MovesLeftFormat,
    "default_activation": DefaultActivation,
    "smolgen_activation": Activation,
    "ffn_activation": Activation,
    "input_embedding": InputEmbedding,
}


@dataclass
class Lc0Weights:
    """A decoded lc0 network file.

    ``weights`` mirrors lc0's ``Weights`` message: nested dicts and lists, with each
    ``Layer`` decoded to a 1-D float32 array (absent layers are absent keys).
    """

    format: NetworkFormat
    weights: dict[str, Any] = field(default_factory=dict)
    min_version: tuple[int, int, int] | None = None
    license: str | None = None
    training_params: dict[str, Any] | None = None
    onnx_model: dict[str, Any] | None = None
    weights_encoding: Encoding = Encoding.LINEAR16
    """The file-level ``Format.weights_encoding`` (lc0 decodes by per-layer encoding)."""
    layer_encodings: dict[str, int] = field(default_factory=dict)
    """How many layers of the file use each encoding, e.g. ``{"LINEAR16": 85}``."""
    source: str | None = None
    sha256: str | None = None

    def layers(self) -> Iterator[tuple[str, np.ndarray]]:
        """Every decoded layer, with its dotted path (``"residual.0.conv1.weights"``)."""
        yield from _walk_layers(self.weights, "")

    @property
    def parameter_count(self) -> int:
        """Numbers stored in the file (before lc0's batch-norm folding)."""
        return sum(values.size for _, values in self.layers())

    def describe(self) -> NetworkDescription:
        return describe(self)


def _walk_layers(node: Any, prefix: str) -> Iterator[tuple[str, np.ndarray]]:
    if isinstance(node, np.ndarray):
        yield prefix, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _walk_layers(value, f"{prefix}.{key}" if prefix else key)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk_layers(value, f"{prefix}.{index}")


def _read_network(path: Path, max_bytes: int) -> tuple[bytes | bytearray, str]:
    """The decompressed ``Net`` message of a file, and the SHA-256 of the file as stored.

    gzip files are decompressed in pieces while :class:`StreamChecker` walks the protobuf
    structure, so garbage and decompression bombs fail within the first piece that shows
    them, and nothing grows past ``max_bytes``.
    """
    if not path.exists():
        raise WeightsFileNotFoundError(f"{path}: no such network file")
    if path.is_dir():
        raise WeightsFileNotFoundError(f"{path}: is a directory, not a network file")
    size = path.stat().st_size
    if size == 0:
        raise CorruptWeightsError(f"{path}: the file is empty")
    if size > max_bytes:
        raise CorruptWeightsError(
            f"{path}: {size:,} bytes is more than the {max_bytes:,}-byte limit for a network "
            "file (pass a larger max_bytes if this really is a network)"
        )
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        head = handle.read(_READ_CHUNK)
        if head[:2] != _GZIP_MAGIC:
            data = head + handle.read()
            digest.update(data)
            return data, digest.hexdigest()
        out = bytearray()
        checker = StreamChecker(schema.NET, max_bytes=max_bytes)
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        chunk = head
        read = 0
        trailing = False  # bytes after the last gzip member, ignored as gzip does
        try:
            while chunk:
                digest.update(chunk)
                read += len(chunk)
                pending = b"" if trailing else chunk
                while True:
                    if decompressor.eof:
                        # Concatenated gzip members are one stream (as gzip and lc0 read them).
                        pending = decompressor.unused_data + pending
                        if not pending:
                            break
                        if pending[:2] != _GZIP_MAGIC:
                            trailing = True
                            break
                        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                    if not pending:
                        break
                    piece = decompressor.decompress(pending, _DECOMPRESS_PIECE)
                    pending = decompressor.unconsumed_tail
                    if not piece:
                        continue
                    if len(out) + len(piece) > max_bytes:
                        raise CorruptWeightsError(
                            f"decompresses to more than the {max_bytes:,}-byte limit for a "
                            "network (pass a larger max_bytes if this really is a network)"
                        )
                    out += piece
                    if len(out) == len(piece):
                        _check_not_legacy(out)  # (.txt.gz files are not protobuf at all)
                    _check_structure(checker.feed, out)
                    consumed = read - len(pending)
                    if len(out) > _RATIO_CHECK_AFTER and len(out) > _MAX_RATIO * consumed:
                        raise CorruptWeightsError(
                            f"{len(out):,} bytes decompressed from {consumed:,} (more than "
                            f"{_MAX_RATIO}:1): a decompression bomb, not a network (lc0 "
                            "weights compress about 1.2:1)"
                        )
                chunk = handle.read(_READ_CHUNK)
            if not decompressor.eof:
                raise CorruptWeightsError("truncated gzip data (the file is incomplete)")
            if not out:
                raise CorruptWeightsError("the file is empty once decompressed")
            _check_structure(checker.finish, len(out))
        except zlib.error as error:
            raise CorruptWeightsError(f"{path}: corrupt gzip data ({error})") from None
        except WeightsError as error:
            raise name_source(error, path) from None
    return out, digest.hexdigest()


def _check_not_legacy(data: bytes | bytearray | memoryview) -> None:
    if bytes(data[:2]) in (b"1\n", b"2\n"):
        raise UnsupportedNetworkError(
            f"legacy text weights (version {bytes(data[0:1]).decode()}) are not supported; "
            "convert them with an old lc0 first"
        )


def _check_structure(step: Callable[[Any], None], argument: Any) -> None:
    try:
        step(argument)
    except CorruptWeightsError as error:
        raise CorruptWeightsError(f"not a valid lc0 network file ({error})") from None


def load_weights(
    path: str | os.PathLike[str],
    *,
    linear16: Linear16Formula = "v0.31",
    max_bytes: int = MAX_NETWORK_BYTES,
) -> Lc0Weights:
    """Read an lc0 network file (``.pb.gz`` or uncompressed ``.pb``).

    Args:
        path: the file.
        linear16: the LINEAR16 decoding formula (see :data:`Linear16Formula`).
        max_bytes: the largest (decompressed) network accepted; see :data:`MAX_NETWORK_BYTES`.

    Raises:
        WeightsFileNotFoundError: no such file.
        CorruptWeightsError: truncated, not gzip/protobuf, wrong magic, inconsistent layers,
            too large (:class:`~leelalab.errors.NonFiniteWeightsError`: NaN/inf weights).
        UnsupportedNetworkError: legacy text weights, unknown format enums.

    Every error message starts with the file name.
    """
    path = Path(path)
    data, sha256 = _read_network(path, max_bytes)
    weights = parse_weights(data, source=str(path), linear16=linear16)
    # Hash the file as stored, so it matches `sha256sum` and run.json records.
    weights.sha256 = sha256
    return weights


def parse_weights(
    data: bytes | bytearray | memoryview,
    *,
    source: str = "<bytes>",
    linear16: Linear16Formula = "v0.31",
) -> Lc0Weights:
    """Parse the (decompressed) bytes of a ``Net`` message. See :func:`load_weights`.

    Error messages start with ``source``.
    """
    try:
        return _parse_weights(data, source, linear16)
    except WeightsError as error:
        raise name_source(error, source) from None


def _parse_weights(
    data: bytes | bytearray | memoryview, source: str, linear16: Linear16Formula
) -> Lc0Weights:
    if not len(data):
        raise CorruptWeightsError("the file is empty")
    _check_not_legacy(data)
    try:
        message = decode(data, schema.NET)
    except CorruptWeightsError as error:
        raise CorruptWeightsError(f"not a valid lc0 network file ({error})") from None
    if message.get("magic") != schema.MAGIC:
        raise CorruptWeightsError(
            "not an lc0 network file (bad magic "
            f"{message.get('magic', 'missing')!r}, expected 0x1c0)"
        )
    network_format = _fix_older_format(message)
    check_network_format(network_format)
    counts: Counter[str] = Counter()
    weights = _decode_tree(message.get("weights", {}), schema.WEIGHTS, "", counts, linear16)
    version = message.get("min_version")
    file_format = message.get("format", {})
    try:
        # lc0 never reads the file-level encoding (each layer has its own): kept for show.
        weights_encoding = Encoding(file_format.get("weights_encoding", 0))
    except ValueError:
        weights_encoding = Encoding.UNKNOWN
    onnx_model = message.get("onnx_model")
    if onnx_model is not None:
        onnx_model = {
            k: (bytes(v) if isinstance(v, memoryview) else v) for k, v in onnx_model.items()
        }
    return Lc0Weights(
        format=network_format,
        weights=weights,
        min_version=None
        if version is None
        else (version.get("major", 0), version.get("minor", 0), version.get("patch", 0)),
        license=message.get("license"),
        training_params=message.get("training_params"),
        onnx_model=onnx_model,
        weights_encoding=weights_encoding,
        layer_encodings=dict(counts),
        source=source,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def check_network_format(fmt: NetworkFormat) -> None:
    """Reject headers lc0 could not run, which would otherwise fail later (or print UNKNOWN).

    Raises:
        UnsupportedNetworkError: the input format, network structure, policy or value format
            is 0 (unset).
    """
    for name, value in (
        ("input format", fmt.input),
        ("network structure", fmt.network),
        ("policy format", fmt.policy),
        ("value format", fmt.value),
    ):
        if value == 0:
            raise UnsupportedNetworkError(
                f"the header's {name} is 0 (unset/UNKNOWN); lc0 cannot run such a network"
            )


def _decode_tree(
    node: dict[str, Any],
    node_schema: Schema,
    prefix: str,
    counts: Counter[str],
    linear16: Linear16Formula,
) -> dict[str, Any]:
    fields_by_name = {f.name: f for f in node_schema.values()}
    out: dict[str, Any] = {}
    for key, value in node.items():
        spec = fields_by_name[key]
        path = f"{prefix}.{key}" if prefix else key
        if spec.message is schema.LAYER:
            if spec.repeated:
                raise AssertionError("lc0 has no repeated Layer fields")
            if not value.get("params"):
                continue
            out[key] = decode_layer(value, path, linear16)
            counts[layer_encoding(value, path).name] += 1
        elif spec.message is not None:
            if spec.repeated:
                out[key] = [
                    _decode_tree(item, spec.message, f"{path}.{i}", counts, linear16)
                    for i, item in enumerate(value)
                ]
            else:
                out[key] = _decode_tree(value, spec.message, path, counts, linear16)
        else:
            out[key] = value
    return out


def _fix_older_format(message: dict[str, Any]) -> NetworkFormat:
    """Normalise old headers exactly as lc0's ``FixOlderWeightsFile`` does."""
    raw_format = message.get("format", {}).get("network_format")
    weights = message.get("weights", {})
    if raw_format is None:
        raw = {"input": 1, "output": 1, "network": 3, "value": 1, "policy": 1}
    else:
        raw = dict(raw_format)
        network = raw.get("network", 0)
        if network == NetworkStructure.CLASSICAL:
            raw.update(network=3, value=1, policy=1)
        elif network == NetworkStructure.SE:
            raw.update(network=4, value=1, policy=1)
        elif network == NetworkStructure.SE_WITH_HEADFORMAT and weights.get("encoder"):
            # An attention-body net written with an old protobuf schema.
            raw["network"] = 6
            if weights.get("smolgen_w"):
                raw.update(ffn_activation=Activation.RELU_2, smolgen_activation=Activation.SWISH)
        elif network == NetworkStructure.AB_LEGACY_WITH_MULTIHEADFORMAT:
            raw["network"] = 7
    if raw.get("network") == NetworkStructure.ATTENTIONBODY_WITH_HEADFORMAT:
        if weights.get("policy_heads") and weights.get("value_heads"):
            raw.update(network=7, input_embedding=InputEmbedding.PE_DENSE)
        if "input_embedding" not in raw:
            raw["input_embedding"] = InputEmbedding.PE_MAP
    return NetworkFormat.from_message(raw)


LayerEncodingChoice = Encoding | Callable[[str], Encoding]


def encode_weights(
    weights: Lc0Weights,
    *,
    encoding: LayerEncodingChoice = Encoding.LINEAR16,
    linear16_range: Callable[[str, np.ndarray], tuple[float, float] | None] | None = None,
    min_version: tuple[int, int, int] | None = None,
) -> bytes:
    """Serialise ``weights`` to the bytes of a ``Net`` message (uncompressed).

    Args:
        encoding: the encoding of every layer, or a function of the layer's dotted path.
        linear16_range: optional ``(path, values) -> (min, max)`` for LINEAR16 layers.
        min_version: overrides ``weights.min_version`` (default 0.21.0 for ResNets, which
            every lc0 release accepts).
    """
    choose = encoding if callable(encoding) else (lambda _path, _e=encoding: _e)

    def encode_tree(node: Any, path: str) -> Any:
        if isinstance(node, np.ndarray):
            bounds = linear16_range(path, node) if linear16_range else None
            return encode_layer(node, choose(path), bounds)
        if isinstance(node, dict):
            return {
                key: encode_tree(value, f"{path}.{key}" if path else key)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [encode_tree(value, f"{path}.{i}") for i, value in enumerate(node)]
        return node

    version = min_version or weights.min_version or (0, 21, 0)
    message: dict[str, Any] = {
        "magic": schema.MAGIC,
        "license": weights.license,
        "min_version": dict(zip(("major", "minor", "patch"), version, strict=True)),
        "format": {
            "weights_encoding": int(weights.weights_encoding),
            "network_format": weights.format.to_message(),
        },
        "training_params": weights.training_params,
    }
    if weights.onnx_model is not None:
        message["onnx_model"] = weights.onnx_model
    else:
        message["weights"] = encode_tree(weights.weights, "")
    return encode(message, schema.NET)


def save_weights(
    weights: Lc0Weights,
    path: str | os.PathLike[str],
    *,
    encoding: LayerEncodingChoice = Encoding.LINEAR16,
    linear16_range: Callable[[str, np.ndarray], tuple[float, float] | None] | None = None,
    min_version: tuple[int, int, int] | None = None,
) -> Path:
    """Write ``weights`` as an lc0 network file: gzip unless the name ends in ``.pb``.

    The file is written to a temporary name and renamed, so an interrupted write never
    leaves a truncated network behind.
    """
    path = Path(path)
    data = encode_weights(
        weights, encoding=encoding, linear16_range=linear16_range, min_version=min_version
    )
    if path.suffix != ".pb":
        # mtime=0 makes the file a pure function of the weights (reproducible hashes).
        data = gzip.compress(data, compresslevel=9, mtime=0)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)
    return path


def with_format(weights: Lc0Weights, **changes: Any) -> Lc0Weights:
    """A copy of ``weights`` with some header fields changed (layers are shared)."""
    return replace(weights, format=replace(weights.format, **changes))
