from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pytest

from leelalab.errors import CorruptWeightsError, UnsupportedNetworkError, WeightsFileNotFoundError
from leelalab.lc0.weights import (
    Activation,
    Encoding,
    InputEmbedding,
    InputFormat,
    NetworkFormat,
    NetworkStructure,
    PolicyFormat,
    ValueFormat,
    encode_weights,
    load_weights,
    parse_weights,
    save_weights,
)
from leelalab.lc0.weights.protobuf import encode
from leelalab.lc0.weights.schema import NET
from leelalab.lc0.weights.synthetic import grid_linear16_range, random_resnet_weights


def test_maia_1900_is_described_as_published(maia_path: Path) -> None:
    # Facts about the CSSLab file (6 blocks x 64 filters, SE ratio 8, conv policy, WDL).
    description = load_weights(maia_path).describe()
    assert (description.family, description.blocks, description.filters) == ("se-resnet", 6, 64)
    assert description.se_channels == 8
    assert description.input_format == "CLASSICAL_112_PLANE"
    assert description.policy == "CONVOLUTION"
    assert description.value == "WDL"
    assert description.moves_left == "NONE"
    assert description.min_version == "0.21.0"
    assert description.architecture == "6x64"
    assert "6 blocks x 64 filters" in str(description)


def test_built_header_matches_a_published_file(maia_path: Path) -> None:
    # maia-1900's heads (SE body, conv policy, WDL, no moves-left, relu) give its own header.
    built = NetworkFormat.build(
        1, NetworkStructure.SE_WITH_HEADFORMAT, PolicyFormat.CONVOLUTION,
        wdl=True, moves_left=False, mish=False,
    )  # fmt: skip
    assert built == load_weights(maia_path).format


def test_built_header_other_choices_use_lc0_numbers() -> None:
    # Numbers from lc0's net.proto: OUTPUT_CLASSICAL 1, VALUE_CLASSICAL 1, MOVES_LEFT_V1 1,
    # DEFAULT_ACTIVATION_MISH 1, ACTIVATION_SWISH 7, INPUT_EMBEDDING_PE_DENSE 2;
    # NETWORK_ATTENTIONBODY_WITH_MULTIHEADFORMAT 7, POLICY_ATTENTION 3.
    built = NetworkFormat.build(
        3, NetworkStructure.ATTENTIONBODY_WITH_MULTIHEADFORMAT, PolicyFormat.ATTENTION,
        wdl=False, moves_left=True, mish=True,
    )  # fmt: skip
    built = dataclasses.replace(
        built, ffn_activation=Activation.SWISH, input_embedding=InputEmbedding.PE_DENSE
    )
    assert built.to_message() == {
        "input": 3, "output": 1, "network": 7, "policy": 3, "value": 1, "moves_left": 1,
        "default_activation": 1, "smolgen_activation": 0, "ffn_activation": 7,
        "input_embedding": 2,
    }  # fmt: skip


def test_parameter_count_matches_architecture(maia_path: Path) -> None:
    w = load_weights(maia_path)
    f, se, blocks = 64, 8, 6
    conv = lambda i, o, k: i * o * k * k  # noqa: E731
    bn = 4 * f
    expected = conv(112, f, 3) + bn  # input conv + BN (means, vars, gammas, betas)
    expected += blocks * (2 * (conv(f, f, 3) + bn) + (f * se + se + se * 2 * f + 2 * f))
    expected += conv(f, f, 3) + bn + conv(f, 80, 3) + 80  # policy1 (BN) + policy (bias)
    value_channels = w.weights["value"]["bn_means"].size
    expected += conv(f, value_channels, 1) + 4 * value_channels
    expected += value_channels * 64 * 128 + 128 + 128 * 3 + 3
    assert w.parameter_count == expected


@pytest.mark.parametrize("suffix", [".pb.gz", ".pb"])
def test_save_and_load_round_trip(tmp_path: Path, suffix: str) -> None:
    original = random_resnet_weights(seed=3, grid=True)
    path = save_weights(original, tmp_path / f"net{suffix}", linear16_range=grid_linear16_range)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == (suffix == ".pb.gz")
    loaded = load_weights(path)
    assert loaded.format == original.format
    expected, actual = dict(original.layers()), dict(loaded.layers())
    assert sorted(expected) == sorted(actual)
    for name, values in expected.items():
        np.testing.assert_array_equal(values, actual[name], err_msg=name)


def test_writes_are_reproducible(tmp_path: Path) -> None:
    weights = random_resnet_weights(seed=5)
    a = save_weights(weights, tmp_path / "a.pb.gz").read_bytes()
    b = save_weights(weights, tmp_path / "b.pb.gz").read_bytes()
    assert a == b
    assert load_weights(tmp_path / "a.pb.gz").sha256 == __import__("hashlib").sha256(a).hexdigest()


@pytest.mark.parametrize("encoding", [Encoding.FLOAT16, Encoding.BFLOAT16, Encoding.FLOAT32])
def test_per_layer_encodings_are_honoured(tmp_path: Path, encoding: Encoding) -> None:
    weights = random_resnet_weights(seed=4, grid=True)
    twin = load_weights(
        save_weights(weights, tmp_path / "l16.pb.gz", linear16_range=grid_linear16_range)
    )

    # Mixed file: conv weights in the float encoding, everything else LINEAR16.
    def choose(path: str) -> Encoding:
        return encoding if path.endswith("weights") else Encoding.LINEAR16

    mixed = load_weights(
        save_weights(
            weights, tmp_path / "mixed.pb.gz", encoding=choose, linear16_range=grid_linear16_range
        )
    )
    assert mixed.layer_encodings[encoding.name] > 0
    assert mixed.layer_encodings["LINEAR16"] > 0
    for (name, a), (_, b) in zip(twin.layers(), mixed.layers(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)


def _net_bytes(**fields) -> bytes:
    message = {"magic": 0x1C0, **fields}
    return encode(message, NET)


# Input, policy and value formats of an attention-body header (lc0 does not fill them in).
_HEADS = {"input": 1, "policy": 3, "value": 2}


def test_header_normalisation_follows_lc0() -> None:
    # No network_format at all: classical 112, classical heads.
    fmt = parse_weights(_net_bytes()).format
    assert (fmt.input, fmt.network, fmt.policy, fmt.value) == (1, 3, 1, 1)
    # NETWORK_CLASSICAL / NETWORK_SE get head formats.
    fmt = parse_weights(_net_bytes(format={"network_format": {"network": 1, "input": 1}})).format
    assert (fmt.network, fmt.policy, fmt.value) == (3, 1, 1)
    fmt = parse_weights(_net_bytes(format={"network_format": {"network": 2, "input": 2}})).format
    assert (fmt.network, fmt.policy, fmt.value, fmt.input) == (4, 1, 1, 2)
    # An attention body written with an old protobuf (network 4 with encoders) and smolgen.
    layer = {"params": b"\x00\x00", "min_val": 0.0, "max_val": 1.0}
    old = _net_bytes(
        format={"network_format": {"network": 4, **_HEADS}},
        weights={"encoder": [{"ln1_gammas": layer}], "smolgen_w": layer},
    )
    fmt = parse_weights(old).format
    assert fmt.network == NetworkStructure.ATTENTIONBODY_WITH_HEADFORMAT
    assert (fmt.ffn_activation, fmt.smolgen_activation) == (Activation.RELU_2, Activation.SWISH)
    assert fmt.input_embedding == InputEmbedding.PE_MAP
    # Network 6 with multihead fields becomes 7 with the dense embedding.
    multi = _net_bytes(
        format={"network_format": {"network": 6, **_HEADS}},
        weights={
            "policy_heads": {"ip_pol_b": layer},
            "value_heads": {"winner": {"ip_val_b": layer}},
        },
    )
    fmt = parse_weights(multi).format
    assert (fmt.network, fmt.input_embedding) == (7, InputEmbedding.PE_DENSE)
    # 134 (legacy attention body, multihead) becomes 7.
    fmt = parse_weights(_net_bytes(format={"network_format": {"network": 134, **_HEADS}})).format
    assert fmt.network == 7
    # Explicit values are kept.
    fmt = parse_weights(
        _net_bytes(format={"network_format": {"network": 4, "input": 5, "policy": 2, "value": 2}})
    ).format
    assert (fmt.input, fmt.policy, fmt.value) == (InputFormat(5), PolicyFormat(2), ValueFormat(2))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsFileNotFoundError, match="no such network file"):
        load_weights(tmp_path / "nope.pb.gz")
    with pytest.raises(WeightsFileNotFoundError, match="directory"):
        load_weights(tmp_path)


def test_truncated_gzip(tmp_path: Path, maia_path: Path) -> None:
    path = tmp_path / "cut.pb.gz"
    path.write_bytes(maia_path.read_bytes()[:50_000])
    with pytest.raises(CorruptWeightsError, match="truncated gzip"):
        load_weights(path)


def test_truncated_protobuf(tmp_path: Path) -> None:
    data = encode_weights(random_resnet_weights())
    path = tmp_path / "cut.pb.gz"
    path.write_bytes(gzip.compress(data[: len(data) // 2]))
    with pytest.raises(CorruptWeightsError, match="truncated protobuf"):
        load_weights(path)


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "bad.pb.gz"
    path.write_bytes(b"\x1f\x8b" + b"\x00" * 40)
    with pytest.raises(CorruptWeightsError, match="corrupt gzip"):
        load_weights(path)


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (b"", CorruptWeightsError, "empty"),
        (b"hello, I am not a network", CorruptWeightsError, "not"),
        (encode({"magic": 0x1C1}, NET), CorruptWeightsError, "bad magic"),
        (b"2\n0.1 0.2 0.3\n", UnsupportedNetworkError, "legacy text"),
        (
            encode({"magic": 0x1C0, "format": {"network_format": {"input": 77}}}, NET),
            UnsupportedNetworkError,
            "unknown input format 77",
        ),
    ],
)
def test_bad_files_name_the_problem(
    tmp_path: Path, content: bytes, error: type, message: str
) -> None:
    path = tmp_path / "net.pb"
    path.write_bytes(content)
    with pytest.raises(error, match=message) as caught:
        load_weights(path)
    assert str(caught.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("field", "name"),
    [
        ("input", "input format"),
        ("network", "network structure"),
        ("policy", "policy format"),
        ("value", "value format"),
    ],
)
def test_unset_header_enums_are_rejected_at_load(tmp_path: Path, field: str, name: str) -> None:
    # A header lc0 cannot run is an error at load, not "UNKNOWN" in `leelalab info` and a
    # raw error at the first evaluation.
    header = random_resnet_weights().format.to_message()
    header[field] = 0
    message = {
        "magic": 0x1C0,
        "min_version": {"major": 0, "minor": 21, "patch": 0},
        "format": {"weights_encoding": 1, "network_format": header},
    }
    path = tmp_path / "net.pb"
    path.write_bytes(encode(message, NET))
    with pytest.raises(UnsupportedNetworkError, match=f"{name} is 0") as caught:
        load_weights(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_in_memory_errors_name_their_source() -> None:
    with pytest.raises(CorruptWeightsError, match=r"^download of net\.pb: not a valid lc0"):
        parse_weights(bytes(16), source="download of net.pb")
    bad_layer = encode(
        {"magic": 0x1C0, "weights": {"input": {"weights": {"params": b"\0\0", "encoding": 7}}}},
        NET,
    )
    with pytest.raises(CorruptWeightsError, match=r"^mem: layer 'input.weights' has unknown"):
        parse_weights(bad_layer, source="mem")


def test_concatenated_gzip_members_and_trailing_bytes(tmp_path: Path) -> None:
    weights = random_resnet_weights()
    data = encode_weights(weights)
    expected = load_weights(save_weights(weights, tmp_path / "one.pb")).parameter_count
    path = tmp_path / "members.pb.gz"
    path.write_bytes(gzip.compress(data[:100]) + gzip.compress(data[100:]))
    assert load_weights(path).parameter_count == expected
    path.write_bytes(gzip.compress(data) + b"trailing garbage, ignored as gzip does")
    assert load_weights(path).parameter_count == expected
    path.write_bytes(gzip.compress(data) + gzip.compress(b"more")[:6])
    with pytest.raises(CorruptWeightsError, match="truncated gzip"):
        load_weights(path)


def test_size_limits(tmp_path: Path) -> None:
    weights = random_resnet_weights()
    raw = save_weights(weights, tmp_path / "net.pb")
    packed = save_weights(weights, tmp_path / "net.pb.gz")
    for path in (raw, packed):
        with pytest.raises(CorruptWeightsError, match="1,000-byte limit") as caught:
            load_weights(path, max_bytes=1000)
        assert str(caught.value).startswith(f"{path}: ")


def test_a_valid_looking_bomb_stops_at_the_compression_ratio(tmp_path: Path) -> None:
    # Correct structure (a 24 MB layer of zeros): nothing is wrong until the end, but no
    # network compresses 1000:1.
    message = {"magic": 0x1C0, "weights": {"input": {"weights": {"params": bytes(24 << 20)}}}}
    path = tmp_path / "bomb.pb.gz"
    path.write_bytes(gzip.compress(encode(message, NET), compresslevel=9))
    with pytest.raises(CorruptWeightsError, match="decompression bomb") as caught:
        load_weights(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_gzipped_legacy_text_weights_are_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "old.txt.gz"
    path.write_bytes(gzip.compress(b"2\n" + b"0.1 0.2 0.3\n" * 1000))
    with pytest.raises(UnsupportedNetworkError, match="legacy text weights") as caught:
        load_weights(path)
    assert str(caught.value).startswith(f"{path}: ")
