"""A typed, printable summary of an lc0 network, derived from layer sizes.

Sizes are inferred from the weights themselves, never from the file name or header alone
(file names lie and headers are incomplete).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from leelalab.lc0.weights.enums import NetworkStructure

if TYPE_CHECKING:
    from leelalab.lc0.weights.file import Lc0Weights


@dataclass(frozen=True)
class NetworkDescription:
    """What a network is, in the terms researchers use ("SE-ResNet 6x64", "768x15x24h")."""

    family: str
    """``"resnet"``, ``"se-resnet"``, ``"transformer"`` or ``"onnx"``."""
    blocks: int | None
    filters: int | None
    se_channels: int | None
    layers: int | None
    d_model: int | None
    heads: int | None
    ffn_size: int | None
    smolgen: bool
    input_format: str
    network_structure: str
    policy: str
    value: str
    moves_left: str
    input_embedding: str
    default_activation: str
    smolgen_activation: str
    ffn_activation: str
    parameter_count: int
    min_version: str | None
    layer_encodings: dict[str, int]
    sha256: str | None

    @property
    def architecture(self) -> str:
        if self.family in ("resnet", "se-resnet"):
            return f"{self.blocks}x{self.filters}"
        if self.family == "transformer":
            return f"{self.d_model}x{self.layers}x{self.heads}h"
        return "onnx"

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": self.architecture, **asdict(self)}

    def __str__(self) -> str:
        if self.family in ("resnet", "se-resnet"):
            body = f"{self.blocks} blocks x {self.filters} filters"
            if self.se_channels:
                body += f", SE {self.se_channels} channels"
        elif self.family == "transformer":
            body = (
                f"{self.layers} layers x d_model {self.d_model} x {self.heads} heads, "
                f"FFN {self.ffn_size}, smolgen {'yes' if self.smolgen else 'no'}, "
                f"embedding {self.input_embedding}"
            )
        else:
            body = "embedded ONNX model"
        rows = [
            ("family", f"{self.family} ({self.architecture})"),
            ("body", body),
            ("input format", self.input_format),
            ("network structure", self.network_structure),
            ("policy head", self.policy),
            ("value head", self.value),
            ("moves-left head", self.moves_left),
            ("activations", self._activations()),
            ("parameters", f"{self.parameter_count:,}"),
            ("min lc0 version", self.min_version or "unset"),
            ("layer encodings", ", ".join(f"{k}: {v}" for k, v in self.layer_encodings.items())),
            ("sha256", self.sha256 or "unknown"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)

    def _activations(self) -> str:
        text = f"default {self.default_activation}"
        if self.family == "transformer":
            text += f", FFN {self.ffn_activation}, smolgen {self.smolgen_activation}"
        return text


def _size(node: dict[str, Any] | None, key: str) -> int:
    if not node or key not in node:
        return 0
    return int(node[key].size)


def describe(weights: Lc0Weights) -> NetworkDescription:
    """Summarise ``weights``; see :class:`NetworkDescription`."""
    fmt = weights.format
    w = weights.weights
    blocks = filters = se_channels = layers = d_model = heads = ffn_size = None
    smolgen = False
    if fmt.network == NetworkStructure.ONNX or weights.onnx_model is not None:
        family = "onnx"
    elif fmt.network in (
        NetworkStructure.ATTENTIONBODY_WITH_HEADFORMAT,
        NetworkStructure.ATTENTIONBODY_WITH_MULTIHEADFORMAT,
    ):
        family = "transformer"
        encoders = w.get("encoder", [])
        layers = len(encoders)
        d_model = _size(w, "ip_emb_b") or None
        heads = int(w.get("headcount", 0)) or None
        if encoders:
            ffn_size = _size(encoders[0].get("ffn"), "dense1_b") or None
            smolgen = "smolgen" in encoders[0].get("mha", {})
    else:
        residual = w.get("residual", [])
        blocks = len(residual)
        input_block = w.get("input", {})
        filters = _size(input_block, "biases") or _size(input_block, "bn_means") or None
        se = residual[0].get("se") if residual else None
        se_channels = _size(se, "b1") or None
        family = "se-resnet" if se_channels else "resnet"
    version = weights.min_version
    return NetworkDescription(
        family=family,
        blocks=blocks,
        filters=filters,
        se_channels=se_channels,
        layers=layers,
        d_model=d_model,
        heads=heads,
        ffn_size=ffn_size,
        smolgen=smolgen,
        input_format=fmt.input.name,
        network_structure=fmt.network.name,
        policy=fmt.policy.name,
        value=fmt.value.name,
        moves_left=fmt.moves_left.name,
        input_embedding=fmt.input_embedding.name,
        default_activation=fmt.default_activation.name,
        smolgen_activation=fmt.smolgen_activation.name,
        ffn_activation=fmt.ffn_activation.name,
        parameter_count=weights.parameter_count,
        min_version=None if version is None else ".".join(map(str, version)),
        layer_encodings=dict(weights.layer_encodings),
        sha256=weights.sha256,
    )
