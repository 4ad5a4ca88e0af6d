"""lc0 attention-body ("transformer") networks: T80/T82, BT2–BT4, T1–T3 and similar.

The body turns the 112 input planes into 64 square tokens (an input embedding), then runs
post-LayerNorm encoder layers with lc0's DeepNorm residual scaling ``LN(x + α·f(x))``,
``α = (2·N)^(-1/4)``, and optional *smolgen* (a learned, position-dependent attention bias).
Heads: attention policy (one or several), WDL or tanh value (one or several), moves-left.

Hook points, all in the side-to-move frame, squares ``0 = a1 … 63 = h8`` of that frame:

===================================  ====================================================
``embed.hook_out``                   ``(batch, 64, d_model)`` input embedding
``blocks.{L}.hook_resid_pre``        ``(batch, 64, d_model)`` layer input
``blocks.{L}.attn.hook_q|k|v``       ``(batch, 64, heads, d_head)``
``blocks.{L}.attn.hook_smolgen``     ``(batch, heads, 64_query, 64_key)`` smolgen bias
``blocks.{L}.attn.hook_scores``      ``(batch, heads, 64_query, 64_key)`` pre-softmax
``blocks.{L}.attn.hook_pattern``     ``(batch, heads, 64_query, 64_key)`` attention weights
``blocks.{L}.attn.hook_z``           ``(batch, 64, heads, d_head)`` per-head outputs
``blocks.{L}.hook_attn_out``         ``(batch, 64, d_model)`` after the output projection
``blocks.{L}.hook_resid_mid``        ``(batch, 64, d_model)`` after the first LayerNorm
``blocks.{L}.mlp.hook_pre|post``     ``(batch, 64, d_ffn)`` before/after the activation
``blocks.{L}.hook_mlp_out``          ``(batch, 64, d_model)``
``blocks.{L}.hook_resid_post``       ``(batch, 64, d_model)`` layer output
``policy_heads.{name}.hook_*``       see :mod:`leelalab.models.attention_policy`
``value_heads.{name}.hook_logits``   ``(batch, 3 or 1)``
``moves_left_head.hook_logits``      ``(batch, 1)`` before the final ReLU
===================================  ====================================================

When neither ``hook_scores`` nor ``hook_pattern`` nor ``hook_z`` of a layer has a hook, the
attention runs through ``scaled_dot_product_attention`` (same maths, faster); otherwise it
is computed explicitly so that hooks see and can change every intermediate.
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
from leelalab.models.attention_policy import AttentionPolicyHead
from leelalab.models.base import (
    ActivationFunction,
    LeelaNetwork,
    NetworkOutput,
    default_activation,
    resolve_activation,
    value_to_wdl,
)
from leelalab.models.base import (
    copy_parameter as _copy,
)
from leelalab.weights.enums import (
    InputEmbedding,
    MovesLeftFormat,
    NetworkStructure,
    ValueFormat,
)
from leelalab.weights.file import Lc0Weights, NetworkFormat

SMOLGEN_EPSILON = 1e-3
DENSE_EMBEDDING_EPSILON = 1e-3
# lc0's head names in multihead files, and the names lc0's options use for them.
POLICY_HEAD_NAMES = {
    "vanilla": "vanilla",
    "optimistic_st": "optimistic",
    "soft": "soft",
    "opponent": "opponent",
}
VALUE_HEAD_NAMES = {"winner": "winner", "q": "q", "st": "st"}


def positional_encoding_table() -> torch.Tensor:
    """lc0's PE_MAP code: -1 on the diagonal, +1 where a queen or knight move connects."""
    table = np.zeros((64, 64), dtype=np.float32)
    for a in range(64):
        for b in range(64):
            dr, df = b // 8 - a // 8, b % 8 - a % 8
            if a == b:
                table[a, b] = -1.0
            elif dr == 0 or df == 0 or abs(dr) == abs(df) or {abs(dr), abs(df)} == {1, 2}:
                table[a, b] = 1.0
    return torch.from_numpy(table)


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


class InputEmbeddingLayer(nn.Module):
    """Planes → square tokens: PE_MAP (T80/T82/BT2) or PE_DENSE (BT3/BT4/T3)."""

    def __init__(
        self,
        kind: InputEmbedding,
        d_model: int,
        activation: ActivationFunction,
        *,
        dense_size: int = 0,
        gates: tuple[bool, bool] = (False, False),
        ffn_size: int = 0,
        ffn_activation: ActivationFunction | None = None,
        alpha: float = 1.0,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.activation = activation
        if kind == InputEmbedding.PE_DENSE:
            self.preprocess = nn.Linear(64 * 12, 64 * dense_size)
            self.dense = nn.Linear(112 + dense_size, d_model)
            self.norm = nn.LayerNorm(d_model, eps=DENSE_EMBEDDING_EPSILON)
            self.dense_size = dense_size
        else:
            self.dense = nn.Linear(112 + 64, d_model)
            self.register_buffer("positional", positional_encoding_table(), persistent=False)
        # lc0 stores the gates as [d_model, 64]; kept here as [64, d_model] to broadcast.
        self.mult_gate = nn.Parameter(torch.ones(64, d_model)) if gates[0] else None
        self.add_gate = nn.Parameter(torch.zeros(64, d_model)) if gates[1] else None
        self.ffn = (
            FeedForward(d_model, ffn_size, ffn_activation)
            if ffn_size and ffn_activation is not None
            else None
        )
        self.out_norm = nn.LayerNorm(d_model, eps=DENSE_EMBEDDING_EPSILON) if self.ffn else None
        self.alpha = alpha
        self.hook_out = HookPoint()

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        batch = planes.shape[0]
        squares = planes.reshape(batch, 112, 64).transpose(1, 2)  # (batch, 64, 112)
        if self.kind == InputEmbedding.PE_DENSE:
            pieces = squares[:, :, :12].reshape(batch, 64 * 12)
            extra = self.preprocess(pieces).reshape(batch, 64, self.dense_size)
        else:
            extra = self.positional.expand(batch, 64, 64)
        tokens = self.activation(self.dense(torch.cat([squares, extra], dim=2)))
        if self.kind == InputEmbedding.PE_DENSE:
            tokens = self.norm(tokens)
        # As lc0's ONNX converter: each gate applies on its own when present.
        if self.mult_gate is not None:
            tokens = tokens * self.mult_gate
        if self.add_gate is not None:
            tokens = tokens + self.add_gate
        if self.ffn is not None and self.out_norm is not None:
            tokens = self.out_norm(tokens + self.alpha * self.ffn(tokens))
        return self.hook_out(tokens)


class TokenHead(nn.Module):
    """Value or moves-left head on square tokens: embed, flatten square-major, 2 dense."""

    def __init__(
        self, d_model: int, channels: int, hidden: int, outputs: int, activation: ActivationFunction
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(d_model, channels)
        self.fc1 = nn.Linear(64 * channels, hidden)
        self.fc2 = nn.Linear(hidden, outputs)
        self.activation = activation
        self.hook_logits = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embedded = self.activation(self.embed(x)).reshape(x.shape[0], -1)
        return self.hook_logits(self.fc2(self.activation(self.fc1(embedded))))


class TransformerNetwork(LeelaNetwork):
    """An lc0 attention-body network. Build it with :meth:`from_lc0`.

    Attributes:
        policy_head_name: which policy head ``forward`` uses (lc0's default ``"vanilla"``).
        value_head_name: which value head ``forward`` uses (lc0's default ``"winner"``).
    """

    def __init__(
        self,
        network_format: NetworkFormat,
        embed: InputEmbeddingLayer,
        blocks: list[EncoderLayer],
        smolgen_global: nn.Linear | None,
        policy_heads: dict[str, AttentionPolicyHead],
        policy_tokens: nn.Linear | None,
        value_heads: dict[str, TokenHead],
        moves_left_head: TokenHead | None,
    ) -> None:
        super().__init__()
        self.network_format = network_format
        self.embed = embed
        self.blocks = nn.ModuleList(blocks)
        self.smolgen_global = smolgen_global
        self.policy_tokens = policy_tokens
        self.policy_heads = nn.ModuleDict(policy_heads)
        self.value_heads = nn.ModuleDict(value_heads)
        self.moves_left_head = moves_left_head
        self.policy_head_name = "vanilla" if "vanilla" in policy_heads else next(iter(policy_heads))
        self.value_head_name = "winner" if "winner" in value_heads else next(iter(value_heads))
        self.setup_hooks()

    def forward(self, planes: torch.Tensor) -> NetworkOutput:
        """Evaluate ``planes`` of shape ``(batch, 112, 8, 8)``; see :class:`NetworkOutput`."""
        x = self.embed(planes)
        for block in self.blocks:
            x = block(x, self.smolgen_global)
        return self._heads(x)

    def residual_hook_name(self, layer: int) -> str:
        return "embed.hook_out" if layer == -1 else f"blocks.{layer}.hook_resid_post"

    def run_from(self, layer: int, residual: torch.Tensor) -> NetworkOutput:
        """Finish a forward from the residual stream after layer ``layer`` (−1: the input
        embedding), ``(batch, 64, d_model)`` like its hook."""
        self._check_layer(layer)
        x = residual
        for block in self.blocks[layer + 1 :]:
            x = block(x, self.smolgen_global)
        return self._heads(x)

    def _heads(self, x: torch.Tensor) -> NetworkOutput:
        policy = self.policy_heads[self.policy_head_name](x, self.policy_tokens)
        wdl = value_to_wdl(self.value_heads[self.value_head_name](x))
        moves_left = None
        if self.moves_left_head is not None:
            moves_left = torch.relu(self.moves_left_head(x))[:, 0]
        return NetworkOutput(policy, wdl, moves_left)

    @classmethod
    def from_lc0(cls, weights: Lc0Weights) -> TransformerNetwork:
        """Build the network from a decoded attention-body file."""
        return _TransformerLoader(weights).build()

    def to_lc0(self) -> Lc0Weights:
        """Export as lc0 weights (the inverse of :meth:`from_lc0`)."""
        w: dict[str, Any] = {}
        embed = self.embed
        w.update(_dense(embed.dense, "ip_emb_w", "ip_emb_b"))
        if embed.kind == InputEmbedding.PE_DENSE:
            w.update(_dense(embed.preprocess, "ip_emb_preproc_w", "ip_emb_preproc_b"))
            w.update(_norm(embed.norm, "ip_emb_ln"))
            assert embed.ffn is not None and embed.out_norm is not None
            w["ip_emb_ffn"] = _ffn(embed.ffn)
            w.update(_norm(embed.out_norm, "ip_emb_ffn_ln"))
        if embed.mult_gate is not None:
            w["ip_mult_gate"] = _numpy(embed.mult_gate.T)
        if embed.add_gate is not None:
            w["ip_add_gate"] = _numpy(embed.add_gate.T)
        w["encoder"] = [_encoder_layer(block) for block in self.blocks]
        w["headcount"] = self.blocks[0].attn.heads
        if self.smolgen_global is not None:
            w["smolgen_w"] = _numpy(self.smolgen_global.weight)
        multihead = (
            self.network_format.network == NetworkStructure.ATTENTIONBODY_WITH_MULTIHEADFORMAT
        )
        if multihead:
            policy: dict[str, Any] = {}
            if self.policy_tokens is not None:
                policy.update(_dense(self.policy_tokens, "ip_pol_w", "ip_pol_b"))
            for key, public in POLICY_HEAD_NAMES.items():
                if public in self.policy_heads:
                    policy[key] = _policy_head(self.policy_heads[public])
            w["policy_heads"] = policy
            w["value_heads"] = {
                key: _value_head(self.value_heads[public])
                for key, public in VALUE_HEAD_NAMES.items()
                if public in self.value_heads
            }
        else:
            w.update(_policy_head(self.policy_heads["vanilla"]))
            w.update(_value_head(self.value_heads["winner"]))
        if self.moves_left_head is not None:
            head = self.moves_left_head
            w.update(_dense(head.embed, "ip_mov_w", "ip_mov_b"))
            w.update(_dense(head.fc1, "ip1_mov_w", "ip1_mov_b"))
            w.update(_dense(head.fc2, "ip2_mov_w", "ip2_mov_b"))
        return Lc0Weights(format=self.network_format, weights=w, min_version=(0, 30, 0))


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy().reshape(-1).copy()


def _dense(linear: nn.Linear, weight: str, bias: str | None) -> dict[str, np.ndarray]:
    out = {weight: _numpy(linear.weight)}
    if bias is not None and linear.bias is not None:
        out[bias] = _numpy(linear.bias)
    return out


def _norm(norm: nn.LayerNorm, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}_gammas": _numpy(norm.weight), f"{prefix}_betas": _numpy(norm.bias)}


def _ffn(ffn: FeedForward) -> dict[str, np.ndarray]:
    return {
        **_dense(ffn.linear1, "dense1_w", "dense1_b"),
        **_dense(ffn.linear2, "dense2_w", "dense2_b"),
    }


def _encoder_layer(layer: EncoderLayer) -> dict[str, Any]:
    attention = layer.attn
    mha: dict[str, Any] = {}
    for name in ("q", "k", "v"):
        mha.update(_dense(getattr(attention, name), f"{name}_w", f"{name}_b"))
    mha.update(_dense(attention.out, "dense_w", "dense_b"))
    if attention.smolgen is not None:
        smolgen = attention.smolgen
        mha["smolgen"] = {
            **_dense(smolgen.compress, "compress", None),
            **_dense(smolgen.dense1, "dense1_w", "dense1_b"),
            **_norm(smolgen.ln1, "ln1"),
            **_dense(smolgen.dense2, "dense2_w", "dense2_b"),
            **_norm(smolgen.ln2, "ln2"),
        }
    return {
        "mha": mha,
        **_norm(layer.ln1, "ln1"),
        "ffn": _ffn(layer.mlp),
        **_norm(layer.ln2, "ln2"),
    }


def _policy_head(head: AttentionPolicyHead) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if head.tokens is not None:
        out.update(_dense(head.tokens, "ip_pol_w", "ip_pol_b"))
    if len(head.encoders):
        out["pol_encoder"] = [_encoder_layer(layer) for layer in head.encoders]
        out["pol_headcount"] = head.encoders[0].attn.heads
    out.update(_dense(head.q, "ip2_pol_w", "ip2_pol_b"))
    out.update(_dense(head.k, "ip3_pol_w", "ip3_pol_b"))
    out.update(_dense(head.promotion, "ip4_pol_w", None))
    return out


def _value_head(head: TokenHead) -> dict[str, Any]:
    return {
        **_dense(head.embed, "ip_val_w", "ip_val_b"),
        **_dense(head.fc1, "ip1_val_w", "ip1_val_b"),
        **_dense(head.fc2, "ip2_val_w", "ip2_val_b"),
    }


def _array(node: dict[str, Any], key: str, where: str) -> np.ndarray:
    if key not in node:
        raise CorruptWeightsError(f"the network is missing '{key}' (in {where})")
    return node[key]


def _load_linear(
    linear: nn.Linear, node: dict[str, Any], weight: str, bias: str | None, where: str
) -> None:
    _copy(linear.weight, _array(node, weight, where), f"{where}.{weight}")
    if bias is not None:
        _copy(linear.bias, _array(node, bias, where), f"{where}.{bias}")


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
    mha = _array(node, "mha", where)
    if any(key in mha for key in ("rpe_q", "rpe_k", "rpe_v")):
        raise UnsupportedNetworkError(
            "relative positional encodings (RPE) are not supported (nor by lc0)"
        )
    d_model = _array(mha, "q_w", f"{where}.mha").size // _array(mha, "q_b", f"{where}.mha").size
    d_attention = mha["q_b"].size
    smolgen = None
    if "smolgen" in mha:
        if smolgen_activation is None:
            raise CorruptWeightsError(f"{where} has smolgen weights but no global smolgen_w")
        s = mha["smolgen"]
        compressed = _array(s, "compress", f"{where}.smolgen").size // d_model
        hidden = _array(s, "dense1_b", f"{where}.smolgen").size
        smolgen = Smolgen(d_model, heads, compressed, hidden, smolgen_gen_size, smolgen_activation)
        if _array(s, "dense2_b", f"{where}.smolgen").size != heads * smolgen_gen_size:
            raise CorruptWeightsError(f"{where}.smolgen: dense2 does not match heads x gen size")
    attention = MultiHeadAttention(d_model, d_attention, heads, smolgen)
    d_ffn = _array(_array(node, "ffn", where), "dense1_b", f"{where}.ffn").size
    layer = EncoderLayer(attention, d_model, d_ffn, ffn_activation, alpha, epsilon)
    for name in ("q", "k", "v"):
        _load_linear(getattr(attention, name), mha, f"{name}_w", f"{name}_b", f"{where}.mha")
    _load_linear(attention.out, mha, "dense_w", "dense_b", f"{where}.mha")
    if smolgen is not None:
        s = mha["smolgen"]
        _load_linear(smolgen.compress, s, "compress", None, f"{where}.smolgen")
        _load_linear(smolgen.dense1, s, "dense1_w", "dense1_b", f"{where}.smolgen")
        _load_linear(smolgen.dense2, s, "dense2_w", "dense2_b", f"{where}.smolgen")
        _load_norm(smolgen.ln1, s, "ln1", f"{where}.smolgen")
        _load_norm(smolgen.ln2, s, "ln2", f"{where}.smolgen")
    _load_norm(layer.ln1, node, "ln1", where)
    _load_norm(layer.ln2, node, "ln2", where)
    _load_linear(layer.mlp.linear1, node["ffn"], "dense1_w", "dense1_b", f"{where}.ffn")
    _load_linear(layer.mlp.linear2, node["ffn"], "dense2_w", "dense2_b", f"{where}.ffn")
    return layer


def _load_norm(norm: nn.LayerNorm, node: dict[str, Any], prefix: str, where: str) -> None:
    _copy(norm.weight, _array(node, f"{prefix}_gammas", where), f"{where}.{prefix}_gammas")
    _copy(norm.bias, _array(node, f"{prefix}_betas", where), f"{where}.{prefix}_betas")


def build_policy_head(
    node: dict[str, Any],
    where: str,
    *,
    d_input: int,
    activation: ActivationFunction,
    shared_tokens: dict[str, Any] | None = None,
) -> AttentionPolicyHead:
    """An lc0 ``PolicyHead`` (or the legacy top-level fields) → :class:`AttentionPolicyHead`.

    ``pol_encoder`` layers use α = 1, ε = 1e-6, no smolgen and (as lc0's BLAS/CUDA
    backends) a SELU FFN activation.
    """
    own_tokens = "ip_pol_w" in node
    token_source = node if own_tokens else shared_tokens
    if token_source is None:
        raise CorruptWeightsError(f"{where} has no policy token embedding (ip_pol_w)")
    d_tokens = _array(token_source, "ip_pol_b", where).size
    d_policy = _array(node, "ip2_pol_b", where).size
    encoders = [
        build_encoder_layer(
            layer,
            f"{where}.pol_encoder.{i}",
            heads=int(node.get("pol_headcount", 0) or 1),
            alpha=1.0,
            epsilon=1e-6,
            ffn_activation=ActivationFunction("selu"),
            smolgen_activation=None,
            smolgen_gen_size=0,
        )
        for i, layer in enumerate(node.get("pol_encoder", []))
    ]
    head = AttentionPolicyHead(d_input, d_tokens, d_policy, activation, encoders, own_tokens)
    if head.tokens is not None:
        _load_linear(head.tokens, node, "ip_pol_w", "ip_pol_b", where)
    _load_linear(head.q, node, "ip2_pol_w", "ip2_pol_b", where)
    _load_linear(head.k, node, "ip3_pol_w", "ip3_pol_b", where)
    _load_linear(head.promotion, node, "ip4_pol_w", None, where)
    return head


class _TransformerLoader:
    def __init__(self, weights: Lc0Weights) -> None:
        self.format = weights.format
        self.w = weights.weights
        self.act = default_activation(self.format)

    def build(self) -> TransformerNetwork:
        fmt, w = self.format, self.w
        if fmt.value == ValueFormat.PARAM:
            raise UnsupportedNetworkError("VALUE_PARAM value heads are not supported (nor by lc0)")
        encoders = w.get("encoder", [])
        if not encoders:
            raise UnsupportedNetworkError(
                "attention-body networks without encoder layers are not supported"
            )
        if "residual" in w and w["residual"]:
            raise UnsupportedNetworkError("hybrid ResNet + attention bodies are not supported")
        heads = int(w.get("headcount", 0))
        if heads <= 0:
            raise CorruptWeightsError("the network has no attention head count (headcount)")
        d_model = _array(w, "ip_emb_b", "weights").size
        dense = fmt.input_embedding == InputEmbedding.PE_DENSE
        alpha = (2.0 * len(encoders)) ** -0.25
        epsilon = 1e-3 if dense else 1e-6
        ffn_activation = resolve_activation(fmt.ffn_activation, fmt.default_activation, "FFN")
        smolgen_activation = resolve_activation(
            fmt.smolgen_activation, fmt.default_activation, "smolgen"
        )
        smolgen_global = None
        gen_size = 0
        if "smolgen_w" in w:
            gen_size = w["smolgen_w"].size // 4096
            smolgen_global = nn.Linear(gen_size, 4096, bias=False)
            _copy(smolgen_global.weight, w["smolgen_w"], "smolgen_w")
        embed = self._embedding(d_model, alpha, ffn_activation)
        blocks = [
            build_encoder_layer(
                node,
                f"encoder.{i}",
                heads=heads,
                alpha=alpha,
                epsilon=epsilon,
                ffn_activation=ffn_activation,
                smolgen_activation=smolgen_activation if smolgen_global is not None else None,
                smolgen_gen_size=gen_size,
            )
            for i, node in enumerate(encoders)
        ]
        policy_heads, policy_tokens = self._policy_heads(d_model)
        value_heads = self._value_heads(d_model)
        moves_left = None
        if fmt.moves_left == MovesLeftFormat.V1 and "ip_mov_w" in w:
            moves_left = TokenHead(
                d_model,
                _array(w, "ip_mov_b", "weights").size,
                _array(w, "ip1_mov_b", "weights").size,
                1,
                self.act,
            )
            _load_linear(moves_left.embed, w, "ip_mov_w", "ip_mov_b", "weights")
            _load_linear(moves_left.fc1, w, "ip1_mov_w", "ip1_mov_b", "weights")
            _load_linear(moves_left.fc2, w, "ip2_mov_w", "ip2_mov_b", "weights")
        return TransformerNetwork(
            fmt,
            embed,
            blocks,
            smolgen_global,
            policy_heads,
            policy_tokens,
            value_heads,
            moves_left,
        ).eval()

    def _embedding(
        self, d_model: int, alpha: float, ffn_activation: ActivationFunction
    ) -> InputEmbeddingLayer:
        fmt, w = self.format, self.w
        kind = fmt.input_embedding
        if kind == InputEmbedding.NONE:
            # lc0's BLAS backend treats NONE without residual blocks as PE_MAP.
            kind = InputEmbedding.PE_MAP
        gates = ("ip_mult_gate" in w, "ip_add_gate" in w)
        if kind == InputEmbedding.PE_DENSE:
            dense_size = _array(w, "ip_emb_preproc_b", "weights").size // 64
            ffn_size = _array(w.get("ip_emb_ffn", {}), "dense1_b", "ip_emb_ffn").size
            embed = InputEmbeddingLayer(
                kind,
                d_model,
                self.act,
                dense_size=dense_size,
                gates=gates,
                ffn_size=ffn_size,
                ffn_activation=ffn_activation,
                alpha=alpha,
            )
            _load_linear(embed.preprocess, w, "ip_emb_preproc_w", "ip_emb_preproc_b", "weights")
            _load_norm(embed.norm, w, "ip_emb_ln", "weights")
            assert embed.ffn is not None and embed.out_norm is not None
            _load_linear(embed.ffn.linear1, w["ip_emb_ffn"], "dense1_w", "dense1_b", "ip_emb_ffn")
            _load_linear(embed.ffn.linear2, w["ip_emb_ffn"], "dense2_w", "dense2_b", "ip_emb_ffn")
            _load_norm(embed.out_norm, w, "ip_emb_ffn_ln", "weights")
        else:
            embed = InputEmbeddingLayer(kind, d_model, self.act, gates=gates)
        _load_linear(embed.dense, w, "ip_emb_w", "ip_emb_b", "weights")
        if embed.mult_gate is not None:
            _copy(
                embed.mult_gate,
                _array(w, "ip_mult_gate", "weights").reshape(d_model, 64).T,
                "ip_mult_gate",
            )
        if embed.add_gate is not None:
            _copy(
                embed.add_gate,
                _array(w, "ip_add_gate", "weights").reshape(d_model, 64).T,
                "ip_add_gate",
            )
        return embed

    def _policy_heads(
        self, d_model: int
    ) -> tuple[dict[str, AttentionPolicyHead], nn.Linear | None]:
        w = self.w
        multihead = self.format.network == NetworkStructure.ATTENTIONBODY_WITH_MULTIHEADFORMAT
        if not multihead or "policy_heads" not in w:
            return {
                "vanilla": build_policy_head(w, "weights", d_input=d_model, activation=self.act)
            }, None
        heads_node = w["policy_heads"]
        shared = heads_node if "ip_pol_w" in heads_node else None
        heads = {
            public: build_policy_head(
                heads_node[key],
                f"policy_heads.{key}",
                d_input=d_model,
                activation=self.act,
                shared_tokens=shared,
            )
            for key, public in POLICY_HEAD_NAMES.items()
            if key in heads_node
        }
        if "vanilla" not in heads:
            raise CorruptWeightsError("multihead network without a vanilla policy head")
        tokens = None
        if shared is not None:
            tokens = nn.Linear(d_model, shared["ip_pol_b"].size)
            _load_linear(tokens, shared, "ip_pol_w", "ip_pol_b", "policy_heads")
        return heads, tokens

    def _value_heads(self, d_model: int) -> dict[str, TokenHead]:
        w = self.w
        multihead = self.format.network == NetworkStructure.ATTENTIONBODY_WITH_MULTIHEADFORMAT
        sources = (
            {
                public: (w["value_heads"][key], f"value_heads.{key}")
                for key, public in VALUE_HEAD_NAMES.items()
                if key in w["value_heads"]
            }
            if multihead and "value_heads" in w
            else {"winner": (w, "weights")}
        )
        heads = {}
        for name, (node, where) in sources.items():
            outputs = _array(node, "ip2_val_b", where).size
            if outputs not in (1, 3):
                raise CorruptWeightsError(f"{where}: value head has {outputs} outputs")
            head = TokenHead(
                d_model,
                _array(node, "ip_val_b", where).size,
                _array(node, "ip1_val_b", where).size,
                outputs,
                self.act,
            )
            _load_linear(head.embed, node, "ip_val_w", "ip_val_b", where)
            _load_linear(head.fc1, node, "ip1_val_w", "ip1_val_b", where)
            _load_linear(head.fc2, node, "ip2_val_w", "ip2_val_b", where)
            heads[name] = head
        return heads


__all__ = [
    "AttentionPolicyHead",
    "EncoderLayer",
    "InputEmbeddingLayer",
    "MultiHeadAttention",
    "Smolgen",
    "TransformerNetwork",
    "build_encoder_layer",
    "build_policy_head",
    "positional_encoding_table",
]
