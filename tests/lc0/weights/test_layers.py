from __future__ import annotations

import numpy as np
import pytest

from leelalab.errors import CorruptWeightsError, NonFiniteWeightsError
from leelalab.lc0.weights import Encoding, decode_layer, encode_layer
from leelalab.lc0.weights.synthetic import grid_linear16_range, snap_to_grid


def _linear16(codes: list[int], low: float, high: float) -> dict:
    return {"min_val": low, "max_val": high, "params": np.array(codes, "<u2").tobytes()}


def test_linear16_endpoints_and_midpoint() -> None:
    values = decode_layer(_linear16([0, 65535, 13107], -1.0, 4.0))
    # 13107 / 65535 = 0.2 exactly in real numbers: -1 + 0.2 * 5 = 0.
    np.testing.assert_allclose(values, [-1.0, 4.0, 0.0], rtol=1e-6, atol=1e-6)
    assert values.dtype == np.float32


def test_linear16_formulas_follow_lc0_versions() -> None:
    layer = _linear16(list(range(0, 65536, 7)), -0.37, 0.81)
    codes = np.arange(0, 65536, 7, dtype=np.float32)
    low, high = np.float32(-0.37), np.float32(0.81)
    t = codes / np.float32(65535)
    np.testing.assert_array_equal(decode_layer(layer, linear16="v0.31"), t * (high - low) + low)
    np.testing.assert_array_equal(
        decode_layer(layer, linear16="v0.32"), low * (np.float32(1) - t) + high * t
    )


def test_float_encodings_decode_ieee_values() -> None:
    values = np.array([1.5, -2.25, 65504.0, 2.0**-24], dtype=np.float32)
    fp16 = {"params": values.astype("<f2").tobytes(), "encoding": 2}
    np.testing.assert_array_equal(decode_layer(fp16), values)
    fp32 = {"params": values.astype("<f4").tobytes(), "encoding": 4}
    np.testing.assert_array_equal(decode_layer(fp32), values)
    # bfloat16: the upper 16 bits of the float32 (1.5 = 0x3FC00000 -> 0x3FC0).
    bf16 = {"params": np.array([0x3FC0, 0xC010], "<u2").tobytes(), "encoding": 3}
    np.testing.assert_array_equal(decode_layer(bf16), [1.5, -2.25])


def test_bfloat16_encoding_rounds_to_nearest_even() -> None:
    # 1 + 2**-8 lies exactly between two bf16 values (1 and 1 + 2**-7): ties go to even (1).
    values = np.array([1 + 2.0**-8, 1 + 3 * 2.0**-8, 1 + 2.0**-8 + 2.0**-20], np.float32)
    decoded = decode_layer(encode_layer(values, Encoding.BFLOAT16))
    np.testing.assert_array_equal(decoded, [1.0, 1 + 2.0**-6, 1 + 2.0**-7])


@pytest.mark.parametrize("encoding", list(Encoding)[1:])
def test_grid_values_round_trip_exactly_in_every_encoding(encoding: Encoding) -> None:
    rng = np.random.default_rng(0)
    values = snap_to_grid(rng.normal(0, 2, 5000))
    layer = encode_layer(values, encoding, grid_linear16_range())
    np.testing.assert_array_equal(decode_layer(layer), values)


def test_linear16_encoding_quantises_within_half_a_step() -> None:
    values = np.random.default_rng(1).uniform(-3, 5, 1000).astype(np.float32)
    decoded = decode_layer(encode_layer(values))
    assert np.abs(decoded - values).max() <= 8 / 65535 / 2 + 1e-6


def test_absent_layer_is_empty() -> None:
    assert decode_layer({}).size == 0
    assert encode_layer(np.zeros(0)) == {}


def test_constant_layer_decodes_to_its_min() -> None:
    layer = encode_layer(np.full(4, 0.25, np.float32))
    np.testing.assert_array_equal(decode_layer(layer), np.full(4, 0.25, np.float32))


def test_bad_sizes_and_encodings_raise() -> None:
    with pytest.raises(CorruptWeightsError, match="whole number"):
        decode_layer({"params": b"\x00\x00\x00", "encoding": 4}, "fc")
    with pytest.raises(CorruptWeightsError, match="unknown encoding 9"):
        decode_layer({"params": b"\x00\x00", "encoding": 9}, "fc")


def test_encodings_follow_lc0() -> None:
    # Absent means LINEAR16; any explicit value but the four encodings is an error (0 too,
    # as lc0's LayerAdapter throws "Unknown layer encoding" for it).
    assert decode_layer(_linear16([65535], 0.0, 2.0)).tolist() == [2.0]
    for value in (0, 5, 99, 2**64 - 1):
        with pytest.raises(CorruptWeightsError, match=f"layer 'fc' has unknown encoding {value}"):
            decode_layer({**_linear16([0], 0.0, 1.0), "encoding": value}, "fc")


@pytest.mark.parametrize(
    ("low", "high"),
    [(float("nan"), 1.0), (0.0, float("inf")), (float("-inf"), 0.0), (float("nan"), float("nan"))],
)
def test_non_finite_linear16_ranges_raise(low: float, high: float) -> None:
    with pytest.raises(NonFiniteWeightsError, match="layer 'conv' has a non-finite LINEAR16"):
        decode_layer(_linear16([0, 1], low, high), "conv")


def test_a_finite_range_that_overflows_raises() -> None:
    # max - min = 6.8e38 overflows float32: the decoded values would be inf/NaN.
    with pytest.raises(NonFiniteWeightsError, match="non-finite values"):
        decode_layer(_linear16([0, 30000, 65535], -3.4e38, 3.4e38), "conv")
    # A huge but representable range decodes (the output guard catches what it does later).
    assert np.isfinite(decode_layer(_linear16([0, 65535], -1e30, 1e30), "conv")).all()


@pytest.mark.parametrize(
    ("encoding", "raw"),
    [
        (Encoding.FLOAT16, np.array([1.0, np.inf], "<f2").tobytes()),
        (Encoding.FLOAT16, np.array([0x7E00], "<u2").tobytes()),  # NaN
        (Encoding.BFLOAT16, np.array([0x3F80, 0x7F80], "<u2").tobytes()),  # 1, inf
        (Encoding.FLOAT32, np.array([np.nan, 2.0], "<f4").tobytes()),
    ],
)
def test_non_finite_float_values_raise(encoding: Encoding, raw: bytes) -> None:
    with pytest.raises(NonFiniteWeightsError, match=f"layer 'w' \\({encoding.name}\\) decodes"):
        decode_layer({"params": raw, "encoding": int(encoding)}, "w")
