"""A small, schema-driven protobuf (proto2) wire-format codec.

lc0 files are one ``pblczero.Net`` message. We read and write them with this codec rather
than the ``protobuf`` package: it needs no generated code (whose version is coupled to the
protobuf runtime), it can hand out zero-copy ``memoryview`` slices of the large weight blobs,
and the writer is the exact inverse of the reader, which the tests rely on.

A schema maps field numbers to :class:`Field` descriptions. Decoded messages are plain
``dict[str, Any]``; repeated fields are lists; unknown fields are skipped, as protobuf does.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from leelalab.errors import CorruptWeightsError

FieldKind = Literal["uint32", "uint64", "enum", "float", "fixed32", "string", "bytes", "message"]

# Wire types of the protobuf encoding.
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5
_WIRE_TYPE: dict[str, int] = {
    "uint32": _VARINT,
    "uint64": _VARINT,
    "enum": _VARINT,
    "float": _FIXED32,
    "fixed32": _FIXED32,
    "string": _LENGTH_DELIMITED,
    "bytes": _LENGTH_DELIMITED,
    "message": _LENGTH_DELIMITED,
}


@dataclass(frozen=True)
class Field:
    """One field of a message schema."""

    name: str
    kind: FieldKind
    message: Schema | None = None
    """The nested schema, for ``kind == "message"``."""
    repeated: bool = False


Schema = Mapping[int, Field]


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise CorruptWeightsError("truncated protobuf data (varint runs past the end)")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CorruptWeightsError("malformed protobuf data (varint longer than 10 bytes)")


def _skip(buf: memoryview, pos: int, wire_type: int) -> int:
    if wire_type == _VARINT:
        return _read_varint(buf, pos)[1]
    if wire_type == _FIXED64:
        return pos + 8
    if wire_type == _FIXED32:
        return pos + 4
    if wire_type == _LENGTH_DELIMITED:
        length, pos = _read_varint(buf, pos)
        return pos + length
    raise CorruptWeightsError(f"malformed protobuf data (unsupported wire type {wire_type})")


def decode(buf: bytes | memoryview, schema: Schema) -> dict[str, Any]:
    """Decode one message.

    ``bytes`` fields come back as ``memoryview`` slices of ``buf`` (no copy).

    Raises:
        CorruptWeightsError: the data is truncated or not a valid encoding of ``schema``.
    """
    view = memoryview(buf)
    message: dict[str, Any] = {}
    pos, end = 0, len(view)
    while pos < end:
        key, pos = _read_varint(view, pos)
        number, wire_type = key >> 3, key & 7
        field = schema.get(number)
        if field is None:
            pos = _skip(view, pos, wire_type)
            if pos > end:
                raise CorruptWeightsError("truncated protobuf data (unknown field runs past end)")
            continue
        expected = _WIRE_TYPE[field.kind]
        if wire_type == _LENGTH_DELIMITED and expected != _LENGTH_DELIMITED and field.repeated:
            # A packed repeated scalar.
            length, pos = _read_varint(view, pos)
            if pos + length > end:
                raise CorruptWeightsError(f"truncated protobuf data in field '{field.name}'")
            values = message.setdefault(field.name, [])
            values.extend(_decode_packed(view[pos : pos + length], field))
            pos += length
            continue
        if wire_type != expected:
            raise CorruptWeightsError(
                f"malformed protobuf data: field '{field.name}' has wire type {wire_type}, "
                f"expected {expected}"
            )
        value, pos = _decode_value(view, pos, field)
        if pos > end:
            raise CorruptWeightsError(f"truncated protobuf data in field '{field.name}'")
        if field.repeated:
            message.setdefault(field.name, []).append(value)
        elif field.kind == "message" and field.name in message:
            # proto2 merges repeated occurrences of a singular message field.
            message[field.name] = _merge(message[field.name], value)
        else:
            message[field.name] = value
    return message


def _merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = dict(old)
    for key, value in new.items():
        if isinstance(value, list):
            merged[key] = list(merged.get(key, [])) + value
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _decode_value(view: memoryview, pos: int, field: Field) -> tuple[Any, int]:
    kind = field.kind
    if kind in ("uint32", "uint64", "enum"):
        return _read_varint(view, pos)
    if kind in ("float", "fixed32"):
        if pos + 4 > len(view):
            raise CorruptWeightsError(f"truncated protobuf data in field '{field.name}'")
        fmt = "<f" if kind == "float" else "<I"
        return struct.unpack_from(fmt, view, pos)[0], pos + 4
    length, pos = _read_varint(view, pos)
    if pos + length > len(view):
        raise CorruptWeightsError(f"truncated protobuf data in field '{field.name}'")
    chunk = view[pos : pos + length]
    if kind == "bytes":
        return chunk, pos + length
    if kind == "string":
        try:
            return bytes(chunk).decode("utf-8"), pos + length
        except UnicodeDecodeError as error:
            raise CorruptWeightsError(f"field '{field.name}' is not valid UTF-8") from error
    assert field.message is not None
    return decode(chunk, field.message), pos + length


def _decode_packed(view: memoryview, field: Field) -> list[Any]:
    values: list[Any] = []
    pos = 0
    while pos < len(view):
        value, pos = _decode_value(view, pos, field)
        values.append(value)
    return values


def _encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # proto2 encodes negative int32/enums as 10-byte varints
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode(message: Mapping[str, Any], schema: Schema) -> bytes:
    """Encode ``message`` (as produced by :func:`decode`) in field-number order.

    Keys not in ``schema`` are an error, so that a typo cannot silently drop a layer.
    """
    by_name = {field.name: (number, field) for number, field in schema.items()}
    unknown = set(message) - set(by_name)
    if unknown:
        raise KeyError(f"fields not in the schema: {sorted(unknown)}")
    parts: list[bytes] = []
    for number, field in sorted(schema.items()):
        if field.name not in message or message[field.name] is None:
            continue
        value = message[field.name]
        values = value if field.repeated else [value]
        key = _encode_varint((number << 3) | _WIRE_TYPE[field.kind])
        for item in values:
            parts.append(key)
            parts.append(_encode_value(item, field))
    return b"".join(parts)


def _encode_value(value: Any, field: Field) -> bytes:
    kind = field.kind
    if kind in ("uint32", "uint64", "enum"):
        return _encode_varint(int(value))
    if kind == "float":
        return struct.pack("<f", float(value))
    if kind == "fixed32":
        return struct.pack("<I", int(value))
    if kind == "string":
        data = str(value).encode("utf-8")
    elif kind == "bytes":
        data = bytes(value)
    else:
        assert field.message is not None
        data = encode(value, field.message)
    return _encode_varint(len(data)) + data
