"""The attention-body building blocks shared by transformer bodies and attention policy heads:
feed-forward, smolgen, multi-head attention, encoder layers, and their lc0 (de)serialisation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from leelalab.errors import CorruptWeightsError, UnsupportedNetworkError
from leelalab.hooks import HookPoint
from leelalab.models.base import (
    ActivationFunction,
)
from leelalab.models.base import (
    copy_parameter as _copy,
)

SMOLGEN_EPSILON = 1e-3


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_hidden: int, activation: ActivationFunction) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_hidden)
        self.activation = activation
        self.linear2 = nn.Linear(d_hidden, d_model)
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.hook_post(self.activation(self.hook_pre(self.linear1(x))))
        return self.linear2(hidden)


class Smolgen(nn.Module):
    """Per-position attention biases: compress tokens, two dense+LN stages, shared matrix."""

    def __init__(
        self,
        d_model: int,
        heads: int,
        compressed: int,
        hidden: int,
        gen_size: int,
        activation: ActivationFunction,
    ) -> None:
        super().__init__()
        self.compress = nn.Linear(d_model, compressed, bias=False)
        self.dense1 = nn.Linear(64 * compressed, hidden)
        self.ln1 = nn.LayerNorm(hidden, eps=SMOLGEN_EPSILON)
        self.dense2 = nn.Linear(hidden, heads * gen_size)
        self.ln2 = nn.LayerNorm(heads * gen_size, eps=SMOLGEN_EPSILON)
        self.activation = activation
        self.heads = heads
        self.gen_size = gen_size

    def forward(self, x: torch.Tensor, global_weight: nn.Linear) -> torch.Tensor:
        batch = x.shape[0]
        compressed = self.compress(x).reshape(batch, -1)  # square-major flatten
        hidden = self.ln1(self.activation(self.dense1(compressed)))
        generated = self.ln2(self.activation(self.dense2(hidden)))
        generated = generated.reshape(batch, self.heads, self.gen_size)
        return global_weight(generated).reshape(batch, self.heads, 64, 64)


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model: int, d_attention: int, heads: int, smolgen: Smolgen | None):
        super().__init__()
        if d_attention % heads:
            raise CorruptWeightsError(
                f"{d_attention} attention channels do not split into {heads} heads"
            )
        self.q = nn.Linear(d_model, d_attention)
        self.k = nn.Linear(d_model, d_attention)
        self.v = nn.Linear(d_model, d_attention)
        self.out = nn.Linear(d_attention, d_model)
        self.smolgen = smolgen
        self.heads = heads
        self.d_head = d_attention // heads
        self.hook_q = HookPoint()
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_smolgen = HookPoint()
        self.hook_scores = HookPoint()
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()

    def forward(self, x: torch.Tensor, smolgen_global: nn.Linear | None) -> torch.Tensor:
        batch = x.shape[0]
        q = self.hook_q(self.q(x).view(batch, 64, self.heads, self.d_head))
        k = self.hook_k(self.k(x).view(batch, 64, self.heads, self.d_head))
        v = self.hook_v(self.v(x).view(batch, 64, self.heads, self.d_head))
        bias = None
        if self.smolgen is not None:
            if smolgen_global is None:
                raise CorruptWeightsError("smolgen layers need the global smolgen_w matrix")
            bias = self.hook_smolgen(self.smolgen(x, smolgen_global))
        if self.hook_scores.active or self.hook_pattern.active or self.hook_z.active:
            scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(self.d_head)
            if bias is not None:
                scores = scores + bias  # after the 1/sqrt(d) scaling, as lc0
            pattern = self.hook_pattern(torch.softmax(self.hook_scores(scores), dim=-1))
            z = self.hook_z(torch.einsum("bhqk,bkhd->bqhd", pattern, v))
        else:
            z = F.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=bias
            ).transpose(1, 2)
        return self.out(z.reshape(batch, 64, self.heads * self.d_head))


class EncoderLayer(nn.Module):
    """Post-LN encoder layer with lc0's residual scaling: ``LN(x + α·sublayer(x))``."""

    def __init__(
        self,
        attention: MultiHeadAttention,
        d_model: int,
        d_ffn: int,
        ffn_activation: ActivationFunction,
        alpha: float,
        epsilon: float,
    ) -> None:
        super().__init__()
        self.attn = attention
        self.ln1 = nn.LayerNorm(d_model, eps=epsilon)
        self.mlp = FeedForward(d_model, d_ffn, ffn_activation)
        self.ln2 = nn.LayerNorm(d_model, eps=epsilon)
        self.alpha = alpha
        self.hook_resid_pre = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, x: torch.Tensor, smolgen_global: nn.Linear | None = None) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        attention = self.hook_attn_out(self.attn(x, smolgen_global))
        x = self.hook_resid_mid(self.ln1(x + self.alpha * attention))
        mlp = self.hook_mlp_out(self.mlp(x))
        return self.hook_resid_post(self.ln2(x + self.alpha * mlp))


def numpy_of(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy().reshape(-1).copy()


def dense_weights(linear: nn.Linear, weight: str, bias: str | None) -> dict[str, np.ndarray]:
    out = {weight: numpy_of(linear.weight)}
    if bias is not None and linear.bias is not None:
        out[bias] = numpy_of(linear.bias)
    return out


def norm_weights(norm: nn.LayerNorm, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}_gammas": numpy_of(norm.weight), f"{prefix}_betas": numpy_of(norm.bias)}


def ffn_weights(ffn: FeedForward) -> dict[str, np.ndarray]:
    return {
        **dense_weights(ffn.linear1, "dense1_w", "dense1_b"),
        **dense_weights(ffn.linear2, "dense2_w", "dense2_b"),
    }


def encoder_layer_weights(layer: EncoderLayer) -> dict[str, Any]:
    attention = layer.attn
    mha: dict[str, Any] = {}
    for name in ("q", "k", "v"):
        mha.update(dense_weights(getattr(attention, name), f"{name}_w", f"{name}_b"))
    mha.update(dense_weights(attention.out, "dense_w", "dense_b"))
    if attention.smolgen is not None:
        smolgen = attention.smolgen
        mha["smolgen"] = {
            **dense_weights(smolgen.compress, "compress", None),
            **dense_weights(smolgen.dense1, "dense1_w", "dense1_b"),
            **norm_weights(smolgen.ln1, "ln1"),
            **dense_weights(smolgen.dense2, "dense2_w", "dense2_b"),
            **norm_weights(smolgen.ln2, "ln2"),
        }
    return {
        "mha": mha,
        **norm_weights(layer.ln1, "ln1"),
        "ffn": ffn_weights(layer.mlp),
        **norm_weights(layer.ln2, "ln2"),
    }


def require_array(node: dict[str, Any], key: str, where: str) -> np.ndarray:
    if key not in node:
        missing = key if where == "weights" else f"{where}.{key}"
        raise CorruptWeightsError(f"the network is missing '{missing}'")
    return node[key]


def load_linear(
    linear: nn.Linear, node: dict[str, Any], weight: str, bias: str | None, where: str
) -> None:
    _copy(linear.weight, require_array(node, weight, where), f"{where}.{weight}")
    if bias is not None:
        _copy(linear.bias, require_array(node, bias, where), f"{where}.{bias}")


def build_encoder_layer(
    node: dict[str, Any],
    where: str,
    *,
    heads: int,
    alpha: float,
    epsilon: float,
    ffn_activation: ActivationFunction,
    smolgen_activation: ActivationFunction | None,
    smolgen_gen_size: int,
) -> EncoderLayer:
    """One lc0 ``EncoderLayer`` message → :class:`EncoderLayer` with its weights loaded."""
    mha = require_array(node, "mha", where)
    if any(key in mha for key in ("rpe_q", "rpe_k", "rpe_v")):
        raise UnsupportedNetworkError(
            "relative positional encodings (RPE) are not supported (nor by lc0)"
        )
    q_weights = require_array(mha, "q_w", f"{where}.mha")
    d_model = q_weights.size // require_array(mha, "q_b", f"{where}.mha").size
    d_attention = mha["q_b"].size
    smolgen = None
    if "smolgen" in mha:
        if smolgen_activation is None:
            raise CorruptWeightsError(f"{where} has smolgen weights but no global smolgen_w")
        s = mha["smolgen"]
        compressed = require_array(s, "compress", f"{where}.smolgen").size // d_model
        hidden = require_array(s, "dense1_b", f"{where}.smolgen").size
        smolgen = Smolgen(d_model, heads, compressed, hidden, smolgen_gen_size, smolgen_activation)
        if require_array(s, "dense2_b", f"{where}.smolgen").size != heads * smolgen_gen_size:
            raise CorruptWeightsError(f"{where}.smolgen: dense2 does not match heads x gen size")
    attention = MultiHeadAttention(d_model, d_attention, heads, smolgen)
    d_ffn = require_array(require_array(node, "ffn", where), "dense1_b", f"{where}.ffn").size
    layer = EncoderLayer(attention, d_model, d_ffn, ffn_activation, alpha, epsilon)
    for name in ("q", "k", "v"):
        load_linear(getattr(attention, name), mha, f"{name}_w", f"{name}_b", f"{where}.mha")
    load_linear(attention.out, mha, "dense_w", "dense_b", f"{where}.mha")
    if smolgen is not None:
        s = mha["smolgen"]
        load_linear(smolgen.compress, s, "compress", None, f"{where}.smolgen")
        load_linear(smolgen.dense1, s, "dense1_w", "dense1_b", f"{where}.smolgen")
        load_linear(smolgen.dense2, s, "dense2_w", "dense2_b", f"{where}.smolgen")
        load_norm(smolgen.ln1, s, "ln1", f"{where}.smolgen")
        load_norm(smolgen.ln2, s, "ln2", f"{where}.smolgen")
    load_norm(layer.ln1, node, "ln1", where)
    load_norm(layer.ln2, node, "ln2", where)
    load_linear(layer.mlp.linear1, node["ffn"], "dense1_w", "dense1_b", f"{where}.ffn")
    load_linear(layer.mlp.linear2, node["ffn"], "dense2_w", "dense2_b", f"{where}.ffn")
    return layer


def load_norm(norm: nn.LayerNorm, node: dict[str, Any], prefix: str, where: str) -> None:
    _copy(norm.weight, require_array(node, f"{prefix}_gammas", where), f"{where}.{prefix}_gammas")
    _copy(norm.bias, require_array(node, f"{prefix}_betas", where), f"{where}.{prefix}_betas")
