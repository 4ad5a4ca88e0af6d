"""lc0's attention policy head, shared by transformer bodies and ResNet bodies (T78/T79).

A move's logit is a scaled dot product between a query at its from-square and a key at its
to-square. Promotions add learned per-piece offsets computed from the last-rank keys:
``promo[a, 3b + p] = L[48 + a, 56 + b] + off[b, p] + off[b, knight]`` (unscaled offsets;
the knight offset is added to every promotion, and the plain ``L`` entry is itself the
knight promotion). The 4096 + 192 entries are gathered into lc0's 1858-move index.

Hooks: ``hook_tokens`` ``(batch, 64, d_tokens)``, ``hook_q`` / ``hook_k``
``(batch, 64, d_policy)``, ``hook_scores`` ``(batch, 64_from, 64_to)`` (scaled),
``hook_logits`` ``(batch, 1858)``. Squares are in the side-to-move frame.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from leelalab.errors import CorruptWeightsError
from leelalab.hooks import HookPoint
from leelalab.lc0 import policy_map
from leelalab.models.base import ActivationFunction
from leelalab.models.encoder import (
    build_encoder_layer,
    dense_weights,
    encoder_layer_weights,
    load_linear,
    require_array,
)


class AttentionPolicyHead(nn.Module):
    """Token embedding, optional policy encoder layers, then the from/to attention logits.

    Args:
        d_input: width of the body's tokens.
        d_tokens: width of the policy tokens (``ip_pol_b``).
        d_policy: width of queries and keys (``ip2_pol_b``).
        activation: token activation (the default activation for transformer bodies,
            SELU for ResNet bodies).
        encoders: ``pol_encoder`` layers (T78-style nets), run on the tokens.
        own_tokens: ``False`` when the token embedding is shared between heads (multihead
            files) and passed to :meth:`forward` instead.
    """

    def __init__(
        self,
        d_input: int,
        d_tokens: int,
        d_policy: int,
        activation: ActivationFunction,
        encoders: list[nn.Module] | None = None,
        own_tokens: bool = True,
    ) -> None:
        super().__init__()
        self.tokens = nn.Linear(d_input, d_tokens) if own_tokens else None
        self.activation = activation
        self.encoders = nn.ModuleList(encoders or [])
        self.q = nn.Linear(d_tokens, d_policy)
        self.k = nn.Linear(d_tokens, d_policy)
        self.promotion = nn.Linear(d_policy, 4, bias=False)
        self.scale = 1.0 / math.sqrt(d_policy)
        self.hook_tokens = HookPoint()
        self.hook_q = HookPoint()
        self.hook_k = HookPoint()
        self.hook_scores = HookPoint()
        self.hook_logits = HookPoint()
        gather = torch.from_numpy(policy_map.attention_policy_gather_index().copy())
        self.register_buffer("gather_index", gather, persistent=False)

    def forward(self, x: torch.Tensor, shared_tokens: nn.Linear | None = None) -> torch.Tensor:
        """``x``: ``(batch, 64, d_input)`` → policy logits ``(batch, 1858)``."""
        embed = self.tokens if self.tokens is not None else shared_tokens
        if embed is None:
            raise RuntimeError("this policy head needs the shared token embedding")
        tokens = self.activation(embed(x))
        for encoder in self.encoders:
            tokens = encoder(tokens)
        tokens = self.hook_tokens(tokens)
        q = self.hook_q(self.q(tokens))
        k = self.hook_k(self.k(tokens))
        scores = self.hook_scores(torch.matmul(q, k.transpose(1, 2)) * self.scale)
        # Promotion offsets from the keys of the 8 last-rank squares; (queen, rook, bishop)
        # each also get the knight offset.
        offsets = self.promotion(k[:, 56:64, :])  # (batch, 8 to-files, 4)
        offsets = offsets[:, :, :3] + offsets[:, :, 3:4]
        promotions = scores[:, 48:56, 56:64, None] + offsets[:, None, :, :]  # (b, 8, 8, 3)
        flat = torch.cat([scores.flatten(1), promotions.flatten(1)], dim=1)  # (batch, 4288)
        return self.hook_logits(flat.index_select(1, self.gather_index))


def policy_head_weights(head: AttentionPolicyHead) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if head.tokens is not None:
        out.update(dense_weights(head.tokens, "ip_pol_w", "ip_pol_b"))
    if len(head.encoders):
        out["pol_encoder"] = [encoder_layer_weights(layer) for layer in head.encoders]
        out["pol_headcount"] = head.encoders[0].attn.heads
    out.update(dense_weights(head.q, "ip2_pol_w", "ip2_pol_b"))
    out.update(dense_weights(head.k, "ip3_pol_w", "ip3_pol_b"))
    out.update(dense_weights(head.promotion, "ip4_pol_w", None))
    return out


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
    d_tokens = require_array(token_source, "ip_pol_b", where).size
    d_policy = require_array(node, "ip2_pol_b", where).size
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
        load_linear(head.tokens, node, "ip_pol_w", "ip_pol_b", where)
    load_linear(head.q, node, "ip2_pol_w", "ip2_pol_b", where)
    load_linear(head.k, node, "ip3_pol_w", "ip3_pol_b", where)
    load_linear(head.promotion, node, "ip4_pol_w", None, where)
    return head
