"""Tiny random lc0 networks, for tests and examples.

The weights are drawn with a seeded generator and laid out exactly as lc0's schema expects,
so :func:`leelalab.lc0.weights.save_weights` turns them into files lc0 itself loads. Batch norm
is included (random means, variances, gammas and betas) so that the folding is exercised.

``grid=True`` rounds every value to ``n * 2**-GRID_EXPONENT`` with ``n`` of at most 8
significant bits. Such values are represented exactly by LINEAR16 (with
:func:`grid_linear16_range`), FLOAT16, BFLOAT16 and FLOAT32, so a file written in a float
encoding and its LINEAR16 twin decode to identical tensors — which lets lc0 v0.31 (that only
decodes LINEAR16) be the reference for float-encoded files too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from leelalab.lc0.weights.enums import (
    Activation,
    Encoding,
    InputEmbedding,
    InputFormat,
    NetworkStructure,
    PolicyFormat,
)
from leelalab.lc0.weights.file import Lc0Weights, NetworkFormat

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

    def norm(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        return self.uniform(size, 0.8, 1.2), self.normal(size, 0.1)

    def encoder_layer(
        self, d_model: int, heads: int, d_ffn: int, smolgen: tuple[int, int, int] | None
    ) -> dict[str, Any]:
        mha: dict[str, Any] = {}
        for name in ("q", "k", "v"):
            mha[f"{name}_w"], mha[f"{name}_b"] = self.dense(d_model, d_model)
        mha["dense_w"], mha["dense_b"] = self.dense(d_model, d_model)
        if smolgen is not None:
            compressed, hidden, gen_size = smolgen
            sg: dict[str, Any] = {"compress": self.normal(compressed * d_model, d_model**-0.5)}
            sg["dense1_w"], sg["dense1_b"] = self.dense(64 * compressed, hidden)
            sg["ln1_gammas"], sg["ln1_betas"] = self.norm(hidden)
            sg["dense2_w"], sg["dense2_b"] = self.dense(hidden, heads * gen_size)
            sg["ln2_gammas"], sg["ln2_betas"] = self.norm(heads * gen_size)
            mha["smolgen"] = sg
        layer: dict[str, Any] = {"mha": mha}
        layer["ln1_gammas"], layer["ln1_betas"] = self.norm(d_model)
        ffn: dict[str, Any] = {}
        ffn["dense1_w"], ffn["dense1_b"] = self.dense(d_model, d_ffn)
        ffn["dense2_w"], ffn["dense2_b"] = self.dense(d_ffn, d_model)
        layer["ffn"] = ffn
        layer["ln2_gammas"], layer["ln2_betas"] = self.norm(d_model)
        return layer

    def attention_policy(
        self, d_input: int | None, d_tokens: int, d_policy: int, encoders: int = 0, heads: int = 2
    ) -> dict[str, Any]:
        """An lc0 PolicyHead; ``d_input=None`` leaves out the (shared) token embedding."""
        head: dict[str, Any] = {}
        if d_input is not None:
            head["ip_pol_w"], head["ip_pol_b"] = self.dense(d_input, d_tokens)
        if encoders:
            head["pol_encoder"] = [
                self.encoder_layer(d_tokens, heads, 2 * d_tokens, None) for _ in range(encoders)
            ]
            head["pol_headcount"] = heads
        head["ip2_pol_w"], head["ip2_pol_b"] = self.dense(d_tokens, d_policy)
        head["ip3_pol_w"], head["ip3_pol_b"] = self.dense(d_tokens, d_policy)
        head["ip4_pol_w"] = self.normal(4 * d_policy, d_policy**-0.5)
        return head

    def moves_left_mlp(self, channels: int, hidden: int) -> dict[str, Any]:
        """The moves-left head's two dense layers, after its ``channels`` per square."""
        head: dict[str, Any] = {}
        head["ip1_mov_w"], head["ip1_mov_b"] = self.dense(64 * channels, hidden)
        head["ip2_mov_w"], _ = self.dense(hidden, 1)
        # A positive bias keeps the final ReLU active, so tests compare real values, not 0 == 0.
        head["ip2_mov_b"] = self.uniform(1, 20.0, 40.0)
        return head

    def token_value_head(
        self, d_model: int, channels: int, hidden: int, outputs: int
    ) -> dict[str, Any]:
        head: dict[str, Any] = {}
        head["ip_val_w"], head["ip_val_b"] = self.dense(d_model, channels)
        head["ip1_val_w"], head["ip1_val_b"] = self.dense(64 * channels, hidden)
        head["ip2_val_w"], head["ip2_val_b"] = self.dense(hidden, outputs)
        return head


@dataclass(frozen=True)
class ResNetSpec:
    """What :func:`random_resnet_weights` builds: body, heads, formats and seed (``grid``:
    see the module docstring)."""

    blocks: int = 2
    filters: int = 8
    se_channels: int = 4
    input_format: InputFormat | int = InputFormat.CLASSICAL_112_PLANE
    policy: Literal["convolution", "classical", "attention"] = "convolution"
    policy_encoders: int = 0
    value: Literal["wdl", "classical"] = "wdl"
    moves_left: bool = True
    activation: Literal["relu", "mish"] = "relu"
    policy_channels: int = 8
    value_channels: int = 8
    value_hidden: int = 16
    moves_left_channels: int = 4
    moves_left_hidden: int = 8
    seed: int = 0
    grid: bool = False


def random_resnet_weights(spec: ResNetSpec | None = None, /, **changes: Any) -> Lc0Weights:
    """A random lc0 ResNet (SE when ``se_channels > 0``) with the given heads and formats.

    Pass a ``ResNetSpec``, or its fields as keywords (they override ``spec``'s).
    """
    spec = replace(spec or ResNetSpec(), **changes)
    g = _Generator(spec.seed, spec.grid)
    w: dict[str, Any] = {"input": g.conv_block(112, spec.filters, 3)}
    residual = []
    for _ in range(spec.blocks):
        block: dict[str, Any] = {
            "conv1": g.conv_block(spec.filters, spec.filters, 3),
            "conv2": g.conv_block(spec.filters, spec.filters, 3),
        }
        if spec.se_channels:
            w1, b1 = g.dense(spec.filters, spec.se_channels)
            w2, b2 = g.dense(spec.se_channels, 2 * spec.filters)
            block["se"] = {"w1": w1, "b1": b1, "w2": w2, "b2": b2}
        residual.append(block)
    w["residual"] = residual
    if spec.policy == "convolution":
        w["policy1"] = g.conv_block(spec.filters, spec.filters, 3)
        w["policy"] = g.conv_block(spec.filters, 80, 3, batch_norm=False)
    elif spec.policy == "attention":
        # T78/T79 style: SELU tokens on the ResNet body, optional policy encoder layers.
        w.update(
            g.attention_policy(
                spec.filters, spec.policy_channels * 2, spec.policy_channels, spec.policy_encoders
            )
        )
    else:
        w["policy"] = g.conv_block(spec.filters, spec.policy_channels, 1)
        w["ip_pol_w"], w["ip_pol_b"] = g.dense(spec.policy_channels * 64, 1858)
    w["value"] = g.conv_block(spec.filters, spec.value_channels, 1)
    w["ip1_val_w"], w["ip1_val_b"] = g.dense(spec.value_channels * 64, spec.value_hidden)
    w["ip2_val_w"], w["ip2_val_b"] = g.dense(spec.value_hidden, 3 if spec.value == "wdl" else 1)
    if spec.moves_left:
        w["moves_left"] = g.conv_block(spec.filters, spec.moves_left_channels, 1)
        w.update(g.moves_left_mlp(spec.moves_left_channels, spec.moves_left_hidden))
    network = (
        NetworkStructure.SE_WITH_HEADFORMAT
        if spec.se_channels
        else NetworkStructure.CLASSICAL_WITH_HEADFORMAT
    )
    policy = {
        "convolution": PolicyFormat.CONVOLUTION,
        "classical": PolicyFormat.CLASSICAL,
        "attention": PolicyFormat.ATTENTION,
    }[spec.policy]
    return _synthetic_weights(spec, w, network, policy, min_version=(0, 21, 0))


TRANSFORMER_SHAPES: dict[str, dict[str, Any]] = {
    # The look-ahead paper's network: 768 x 15 layers x 24 heads, smolgen.
    "t82": dict(
        layers=15,
        d_model=768,
        heads=24,
        ffn_size=1024,
        smolgen=(32, 256, 256),
        policy_tokens=768,
        policy_size=768,
        value_channels=32,
        moves_left_hidden=128,
    ),
    "small-transformer": dict(layers=6, d_model=128, heads=8, ffn_size=256),
}
"""Keyword arguments of :func:`random_transformer_weights` for benchmark-sized networks."""


@dataclass(frozen=True)
class TransformerSpec:
    """What :func:`random_transformer_weights` builds (its docstring explains ``smolgen``,
    ``multihead`` and ``embedding``)."""

    layers: int = 2
    d_model: int = 32
    heads: int = 4
    ffn_size: int = 64
    embedding: Literal["pe_map", "pe_dense"] = "pe_map"
    gates: bool = True
    smolgen: tuple[int, int, int] | None = (4, 16, 8)
    policy_tokens: int = 32
    policy_size: int = 16
    value: Literal["wdl", "classical"] = "wdl"
    value_channels: int = 8
    value_hidden: int = 128
    moves_left: bool = True
    moves_left_channels: int = 8
    moves_left_hidden: int = 32
    activation: Literal["relu", "mish"] = "relu"
    ffn_activation: Activation = Activation.DEFAULT
    smolgen_activation: Activation = Activation.DEFAULT
    multihead: bool = False
    dense_size: int = 16
    embedding_ffn_size: int = 64
    input_format: InputFormat | int = InputFormat.CLASSICAL_112_PLANE
    seed: int = 0
    grid: bool = False


def random_transformer_weights(
    spec: TransformerSpec | None = None, /, **changes: Any
) -> Lc0Weights:
    """A random lc0 attention-body network.

    Args:
        smolgen: ``(compressed channels, hidden size, generator size)`` or ``None``.
        multihead: write network structure 7 with ``policy_heads`` (vanilla, optimistic_st;
            shared token embedding) and ``value_heads`` (winner, q). lc0 v0.31 cannot run
            structure 7; single-head files use structure 6.
        embedding: ``"pe_map"`` (T80/T82/BT2) or ``"pe_dense"`` (BT3/BT4; always multihead
            in practice, and lc0 v0.31 cannot run it).

    Pass a ``TransformerSpec``, or its fields as keywords (they override ``spec``'s).
    """
    spec = replace(spec or TransformerSpec(), **changes)
    g = _Generator(spec.seed, spec.grid)
    w: dict[str, Any] = {}
    inputs = 112 + (spec.dense_size if spec.embedding == "pe_dense" else 64)
    w["ip_emb_w"], w["ip_emb_b"] = g.dense(inputs, spec.d_model)
    if spec.embedding == "pe_dense":
        w["ip_emb_preproc_w"], w["ip_emb_preproc_b"] = g.dense(64 * 12, 64 * spec.dense_size)
        w["ip_emb_ln_gammas"], w["ip_emb_ln_betas"] = g.norm(spec.d_model)
        ffn: dict[str, Any] = {}
        ffn["dense1_w"], ffn["dense1_b"] = g.dense(spec.d_model, spec.embedding_ffn_size)
        ffn["dense2_w"], ffn["dense2_b"] = g.dense(spec.embedding_ffn_size, spec.d_model)
        w["ip_emb_ffn"] = ffn
        w["ip_emb_ffn_ln_gammas"], w["ip_emb_ffn_ln_betas"] = g.norm(spec.d_model)
    if spec.gates:
        w["ip_mult_gate"] = g.uniform(spec.d_model * 64, 0.5, 1.5)
        w["ip_add_gate"] = g.normal(spec.d_model * 64, 0.1)
    w["encoder"] = [
        g.encoder_layer(spec.d_model, spec.heads, spec.ffn_size, spec.smolgen)
        for _ in range(spec.layers)
    ]
    w["headcount"] = spec.heads
    if spec.smolgen is not None:
        w["smolgen_w"] = g.normal(4096 * spec.smolgen[2], spec.smolgen[2] ** -0.5)
    outputs = 3 if spec.value == "wdl" else 1
    if spec.multihead:
        shared_w, shared_b = g.dense(spec.d_model, spec.policy_tokens)
        w["policy_heads"] = {
            "ip_pol_w": shared_w,
            "ip_pol_b": shared_b,
            "vanilla": g.attention_policy(None, spec.policy_tokens, spec.policy_size),
            "optimistic_st": g.attention_policy(None, spec.policy_tokens, spec.policy_size),
        }
        w["value_heads"] = {
            "winner": g.token_value_head(
                spec.d_model, spec.value_channels, spec.value_hidden, outputs
            ),
            "q": g.token_value_head(spec.d_model, spec.value_channels, spec.value_hidden, outputs),
        }
    else:
        w.update(g.attention_policy(spec.d_model, spec.policy_tokens, spec.policy_size))
        w.update(g.token_value_head(spec.d_model, spec.value_channels, spec.value_hidden, outputs))
    if spec.moves_left:
        w["ip_mov_w"], w["ip_mov_b"] = g.dense(spec.d_model, spec.moves_left_channels)
        w.update(g.moves_left_mlp(spec.moves_left_channels, spec.moves_left_hidden))
    network = (
        NetworkStructure.ATTENTIONBODY_WITH_MULTIHEADFORMAT
        if spec.multihead
        else NetworkStructure.ATTENTIONBODY_WITH_HEADFORMAT
    )
    return _synthetic_weights(
        spec,
        w,
        network,
        PolicyFormat.ATTENTION,
        min_version=(0, 30, 0),
        smolgen_activation=spec.smolgen_activation,
        ffn_activation=spec.ffn_activation,
        input_embedding=InputEmbedding.PE_DENSE
        if spec.embedding == "pe_dense"
        else InputEmbedding.PE_MAP,
    )


def _synthetic_weights(
    spec: ResNetSpec | TransformerSpec,
    w: dict[str, Any],
    network: NetworkStructure,
    policy: PolicyFormat,
    *,
    min_version: tuple[int, int, int],
    **transformer: Any,
) -> Lc0Weights:
    """``w`` under the header that ``spec``'s input, heads and activation give (``transformer``:
    the activations and embedding only a transformer's header sets)."""
    network_format = NetworkFormat.build(
        spec.input_format,
        network,
        policy,
        wdl=spec.value == "wdl",
        moves_left=spec.moves_left,
        mish=spec.activation == "mish",
    )
    network_format = replace(network_format, **transformer)
    # LINEAR16 because lc0 v0.31, the reference, decodes only that (see the module docstring).
    return Lc0Weights(
        format=network_format,
        weights=w,
        min_version=min_version,
        weights_encoding=Encoding.LINEAR16,
        license="synthetic test network (random weights)",
    )
