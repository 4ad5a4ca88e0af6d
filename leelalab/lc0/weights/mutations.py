"""Deterministic corruptions of lc0 network files, for robustness tests.

:func:`mutations` turns one good network file into a stream of damaged copies, spread over
the ways files go wrong in practice and the ways an attacker would try: flipped bits,
truncations, absurd field values (layer encodings, LINEAR16 ranges, header enums), deleted
sub-messages, duplicated and garbage fields, huge length prefixes, gzip bombs, files that
are not networks at all, and empty files. ``tests/lc0/weights/test_fuzz.py`` and
``scripts/fuzz_weights.py`` feed them to the loader and check that every one either loads
(and evaluates to finite numbers) or fails with one clear :mod:`leelalab.errors` error.

Field-level mutations edit the decoded message tree and re-encode it, so the damage is
exactly the one named (the rest of the file stays valid protobuf); byte-level ones do not
care about structure. Every case is a pure function of ``(file, seed, index)``.
"""

from __future__ import annotations

import copy
import gzip
import math
import random
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from leelalab.lc0.weights import schema
from leelalab.lc0.weights.protobuf import (
    _LENGTH_DELIMITED,
    _WIRE_TYPE,
    Field,
    Schema,
    _encode_value,
    _encode_varint,
    _read_varint,
    _skip,
    decode,
)

EXTRA = "__extra__"
"""Key of raw bytes appended to a message of the tree (after its encoded fields)."""

FIELD_FAMILIES = (
    "layer_encoding",
    "layer_range",
    "header_enum",
    "delete_submessage",
    "duplicate_field",
    "garbage_field",
    "huge_length",
    "resize_layer",
    "swap_layers",
)
BYTE_FAMILIES = ("bit_flip", "byte_overwrite", "truncate", "gzip_damage")
FILE_FAMILIES = ("gzip_bomb", "not_a_network", "empty")
FAMILIES = FIELD_FAMILIES + BYTE_FAMILIES + FILE_FAMILIES

_ENCODING_VALUES = (0, 2, 3, 4, 5, 6, 99, 2**31, 2**64 - 1)
_RANGE_VALUES = (
    math.nan,
    math.inf,
    -math.inf,
    1e30,
    -1e30,
    3.4e38,
    -3.4e38,
    1e-30,
    0.0,
    65535.0,
)
_ENUM_VALUES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 132, 133, 134, 255, 1000, 2**32)
_HUGE_LENGTHS = (2**31, 2**32 + 5, 2**40, 2**63, 2**64 - 1)


@dataclass(frozen=True)
class Mutation:
    """One damaged file: its bytes, the suffix to store it under, and what was done."""

    family: str
    detail: str
    data: bytes
    suffix: str
    """``".pb.gz"`` or ``".pb"`` (the loader sniffs gzip by its magic, not by the name)."""


class Original:
    """The good file, decoded once (mutations start from copies of it)."""

    def __init__(self, file_bytes: bytes) -> None:
        self.file_bytes = file_bytes
        self.data = gzip.decompress(file_bytes) if file_bytes[:2] == b"\x1f\x8b" else file_bytes
        self.tree = _owned(decode(self.data, schema.NET))
        self.structure = _structure_ranges(memoryview(self.data), schema.NET, 0)

    def fresh_tree(self) -> dict[str, Any]:
        return copy.deepcopy(self.tree)


def _structure_ranges(view: memoryview, message_schema: Schema, offset: int) -> list[range]:
    """Byte ranges of everything but the payloads of bytes/string fields: keys, lengths,
    numbers. Most of a file is layer payload, so uniform bit flips rarely hit these."""
    ranges: list[range] = []
    pos = 0
    while pos < len(view):
        start = pos
        key, pos = _read_varint(view, pos)
        number, wire_type = key >> 3, key & 7
        field = message_schema.get(number)
        if wire_type == _LENGTH_DELIMITED:
            length, pos = _read_varint(view, pos)
            ranges.append(range(offset + start, offset + pos))
            if field is not None and field.message is not None:
                body = view[pos : pos + length]
                ranges.extend(_structure_ranges(body, field.message, offset + pos))
            pos += length
        else:
            pos = _skip(view, pos, wire_type)
            ranges.append(range(offset + start, offset + pos))
    return ranges


def _owned(node: Any) -> Any:
    """The decoded tree with ``bytes`` instead of views into the source buffer."""
    if isinstance(node, dict):
        return {key: _owned(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_owned(value) for value in node]
    if isinstance(node, memoryview):
        return bytes(node)
    return node


def encode_tree(message: dict[str, Any], message_schema: Schema) -> bytes:
    """Encode a (mutated) tree in its own key order, with each message's ``EXTRA`` bytes."""
    by_name = {field.name: (number, field) for number, field in message_schema.items()}
    parts: list[bytes] = []
    for key, value in message.items():
        if key == EXTRA:
            continue
        number, field = by_name[key]
        for item in value if field.repeated else [value]:
            parts.append(_encode_field(number, field, item))
    parts.append(message.get(EXTRA, b""))
    return b"".join(parts)


def _encode_field(number: int, field: Field, value: Any) -> bytes:
    if field.kind == "message":
        assert field.message is not None
        body = encode_tree(value, field.message)
        return _encode_varint((number << 3) | _LENGTH_DELIMITED) + _encode_varint(len(body)) + body
    return _encode_varint((number << 3) | _WIRE_TYPE[field.kind]) + _encode_value(value, field)


# --- walking the tree ------------------------------------------------------------------------


@dataclass
class _Node:
    """A message of the tree with its schema and dotted path."""

    message: dict[str, Any]
    schema: Schema
    path: str


def _messages(tree: dict[str, Any]) -> list[_Node]:
    nodes: list[_Node] = []

    def walk(message: dict[str, Any], message_schema: Schema, path: str) -> None:
        nodes.append(_Node(message, message_schema, path))
        by_name = {field.name: field for field in message_schema.values()}
        for key, value in message.items():
            field = by_name.get(key)
            if field is None or field.message is None:
                continue
            items = value if field.repeated else [value]
            for index, item in enumerate(items):
                suffix = f"{key}.{index}" if field.repeated else key
                walk(item, field.message, f"{path}.{suffix}" if path else suffix)

    walk(tree, schema.NET, "")
    return nodes


def _layers(tree: dict[str, Any]) -> list[_Node]:
    return [node for node in _messages(tree) if node.schema is schema.LAYER]


def _header(tree: dict[str, Any]) -> dict[str, Any]:
    return tree.setdefault("format", {}).setdefault("network_format", {})


# --- the families ----------------------------------------------------------------------------


def _field_mutation(source: Original, family: str, rng: random.Random) -> tuple[str, bytes]:
    tree = source.fresh_tree()
    layers = _layers(tree)
    if family == "layer_encoding":
        layer = rng.choice(layers)
        value = rng.choice(_ENCODING_VALUES)
        layer.message["encoding"] = value
        detail = f"{layer.path}.encoding = {value}"
    elif family == "layer_range":
        layer = rng.choice(layers)
        layer.message.pop("encoding", None)  # LINEAR16, whose range is min_val/max_val
        keys = rng.choice((("min_val",), ("max_val",), ("min_val", "max_val")))
        values = [rng.choice(_RANGE_VALUES) for _ in keys]
        for key, value in zip(keys, values, strict=True):
            layer.message[key] = value
        detail = f"{layer.path}: " + ", ".join(
            f"{k} = {v}" for k, v in zip(keys, values, strict=True)
        )
    elif family == "header_enum":
        choice = rng.random()
        if choice < 0.1:
            tree.get("format", {}).pop("network_format", None)
            detail = "format.network_format deleted"
        else:
            name = rng.choice([field.name for field in schema.NETWORK_FORMAT.values()])
            if choice < 0.25:
                _header(tree).pop(name, None)
                detail = f"network_format.{name} deleted"
            else:
                value = rng.choice(_ENUM_VALUES)
                _header(tree)[name] = value
                detail = f"network_format.{name} = {value}"
    elif family == "delete_submessage":
        node = rng.choice([n for n in _messages(tree) if any(k != EXTRA for k in n.message)])
        key = rng.choice([k for k in node.message if k != EXTRA])
        value = node.message[key]
        if isinstance(value, list) and value and rng.random() < 0.5:
            index = rng.randrange(len(value))
            del value[index]
            detail = f"{node.path or '<root>'}.{key}.{index} deleted"
        else:
            del node.message[key]
            detail = f"{node.path or '<root>'}.{key} deleted"
    elif family == "duplicate_field":
        node = rng.choice([n for n in _messages(tree) if any(k != EXTRA for k in n.message)])
        key = rng.choice([k for k in node.message if k != EXTRA])
        number, field = next((n, f) for n, f in node.schema.items() if f.name == key)
        value = node.message[key]
        item = rng.choice(value) if field.repeated and value else value
        if field.repeated and not value:
            return "nothing to duplicate", encode_tree(tree, schema.NET)
        node.message[EXTRA] = node.message.get(EXTRA, b"") + _encode_field(number, field, item)
        detail = f"{node.path or '<root>'}.{key} duplicated"
    elif family == "garbage_field":
        node = rng.choice(_messages(tree))
        garbage = _garbage_field(rng)
        node.message[EXTRA] = node.message.get(EXTRA, b"") + garbage
        detail = f"{len(garbage)} garbage bytes ({garbage[:6].hex()}...) in {node.path or '<root>'}"
    elif family == "huge_length":
        node = rng.choice(_messages(tree))
        number = rng.choice([*node.schema, 15, 100, 2**20])
        length = rng.choice(_HUGE_LENGTHS)
        raw = _encode_varint((number << 3) | _LENGTH_DELIMITED) + _encode_varint(length)
        node.message[EXTRA] = node.message.get(EXTRA, b"") + raw + b"\x00" * rng.randrange(16)
        detail = f"field {number} of {node.path or '<root>'} announces {length:,} bytes"
    elif family == "resize_layer":
        layer = rng.choice([node for node in layers if node.message.get("params")])
        params = layer.message["params"]
        if rng.random() < 0.5:
            size = rng.randrange(len(params))
            layer.message["params"] = params[:size]
        else:
            size = len(params) + rng.choice((1, 2, 4, 64, 2 * len(params)))
            layer.message["params"] = params + rng.randbytes(size - len(params))
        detail = f"{layer.path}.params resized {len(params)} -> {size} bytes"
    elif family == "swap_layers":
        first, second = rng.sample([node for node in layers if node.message.get("params")], 2)
        first.message["params"], second.message["params"] = (
            second.message["params"],
            first.message["params"],
        )
        detail = f"{first.path} <-> {second.path}"
    else:  # pragma: no cover - guarded by mutations()
        raise ValueError(family)
    return detail, encode_tree(tree, schema.NET)


def _garbage_field(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 65))
    if kind == 1:
        return b"\x00" * rng.randrange(1, 9)  # field number 0
    if kind == 2:
        number = rng.randrange(1, 40)
        return _encode_varint((number << 3) | rng.choice((3, 4, 6, 7))) + rng.randbytes(4)
    if kind == 3:
        return b"\xff" * rng.randrange(10, 16)  # a varint that never ends / overflows
    if kind == 4:
        number = rng.randrange(1, 50)
        wire = rng.choice((0, 1, 2, 5))
        payload = {0: b"\x96\x01", 1: bytes(8), 2: b"\x03abc", 5: bytes(4)}[wire]
        return _encode_varint((number << 3) | wire) + payload
    # a key that is cut off right after it
    return _encode_varint((rng.randrange(1, 50) << 3) | rng.choice((0, 1, 2, 5)))


def _byte_mutation(source: Original, family: str, rng: random.Random) -> tuple[str, bytes, bool]:
    """``(detail, bytes, already_compressed)``."""
    data = bytearray(source.data)
    # Half of the cases aim at the structure (keys, lengths, numbers) rather than payloads.
    structural = rng.random() < 0.5
    where = "structure" if structural else "anywhere"

    def position() -> int:
        if structural:
            return rng.choice(rng.choice(source.structure))
        return rng.randrange(len(data))

    if family == "bit_flip":
        flips = rng.choice((1, 2, 4, 8, 32))
        positions = sorted(position() * 8 + rng.randrange(8) for _ in range(flips))
        for bit in positions:
            data[bit // 8] ^= 1 << (bit % 8)
        return (
            f"{flips} bit(s) flipped ({where}), first at byte {positions[0] // 8}",
            bytes(data),
            False,
        )
    if family == "byte_overwrite":
        start = position()
        length = rng.randrange(1, 17)
        fill = rng.choice((b"\x00", b"\xff", None))
        new = fill * length if fill is not None else rng.randbytes(length)
        data[start : start + length] = new[: len(data) - start]
        return f"{length} bytes overwritten at {start} ({where})", bytes(data), False
    if family == "truncate":
        cut = rng.choice((rng.randrange(1, 16), rng.randrange(len(data))))
        return f"cut to {cut} of {len(data)} bytes", bytes(data[:cut]), False
    # gzip_damage: the compressed bytes themselves
    compressed = bytearray(_gzip(bytes(source.data)))
    if rng.random() < 0.5:
        cut = rng.randrange(1, len(compressed))
        return f"gzip cut to {cut} of {len(compressed)} bytes", bytes(compressed[:cut]), True
    flips = rng.choice((1, 2, 8))
    for _ in range(flips):
        bit = rng.randrange(len(compressed) * 8)
        compressed[bit // 8] ^= 1 << (bit % 8)
    return f"{flips} bit(s) of the gzip stream flipped", bytes(compressed), True


@lru_cache(maxsize=8)
def _zeros_gzip(megabytes: int, prefix: bytes = b"") -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    parts = [compressor.compress(prefix)]
    parts.extend(compressor.compress(block) for _ in range(megabytes))
    parts.append(compressor.flush())
    return b"".join(parts)


@lru_cache(maxsize=8)
def _pattern_gzip(pattern: bytes, megabytes: int, prefix: bytes = b"") -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = pattern * ((1 << 20) // len(pattern))
    parts = [compressor.compress(prefix)]
    parts.extend(compressor.compress(block) for _ in range(megabytes))
    parts.append(compressor.flush())
    return b"".join(parts)


def _file_mutation(
    source: Original, family: str, rng: random.Random, bomb_megabytes: int
) -> tuple[str, bytes, str]:
    """``(detail, file bytes, suffix)``."""
    if family == "gzip_bomb":
        magic = _encode_varint((1 << 3) | 5) + (0x1C0).to_bytes(4, "little")
        kind = rng.randrange(6)
        if kind == 0:
            return f"gzip of {bomb_megabytes} MB of zeros", _zeros_gzip(bomb_megabytes), ".pb.gz"
        if kind == 1:
            # A valid start (magic), then a weights message announcing far more than follows.
            length = bomb_megabytes << 20
            prefix = magic + b"\x52" + _encode_varint(length)
            return (
                f"magic + weights of {bomb_megabytes} MB of zeros",
                _zeros_gzip(bomb_megabytes, prefix),
                ".pb.gz",
            )
        if kind == 2:
            return (
                f"the good file + {bomb_megabytes} MB of zeros",
                _zeros_gzip(bomb_megabytes, source.data),
                ".pb.gz",
            )
        if kind == 3:
            # Valid wire data: millions of tiny unknown fields (field 6, varint 0).
            return (
                f"{bomb_megabytes} MB of tiny unknown fields",
                _pattern_gzip(b"\x30\x00", bomb_megabytes, magic),
                ".pb.gz",
            )
        if kind == 4:
            # A bytes field (the license string) announcing 3 GiB.
            prefix = magic + b"\x12" + _encode_varint(3 << 30)
            return "a 3 GiB license string", _zeros_gzip(4, prefix), ".pb.gz"
        # A layer of zeros too big for any network: valid structure up to the size limit.
        prefix = magic + b"\x52" + _encode_varint((bomb_megabytes << 20) + 16)
        prefix += b"\x0a" + _encode_varint((bomb_megabytes << 20) + 8)  # weights.input
        prefix += b"\x0a" + _encode_varint(bomb_megabytes << 20)  # input.weights (Layer)
        prefix += b"\x1a" + _encode_varint((bomb_megabytes << 20) - 8)  # Layer.params
        return (
            f"a {bomb_megabytes} MB layer of zeros",
            _zeros_gzip(bomb_megabytes, prefix),
            ".pb.gz",
        )
    if family == "not_a_network":
        options: Sequence[tuple[str, bytes]] = (
            ("random bytes", rng.randbytes(rng.randrange(1, 4096))),
            ("gzip magic + random bytes", b"\x1f\x8b" + rng.randbytes(rng.randrange(0, 512))),
            ("gzip of random bytes", _gzip(rng.randbytes(rng.randrange(1, 4096)))),
            ("text", b"this is not a network\n" * rng.randrange(1, 50)),
            ("JSON", b'{"fen": "8/8/8/8/8/8/8/8 w - - 0 1", "moves": []}\n'),
            ("PNG header", b"\x89PNG\r\n\x1a\n" + rng.randbytes(64)),
            ("zip header", b"PK\x03\x04" + rng.randbytes(64)),
            ("legacy text weights", b"2\n0.1 0.2 0.3\n"),
            ("gzip of text", _gzip(b"hello, I am not a network\n")),
            ("ONNX-ish protobuf", b"\x08\x07\x12\x04test" + rng.randbytes(32)),
        )
        detail, data = rng.choice(options)
        return detail, data, rng.choice((".pb.gz", ".pb"))
    # empty
    options = (
        ("empty file", b""),
        ("gzip of nothing", _gzip(b"")),
        ("one zero byte", b"\x00"),
        ("gzip of one zero byte", _gzip(b"\x00")),
        ("gzip magic only", b"\x1f\x8b"),
        ("magic only", _encode_varint((1 << 3) | 5) + (0x1C0).to_bytes(4, "little")),
    )
    detail, data = rng.choice(options)
    return detail, data, rng.choice((".pb.gz", ".pb"))


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


def mutate(
    original: Original | bytes, family: str, rng: random.Random, *, bomb_megabytes: int = 200
) -> Mutation:
    """One mutation of ``family`` (see :data:`FAMILIES`) of a network file's bytes."""
    if not isinstance(original, Original):
        original = Original(original)
    if family in FIELD_FAMILIES:
        detail, data = _field_mutation(original, family, rng)
        if rng.random() < 0.5:
            return Mutation(family, detail, data, ".pb")
        return Mutation(family, detail, _gzip(data), ".pb.gz")
    if family in BYTE_FAMILIES:
        detail, data, compressed = _byte_mutation(original, family, rng)
        if compressed:
            return Mutation(family, detail, data, ".pb.gz")
        if rng.random() < 0.5:
            return Mutation(family, detail, data, ".pb")
        return Mutation(family, detail, _gzip(data), ".pb.gz")
    if family in FILE_FAMILIES:
        detail, data, suffix = _file_mutation(original, family, rng, bomb_megabytes)
        return Mutation(family, detail, data, suffix)
    raise ValueError(f"unknown mutation family {family!r}; known: {', '.join(FAMILIES)}")


def mutation(
    original: Original | bytes,
    index: int,
    *,
    seed: int = 0,
    families: Sequence[str] = FAMILIES,
    bomb_megabytes: int = 200,
) -> Mutation:
    """Case ``index`` of :func:`mutations` (a pure function of the file, seed and index)."""
    family = families[index % len(families)]
    rng = random.Random(f"{seed}-{index}")
    return mutate(original, family, rng, bomb_megabytes=bomb_megabytes)


def mutations(
    file_bytes: bytes,
    count: int,
    *,
    seed: int = 0,
    families: Sequence[str] = FAMILIES,
    bomb_megabytes: int = 200,
) -> Iterator[Mutation]:
    """``count`` mutations of a network file, cycling through ``families``."""
    original = Original(file_bytes)
    for index in range(count):
        yield mutation(original, index, seed=seed, families=families, bomb_megabytes=bomb_megabytes)
