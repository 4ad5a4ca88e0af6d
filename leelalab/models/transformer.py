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

from typing import Any

import numpy as np
import torch
from torch import nn

from leelalab.errors import CorruptWeightsError, UnsupportedNetworkError
from leelalab.hooks import HookPoint
from leelalab.lc0.weights.enums import (
    InputEmbedding,
    MovesLeftFormat,
    NetworkStructure,
    PolicyFormat,
    ValueFormat,
)
from leelalab.lc0.weights.file import Lc0Weights, NetworkFormat
from leelalab.models.attention_policy import (
    AttentionPolicyHead,
    build_policy_head,
    policy_head_weights,
)
from leelalab.models.base import (
    ActivationFunction,
    LeelaNetwork,
    NetworkOutput,
    check_value_outputs,
    default_activation,
    resolve_activation,
    use_inference_linears,
    value_to_wdl,
)
from leelalab.models.base import (
    copy_parameter as _copy,
)
from leelalab.models.encoder import (
    EncoderLayer,
    FeedForward,
    build_encoder_layer,
    dense_weights,
    encoder_layer_weights,
    ffn_weights,
    load_linear,
    load_norm,
    norm_weights,
    numpy_of,
    require_array,
)

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
        # The body is mostly dense products: run them in oneDNN at inference on CPU.
        use_inference_linears(self)
        self.setup_hooks()

    def forward(self, planes: torch.Tensor) -> NetworkOutput:
        """Evaluate ``planes`` of shape ``(batch, 112, 8, 8)``; see :class:`NetworkOutput`."""
        x = self.embed(planes)
        for block in self.blocks:
            x = block(x, self.smolgen_global)
        return self._heads(x)

    _input_layer_name = "embedding"

    def residual_hook_name(self, layer: int) -> str:
        self._check_layer(layer)
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
        w.update(dense_weights(embed.dense, "ip_emb_w", "ip_emb_b"))
        if embed.kind == InputEmbedding.PE_DENSE:
            w.update(dense_weights(embed.preprocess, "ip_emb_preproc_w", "ip_emb_preproc_b"))
            w.update(norm_weights(embed.norm, "ip_emb_ln"))
            assert embed.ffn is not None and embed.out_norm is not None
            w["ip_emb_ffn"] = ffn_weights(embed.ffn)
            w.update(norm_weights(embed.out_norm, "ip_emb_ffn_ln"))
        if embed.mult_gate is not None:
            w["ip_mult_gate"] = numpy_of(embed.mult_gate.T)
        if embed.add_gate is not None:
            w["ip_add_gate"] = numpy_of(embed.add_gate.T)
        w["encoder"] = [encoder_layer_weights(block) for block in self.blocks]
        w["headcount"] = self.blocks[0].attn.heads
        if self.smolgen_global is not None:
            w["smolgen_w"] = numpy_of(self.smolgen_global.weight)
        multihead = (
            self.network_format.network == NetworkStructure.ATTENTIONBODY_WITH_MULTIHEADFORMAT
        )
        if multihead:
            policy: dict[str, Any] = {}
            if self.policy_tokens is not None:
                policy.update(dense_weights(self.policy_tokens, "ip_pol_w", "ip_pol_b"))
            for key, public in POLICY_HEAD_NAMES.items():
                if public in self.policy_heads:
                    policy[key] = policy_head_weights(self.policy_heads[public])
            w["policy_heads"] = policy
            w["value_heads"] = {
                key: _value_head(self.value_heads[public])
                for key, public in VALUE_HEAD_NAMES.items()
                if public in self.value_heads
            }
        else:
            w.update(policy_head_weights(self.policy_heads["vanilla"]))
            w.update(_value_head(self.value_heads["winner"]))
        if self.moves_left_head is not None:
            head = self.moves_left_head
            w.update(dense_weights(head.embed, "ip_mov_w", "ip_mov_b"))
            w.update(dense_weights(head.fc1, "ip1_mov_w", "ip1_mov_b"))
            w.update(dense_weights(head.fc2, "ip2_mov_w", "ip2_mov_b"))
        return Lc0Weights(format=self.network_format, weights=w, min_version=(0, 30, 0))


def _value_head(head: TokenHead) -> dict[str, Any]:
    return {
        **dense_weights(head.embed, "ip_val_w", "ip_val_b"),
        **dense_weights(head.fc1, "ip1_val_w", "ip1_val_b"),
        **dense_weights(head.fc2, "ip2_val_w", "ip2_val_b"),
    }


class _TransformerLoader:
    def __init__(self, weights: Lc0Weights) -> None:
        self.format = weights.format
        self.w = weights.weights
        self.act = default_activation(self.format)

    def build(self) -> TransformerNetwork:
        fmt, w = self.format, self.w
        if fmt.value == ValueFormat.PARAM:
            raise UnsupportedNetworkError("VALUE_PARAM value heads are not supported (nor by lc0)")
        if fmt.policy != PolicyFormat.ATTENTION:
            raise UnsupportedNetworkError(
                f"policy format {fmt.policy.name} with an attention body is not supported "
                "(attention bodies have attention policies)"
            )
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
        d_model = require_array(w, "ip_emb_b", "weights").size
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
                require_array(w, "ip_mov_b", "weights").size,
                require_array(w, "ip1_mov_b", "weights").size,
                1,
                self.act,
            )
            load_linear(moves_left.embed, w, "ip_mov_w", "ip_mov_b", "weights")
            load_linear(moves_left.fc1, w, "ip1_mov_w", "ip1_mov_b", "weights")
            load_linear(moves_left.fc2, w, "ip2_mov_w", "ip2_mov_b", "weights")
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
            dense_size = require_array(w, "ip_emb_preproc_b", "weights").size // 64
            ffn_size = require_array(w.get("ip_emb_ffn", {}), "dense1_b", "ip_emb_ffn").size
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
            load_linear(embed.preprocess, w, "ip_emb_preproc_w", "ip_emb_preproc_b", "weights")
            load_norm(embed.norm, w, "ip_emb_ln", "weights")
            assert embed.ffn is not None and embed.out_norm is not None
            load_linear(embed.ffn.linear1, w["ip_emb_ffn"], "dense1_w", "dense1_b", "ip_emb_ffn")
            load_linear(embed.ffn.linear2, w["ip_emb_ffn"], "dense2_w", "dense2_b", "ip_emb_ffn")
            load_norm(embed.out_norm, w, "ip_emb_ffn_ln", "weights")
        else:
            embed = InputEmbeddingLayer(kind, d_model, self.act, gates=gates)
        load_linear(embed.dense, w, "ip_emb_w", "ip_emb_b", "weights")
        if embed.mult_gate is not None:
            _copy(
                embed.mult_gate,
                require_array(w, "ip_mult_gate", "weights").reshape(d_model, 64).T,
                "ip_mult_gate",
            )
        if embed.add_gate is not None:
            _copy(
                embed.add_gate,
                require_array(w, "ip_add_gate", "weights").reshape(d_model, 64).T,
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
            tokens = nn.Linear(d_model, require_array(shared, "ip_pol_b", "policy_heads").size)
            load_linear(tokens, shared, "ip_pol_w", "ip_pol_b", "policy_heads")
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
            outputs = require_array(node, "ip2_val_b", where).size
            check_value_outputs(self.format, outputs, f"{where}.ip2_val_b")
            head = TokenHead(
                d_model,
                require_array(node, "ip_val_b", where).size,
                require_array(node, "ip1_val_b", where).size,
                outputs,
                self.act,
            )
            load_linear(head.embed, node, "ip_val_w", "ip_val_b", where)
            load_linear(head.fc1, node, "ip1_val_w", "ip1_val_b", where)
            load_linear(head.fc2, node, "ip2_val_w", "ip2_val_b", where)
            heads[name] = head
        return heads


__all__ = [
    "InputEmbeddingLayer",
    "TokenHead",
    "TransformerNetwork",
    "positional_encoding_table",
]
