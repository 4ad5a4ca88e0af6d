"""Tiny random lc0 networks, for tests and examples.

The weights are drawn with a seeded generator and laid out exactly as lc0's schema expects,
so :func:`leelalab.weights.save_weights` turns them into files lc0 itself loads. Batch norm
is included (random means, variances, gammas and betas) so that the folding is exercised.

``grid=True`` rounds every value to ``n * 2**-GRID_EXPONENT`` with ``n`` of at most 8
significant bits. Such values are represented exactly by LINEAR16 (with
:func:`grid_linear16_range`), FLOAT16, BFLOAT16 and FLOAT32, so a file written in a float
encoding and its LINEAR16 twin decode to identical tensors — which lets lc0 v0.31 (that only
decodes LINEAR16) be the reference for float-encoded files too.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from leelalab.weights.enums import (
    DefaultActivation,
    Encoding,
    InputFormat,
    MovesLeftFormat,
    NetworkStructure,
    OutputFormat,
    PolicyFormat,
    ValueFormat,
)
from leelalab.weights.file import Lc0Weights, NetworkFormat

GRID_EXPONENT = 12


def grid_linear16_range(_path: str = "", _values: Any = None) -> tuple[float, float]:
    """The LINEAR16 ``(min_val, max_val)`` under which every grid value is exact."""
    step = 2.0**-GRID_EXPONENT
    return (-32768 * step, 32767 * step)


def snap_to_grid(values: np.ndarray) -> np.ndarray:
    """Round to ``n * 2**-GRID_EXPONENT`` with ``|n| <= 32767`` of at most 8 significant bits."""
    n = np.rint(np.asarray(values, dtype=np.float64) * 2.0**GRID_EXPONENT)
    n = np.clip(n, -32640, 32640)  # 32640 = 255 * 2**7: the largest 8-significant-bit value
    magnitude = np.abs(n)
    shift = np.where(magnitude > 0, np.floor(np.log2(np.maximum(magnitude, 1))) - 7, 0)
    shift = np.maximum(shift, 0)
    n = np.rint(n / 2.0**shift) * 2.0**shift
    return (n * 2.0**-GRID_EXPONENT).astype(np.float32)


class _Generator:
    def __init__(self, seed: int, grid: bool) -> None:
        self.rng = np.random.default_rng(seed)
        self.grid = grid

    def _finish(self, values: np.ndarray) -> np.ndarray:
        values = values.astype(np.float32).reshape(-1)
        return snap_to_grid(values) if self.grid else values

    def normal(self, size: int, scale: float) -> np.ndarray:
        return self._finish(self.rng.normal(0.0, scale, size))

    def uniform(self, size: int, low: float, high: float) -> np.ndarray:
        return self._finish(self.rng.uniform(low, high, size))

    def conv_block(
        self, inputs: int, outputs: int, kernel: int, batch_norm: bool = True
    ) -> dict[str, Any]:
        fan_in = inputs * kernel * kernel
        block = {"weights": self.normal(outputs * fan_in, 1.0 / np.sqrt(fan_in))}
        if batch_norm:
            block.update(
                bn_means=self.normal(outputs, 0.1),
                bn_stddivs=self.uniform(outputs, 0.5, 1.5),
                bn_gammas=self.uniform(outputs, 0.5, 1.5),
                bn_betas=self.normal(outputs, 0.1),
            )
        else:
            block["biases"] = self.normal(outputs, 0.1)
        return block

    def dense(self, inputs: int, outputs: int) -> tuple[np.ndarray, np.ndarray]:
        return self.normal(outputs * inputs, 1.0 / np.sqrt(inputs)), self.normal(outputs, 0.1)


def random_resnet_weights(
    *,
    blocks: int = 2,
    filters: int = 8,
    se_channels: int = 4,
    input_format: InputFormat | int = InputFormat.CLASSICAL_112_PLANE,
    policy: Literal["convolution", "classical"] = "convolution",
    value: Literal["wdl", "classical"] = "wdl",
    moves_left: bool = True,
    activation: Literal["relu", "mish"] = "relu",
    policy_channels: int = 8,
    value_channels: int = 8,
    value_hidden: int = 16,
    moves_left_channels: int = 4,
    moves_left_hidden: int = 8,
    seed: int = 0,
    grid: bool = False,
) -> Lc0Weights:
    """A random lc0 ResNet (SE when ``se_channels > 0``) with the given heads and formats."""
    g = _Generator(seed, grid)
    w: dict[str, Any] = {"input": g.conv_block(112, filters, 3)}
    residual = []
    for _ in range(blocks):
        block: dict[str, Any] = {
            "conv1": g.conv_block(filters, filters, 3),
            "conv2": g.conv_block(filters, filters, 3),
        }
        if se_channels:
            w1, b1 = g.dense(filters, se_channels)
            w2, b2 = g.dense(se_channels, 2 * filters)
            block["se"] = {"w1": w1, "b1": b1, "w2": w2, "b2": b2}
        residual.append(block)
    w["residual"] = residual
    if policy == "convolution":
        w["policy1"] = g.conv_block(filters, filters, 3)
        w["policy"] = g.conv_block(filters, 80, 3, batch_norm=False)
    else:
        w["policy"] = g.conv_block(filters, policy_channels, 1)
        w["ip_pol_w"], w["ip_pol_b"] = g.dense(policy_channels * 64, 1858)
    w["value"] = g.conv_block(filters, value_channels, 1)
    w["ip1_val_w"], w["ip1_val_b"] = g.dense(value_channels * 64, value_hidden)
    w["ip2_val_w"], w["ip2_val_b"] = g.dense(value_hidden, 3 if value == "wdl" else 1)
    if moves_left:
        w["moves_left"] = g.conv_block(filters, moves_left_channels, 1)
        w["ip1_mov_w"], w["ip1_mov_b"] = g.dense(moves_left_channels * 64, moves_left_hidden)
        w["ip2_mov_w"], _ = g.dense(moves_left_hidden, 1)
        # A positive bias keeps the final ReLU active, so tests compare real values, not 0 == 0.
        w["ip2_mov_b"] = g.uniform(1, 20.0, 40.0)
    network_format = NetworkFormat(
        input=InputFormat(input_format),
        output=OutputFormat.WDL if value == "wdl" else OutputFormat.CLASSICAL,
        network=NetworkStructure.SE_WITH_HEADFORMAT
        if se_channels
        else NetworkStructure.CLASSICAL_WITH_HEADFORMAT,
        policy=PolicyFormat.CONVOLUTION if policy == "convolution" else PolicyFormat.CLASSICAL,
        value=ValueFormat.WDL if value == "wdl" else ValueFormat.CLASSICAL,
        moves_left=MovesLeftFormat.V1 if moves_left else MovesLeftFormat.NONE,
        default_activation=DefaultActivation.MISH
        if activation == "mish"
        else DefaultActivation.RELU,
    )
    return Lc0Weights(
        format=network_format,
        weights=w,
        min_version=(0, 21, 0),
        weights_encoding=Encoding.LINEAR16,
        license="synthetic test network (random weights)",
    )
