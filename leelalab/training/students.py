"""Fresh, trainable student networks of every family leelalab's lc0 writer supports.

A student is one of the project's own modules (:class:`~leelalab.models.resnet.ResNet` or
:class:`~leelalab.models.transformer.TransformerNetwork`), so ``student.to_lc0()`` and
:func:`leelalab.lc0.weights.save_weights` write a file lc0 itself loads. The module is
built from a correctly shaped random lc0 network (:mod:`leelalab.lc0.weights.synthetic`),
then every parameter is re-initialised for training:

- linear and convolution weights ~ N(0, 1/fan_in), biases 0;
- attention bodies use lc0's post-LayerNorm DeepNorm residuals ``LN(x + α·f(x))``; following
  DeepNet (Wang et al. 2022) the value, output and feed-forward projections are scaled by
  ``β = (8N)^(-1/4)`` so early updates stay small; LayerNorms start at (1, 0), the input
  gates at (×1, +0);
- the last layers of the policy, value and moves-left heads start at zero (a uniform policy
  over legal moves, W = D = L), so the first losses are the same for every seed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
from torch import nn

from leelalab.errors import LeelaLabError
from leelalab.lc0.weights.enums import NetworkStructure, PolicyFormat
from leelalab.lc0.weights.file import NetworkFormat
from leelalab.lc0.weights.synthetic import random_transformer_weights
from leelalab.models.attention_policy import AttentionPolicyHead
from leelalab.models.base import LeelaNetwork
from leelalab.models.encoder import EncoderLayer, Smolgen
from leelalab.models.resnet import ResNet, ResNetShape
from leelalab.models.transformer import TransformerNetwork

FAMILIES = ("resnet", "transformer")
# The input formats whose encodings leelalab and lc0's v0.31 backends both run for students.
SUPPORTED_INPUT_FORMATS = (1,)


class StudentConfigError(LeelaLabError, ValueError):
    """A student shape the lc0 writer (or lc0) cannot express."""


@dataclass(frozen=True)
class StudentConfig:
    """The shape of a student network.

    ResNet fields: ``blocks``, ``filters``, ``se_channels`` (0: no squeeze-excitation).
    Transformer fields (network 6, PE_MAP embedding, attention policy): ``layers``,
    ``d_model``, ``heads``, ``ffn_size``, ``smolgen`` (``(compressed, hidden, gen size)``
    or ``None``), ``policy_size`` (attention-policy query/key width). Both: ``value_channels``,
    ``value_hidden``, ``moves_left`` (a moves-left head), ``activation``.
    """

    family: Literal["resnet", "transformer"] = "transformer"
    # ResNet
    blocks: int = 2
    filters: int = 16
    se_channels: int = 0
    # Transformer
    layers: int = 6
    d_model: int = 128
    heads: int = 8
    ffn_size: int = 256
    smolgen: tuple[int, int, int] | None = None
    policy_size: int = 128
    # Both
    value_channels: int = 32
    value_hidden: int = 128
    moves_left: bool = False
    moves_left_channels: int = 8
    moves_left_hidden: int = 32
    activation: Literal["relu", "mish"] = "relu"

    def validate(self) -> None:
        """Raise :class:`StudentConfigError` (one line) for shapes lc0 files cannot hold."""
        if self.family not in FAMILIES:
            raise StudentConfigError(
                f"unknown student family {self.family!r}; choose one of: {', '.join(FAMILIES)}"
            )
        if self.activation not in ("relu", "mish"):
            raise StudentConfigError(
                f"activation {self.activation!r}: lc0 bodies use relu or mish (the default)"
            )
        sizes = ["value_channels", "value_hidden"]
        if self.moves_left:
            sizes += ["moves_left_channels", "moves_left_hidden"]
        if self.family == "resnet":
            sizes += ["blocks", "filters"]
            if self.se_channels < 0:
                raise StudentConfigError("se_channels must be 0 (no SE) or positive")
        else:
            sizes += ["layers", "d_model", "heads", "ffn_size", "policy_size"]
        for name in sizes:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise StudentConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.family == "transformer":
            if self.d_model % self.heads:
                raise StudentConfigError(
                    f"d_model {self.d_model} does not split into {self.heads} heads: lc0's "
                    "attention needs d_model divisible by the head count"
                )
            if self.smolgen is not None:
                if len(self.smolgen) != 3 or any(
                    not isinstance(v, int) or v < 1 for v in self.smolgen
                ):
                    raise StudentConfigError(
                        "smolgen must be three positive integers (compressed, hidden, gen size)"
                    )

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        if self.smolgen is not None:
            record["smolgen"] = list(self.smolgen)
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> StudentConfig:
        known = {field.name for field in fields(cls)}
        unknown = set(record) - known
        if unknown:
            raise StudentConfigError(f"unknown student settings: {', '.join(sorted(unknown))}")
        values = dict(record)
        if values.get("smolgen") is not None:
            values["smolgen"] = tuple(values["smolgen"])
        return cls(**values)


def new_student(config: StudentConfig, input_format: int = 1, *, seed: int = 0) -> LeelaNetwork:
    """A freshly initialised student in train mode (CPU, float32)."""
    config.validate()
    if input_format not in SUPPORTED_INPUT_FORMATS:
        raise StudentConfigError(
            f"input format {input_format}: students support the classical 112-plane format (1)"
        )
    generator = torch.Generator().manual_seed(seed)
    if config.family == "resnet":
        network: LeelaNetwork = _new_resnet(config, input_format)
    else:
        network = _new_transformer(config, input_format)
    initialise(network, generator)
    return network.train()


def _new_resnet(config: StudentConfig, input_format: int) -> ResNet:
    network_format = NetworkFormat.build(
        input_format,
        NetworkStructure.SE_WITH_HEADFORMAT
        if config.se_channels
        else NetworkStructure.CLASSICAL_WITH_HEADFORMAT,
        PolicyFormat.CONVOLUTION,
        wdl=True,
        moves_left=config.moves_left,
        mish=config.activation == "mish",
    )
    shape = ResNetShape(
        filters=config.filters,
        blocks=config.blocks,
        se_channels=config.se_channels,
        value_channels=config.value_channels,
        value_hidden=config.value_hidden,
        moves_left_channels=config.moves_left_channels if config.moves_left else 0,
        moves_left_hidden=config.moves_left_hidden if config.moves_left else 0,
    )
    return ResNet(network_format, shape)


def _new_transformer(config: StudentConfig, input_format: int) -> TransformerNetwork:
    # The synthetic builder lays out exactly the tensors an lc0 file of this shape holds;
    # its random values are replaced by initialise().
    weights = random_transformer_weights(
        layers=config.layers,
        d_model=config.d_model,
        heads=config.heads,
        ffn_size=config.ffn_size,
        embedding="pe_map",
        gates=True,
        smolgen=config.smolgen,
        policy_tokens=config.d_model,
        policy_size=config.policy_size,
        value="wdl",
        value_channels=config.value_channels,
        value_hidden=config.value_hidden,
        moves_left=config.moves_left,
        moves_left_channels=config.moves_left_channels,
        moves_left_hidden=config.moves_left_hidden,
        activation=config.activation,
        input_format=input_format,
    )
    return TransformerNetwork.from_lc0(weights)


def _normal(tensor: torch.Tensor, std: float, generator: torch.Generator) -> None:
    with torch.no_grad():
        tensor.copy_(torch.randn(tensor.shape, generator=generator) * std)


def _fan_in(weight: torch.Tensor) -> int:
    return int(weight[0].numel())


def initialise(network: LeelaNetwork, generator: torch.Generator) -> None:
    """Re-initialise every parameter of a student (see the module docstring)."""
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.Linear | nn.Conv2d):
                _normal(module.weight, 1.0 / math.sqrt(_fan_in(module.weight)), generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        if isinstance(network, TransformerNetwork):
            _initialise_transformer(network, generator)
        else:
            _zero_last_layers(network)


def _initialise_transformer(network: TransformerNetwork, generator: torch.Generator) -> None:
    embed = network.embed
    if embed.mult_gate is not None:
        embed.mult_gate.fill_(1.0)
    if embed.add_gate is not None:
        embed.add_gate.zero_()
    beta = (8.0 * len(network.blocks)) ** -0.25
    for block in network.blocks:
        assert isinstance(block, EncoderLayer)
        for linear in (block.attn.v, block.attn.out, block.mlp.linear1, block.mlp.linear2):
            linear.weight.mul_(beta)
        smolgen = block.attn.smolgen
        if isinstance(smolgen, Smolgen):
            # Start with (almost) no position-dependent bias.
            smolgen.dense2.weight.mul_(0.1)
    if network.smolgen_global is not None:
        network.smolgen_global.weight.mul_(0.1)
    for head in network.policy_heads.values():
        assert isinstance(head, AttentionPolicyHead)
        head.promotion.weight.zero_()
        # Small queries: near-uniform first policies without a dead gradient.
        head.q.weight.mul_(0.1)
    for head in network.value_heads.values():
        head.fc2.weight.zero_()
    if network.moves_left_head is not None:
        network.moves_left_head.fc2.weight.zero_()
        # Start near a typical remaining game length so the final ReLU passes gradients.
        network.moves_left_head.fc2.bias.fill_(40.0)


def _zero_last_layers(network: LeelaNetwork) -> None:
    assert isinstance(network, ResNet)
    network.value_head.fc2.weight.zero_()
    if network.moves_left_head is not None:
        network.moves_left_head.fc2.weight.zero_()
        network.moves_left_head.fc2.bias.fill_(40.0)


def describe_student(network: LeelaNetwork) -> dict[str, Any]:
    """Parameter count and the module class, for run records."""
    return {
        "class": type(network).__name__,
        "parameters": int(sum(p.numel() for p in network.parameters())),
    }


__all__ = [
    "FAMILIES",
    "StudentConfig",
    "StudentConfigError",
    "describe_student",
    "initialise",
    "new_student",
]
