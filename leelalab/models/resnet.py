"""Classical lc0 residual networks (network structures 3 and 4), with or without SE units.

Body: a 3×3 input convolution, then residual blocks (two 3×3 convolutions, optional
squeeze-and-excitation), all with lc0's batch norm folded into the convolutions at load time.
Heads: classical or convolution policy, classical (tanh) or WDL value, optional moves-left.

Hook points (``[batch, 64, C]`` tensors, squares in the side-to-move frame):

=================================  ===============================================
``input.hook_out``                 after the input convolution and activation
``blocks.{i}.hook_resid_pre``      the block's input
``blocks.{i}.hook_conv1``          after conv1 and its activation
``blocks.{i}.hook_conv2``          after conv2 (folded bias included), before SE
``blocks.{i}.hook_se``             SE output ``g * z + c`` (SE blocks only)
``blocks.{i}.hook_resid_post``     the block's output, after the skip and activation
``policy_head.hook_hidden``        policy conv1 output (conv policy) / policy conv
``value_head.hook_hidden``         value conv output
``moves_left_head.hook_hidden``    moves-left conv output
=================================  ===============================================

plus ``policy_head.hook_logits`` ``(batch, 1858)``, ``value_head.hook_logits``
``(batch, 3 or 1)`` and ``moves_left_head.hook_out`` ``(batch, 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from leelalab.errors import CorruptWeightsError, NonFiniteWeightsError, UnsupportedNetworkError
from leelalab.hooks import HookPoint
from leelalab.lc0 import policy_map
from leelalab.lc0.weights.enums import MovesLeftFormat, PolicyFormat
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
    value_to_wdl,
)
from leelalab.models.base import (
    copy_parameter as _copy,
)

BN_EPSILON = 1e-5


def fold_conv_block(block: dict[str, Any], name: str) -> tuple[np.ndarray, np.ndarray]:
    """lc0's load-time batch-norm folding of a ``ConvBlock`` (float32, as lc0).

    ``bn_stddivs`` holds the *variance*. The bias enters as ``b - mean``; missing gammas and
    betas mean a scale-free BN (gamma 1, beta 0).

    Returns:
        ``(weight, bias)``: the flat folded weights and the per-channel bias.
    """
    weights = block.get("weights")
    if weights is None:
        raise CorruptWeightsError(f"convolution '{name}' has no weights")
    means = block.get("bn_means")
    biases = block.get("biases")
    channels = len(biases) if biases is not None else len(means) if means is not None else 0
    if channels == 0 or weights.size % channels:
        raise CorruptWeightsError(
            f"convolution '{name}': {weights.size} weights do not fit {channels} outputs"
        )
    bias = biases if biases is not None else np.zeros(channels, dtype=np.float32)
    if means is None:
        return weights, bias
    variances = block.get("bn_stddivs")
    gammas = block.get("bn_gammas")
    betas = block.get("bn_betas")
    if betas is None:
        gammas = np.ones(channels, dtype=np.float32)
        betas = np.zeros(channels, dtype=np.float32)
    elif gammas is None:
        gammas = np.ones(channels, dtype=np.float32)
    for label, array in (("bn_stddivs", variances), ("bn_gammas", gammas), ("bn_betas", betas)):
        if array is None or len(array) != channels:
            raise CorruptWeightsError(
                f"convolution '{name}': {label} does not have {channels} values"
            )
    if (variances < 0).any():
        raise CorruptWeightsError(
            f"convolution '{name}': bn_stddivs (batch-norm variances) has "
            f"{int((variances < 0).sum())} negative values"
        )
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        scale = (gammas / np.sqrt(variances + np.float32(BN_EPSILON))).astype(np.float32)
        folded = (weights.reshape(channels, -1) * scale[:, None]).astype(np.float32)
        folded_bias = (betas + scale * (bias - means)).astype(np.float32)
    if not (np.isfinite(folded).all() and np.isfinite(folded_bias).all()):
        raise NonFiniteWeightsError(
            f"convolution '{name}': folding its batch norm overflows to NaN/inf (absurd "
            "variances, gammas or weights)"
        )
    return folded.reshape(-1), folded_bias


class ConvBlock(nn.Module):
    """A convolution (BN folded) followed by an activation (or none)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, act: ActivationFunction | None
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.act.fresh(y) if self.act is not None else y

    def load_lc0(self, block: dict[str, Any], name: str) -> None:
        weight, bias = fold_conv_block(block, name)
        _copy(self.conv.weight, weight, f"{name}.weights")
        _copy(self.conv.bias, bias, f"{name}.biases")


class SqueezeExcitation(nn.Module):
    """lc0's SE unit: the pooled channels give a sigmoid scale and an additive shift."""

    def __init__(self, channels: int, se_channels: int, act: nn.Module) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, se_channels)
        self.fc2 = nn.Linear(se_channels, 2 * channels)
        self.act = act
        self.channels = channels

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        pooled = z.mean(dim=(2, 3))
        gate_and_shift = self.fc2(self.act(self.fc1(pooled)))
        gate, shift = gate_and_shift.split(self.channels, dim=1)
        return torch.addcmul(shift[:, :, None, None], torch.sigmoid(gate)[:, :, None, None], z)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, se_channels: int, act: ActivationFunction) -> None:
        super().__init__()
        self.conv1 = ConvBlock(channels, channels, 3, act)
        self.conv2 = ConvBlock(channels, channels, 3, None)
        self.se = SqueezeExcitation(channels, se_channels, act) if se_channels else None
        self.act = act
        self.hook_resid_pre = HookPoint()
        self.hook_conv1 = HookPoint()
        self.hook_conv2 = HookPoint()
        self.hook_se = HookPoint() if se_channels else None
        self.hook_resid_post = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hook_resid_pre.on_squares(x)
        y = self.hook_conv1.on_squares(self.conv1(x))
        z = self.hook_conv2.on_squares(self.conv2(y))
        if self.se is not None:
            assert self.hook_se is not None
            z = self.hook_se.on_squares(self.se(z))
        return self.hook_resid_post.on_squares(self.act.fresh(z + x))


def _flatten_channel_major(x: torch.Tensor) -> torch.Tensor:
    # lc0 flattens ResNet head convolutions channel by channel (index c * 64 + square).
    return x.reshape(x.shape[0], -1)


class ConvolutionPolicyHead(nn.Module):
    def __init__(self, channels: int, act: ActivationFunction) -> None:
        super().__init__()
        self.conv1 = ConvBlock(channels, channels, 3, act)
        self.conv2 = nn.Conv2d(channels, 80, 3, padding=1)
        self.hook_hidden = HookPoint()
        self.hook_logits = HookPoint()
        channel_major = torch.from_numpy(policy_map.conv_policy_gather_index().copy())
        # The same entries addressed in a channels-last tensor (square * 80 + plane), so
        # that a channels-last forward gathers without first copying to channel-major.
        square_major = (channel_major % 64) * 80 + channel_major // 64
        self.register_buffer("gather_index", channel_major, persistent=False)
        self.register_buffer("gather_index_channels_last", square_major, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.hook_hidden.on_squares(self.conv1(x))
        planes = self.conv2(hidden)
        if not planes.is_contiguous() and planes.is_contiguous(memory_format=torch.channels_last):
            flat = planes.permute(0, 2, 3, 1).reshape(planes.shape[0], -1)
            return self.hook_logits(flat.index_select(1, self.gather_index_channels_last))
        flat = _flatten_channel_major(planes)
        return self.hook_logits(flat.index_select(1, self.gather_index))


class ClassicalPolicyHead(nn.Module):
    def __init__(self, channels: int, policy_channels: int, act: ActivationFunction) -> None:
        super().__init__()
        self.conv = ConvBlock(channels, policy_channels, 1, act)
        self.fc = nn.Linear(policy_channels * 64, policy_map.NUM_MOVES)
        self.hook_hidden = HookPoint()
        self.hook_logits = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.hook_hidden.on_squares(self.conv(x))
        return self.hook_logits(self.fc(_flatten_channel_major(hidden)))


class DenseHead(nn.Module):
    """Value or moves-left head: 1×1 conv, flatten, dense + act, dense."""

    def __init__(
        self, channels: int, head_channels: int, hidden: int, outputs: int, act: ActivationFunction
    ) -> None:
        super().__init__()
        self.conv = ConvBlock(channels, head_channels, 1, act)
        self.fc1 = nn.Linear(head_channels * 64, hidden)
        self.fc2 = nn.Linear(hidden, outputs)
        self.act = act
        self.hook_hidden = HookPoint()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.hook_hidden.on_squares(self.conv(x))
        return self.fc2(self.act(self.fc1(_flatten_channel_major(hidden))))


class ValueHead(DenseHead):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hook_logits = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return value_to_wdl(self.hook_logits(self.logits(x)))


class MovesLeftHead(DenseHead):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hook_out = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # lc0 always applies a ReLU to the moves-left output.
        return self.hook_out(torch.relu(self.logits(x)))[:, 0]


@dataclass(frozen=True)
class ResNetShape:
    """The sizes of an lc0 ResNet: body, and each head's channels and hidden units (0 where
    a head or layer is absent: ``policy_channels`` outside classical policies,
    ``moves_left_*`` without a moves-left head)."""

    filters: int
    blocks: int
    se_channels: int
    value_channels: int
    value_hidden: int
    value_outputs: int = 3
    policy_channels: int = 0
    moves_left_channels: int = 0
    moves_left_hidden: int = 0


class ResNet(LeelaNetwork):
    """An lc0 residual network. Build it with :func:`ResNet.from_lc0`."""

    def __init__(
        self,
        network_format: NetworkFormat,
        shape: ResNetShape,
        attention_policy: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.network_format = network_format
        self.shape = shape
        act = default_activation(network_format)
        filters, se_channels = shape.filters, shape.se_channels
        self.input = ConvBlock(112, filters, 3, act)
        self.input.hook_out = HookPoint()
        self.blocks = nn.ModuleList(
            ResidualBlock(filters, se_channels, act) for _ in range(shape.blocks)
        )
        if network_format.policy == PolicyFormat.CONVOLUTION:
            self.policy_head: nn.Module = ConvolutionPolicyHead(filters, act)
        elif network_format.policy == PolicyFormat.CLASSICAL:
            self.policy_head = ClassicalPolicyHead(filters, shape.policy_channels, act)
        elif network_format.policy == PolicyFormat.ATTENTION and attention_policy is not None:
            # T78/T79: an attention policy reading the body's squares as tokens.
            self.policy_head = attention_policy
        else:
            raise UnsupportedNetworkError(
                f"policy format {network_format.policy.name} on a ResNet body is not supported"
            )
        self.value_head = ValueHead(
            filters, shape.value_channels, shape.value_hidden, shape.value_outputs, act
        )
        self.moves_left_head = (
            MovesLeftHead(filters, shape.moves_left_channels, shape.moves_left_hidden, 1, act)
            if shape.moves_left_channels
            else None
        )
        self.setup_hooks()

    @property
    def prefers_channels_last(self) -> bool:
        return self.input.conv.weight.is_contiguous(memory_format=torch.channels_last)

    def forward(self, planes: torch.Tensor) -> NetworkOutput:
        """Evaluate ``planes`` of shape ``(batch, 112, 8, 8)``; see :class:`NetworkOutput`."""
        x = self.input.hook_out.on_squares(self.input(planes))
        for block in self.blocks:
            x = block(x)
        return self._heads(x)

    _input_layer_name = "convolution"

    def residual_hook_name(self, layer: int) -> str:
        self._check_layer(layer)
        return "input.hook_out" if layer == -1 else f"blocks.{layer}.hook_resid_post"

    def run_from(self, layer: int, residual: torch.Tensor) -> NetworkOutput:
        """Finish a forward from the residual stream after block ``layer`` (−1: the input
        convolution), given square-major as ``(batch, 64, filters)`` like its hook."""
        self._check_layer(layer)
        batch, squares, channels = residual.shape
        x = residual.reshape(batch, 8, 8, channels).permute(0, 3, 1, 2)
        if self.prefers_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for block in self.blocks[layer + 1 :]:
            x = block(x)
        return self._heads(x)

    def _heads(self, x: torch.Tensor) -> NetworkOutput:
        moves_left = self.moves_left_head(x) if self.moves_left_head is not None else None
        if isinstance(self.policy_head, AttentionPolicyHead):
            policy = self.policy_head(x.permute(0, 2, 3, 1).reshape(x.shape[0], 64, -1))
        else:
            policy = self.policy_head(x)
        return NetworkOutput(policy, self.value_head(x), moves_left)

    @classmethod
    def from_lc0(cls, weights: Lc0Weights) -> ResNet:
        """Build the network from a decoded file, folding batch norm as lc0 does."""
        fmt = weights.format
        w = weights.weights
        if "input" not in w:
            raise CorruptWeightsError("the network has no input convolution")
        residual = w.get("residual", [])
        filters = _out_channels(w["input"], "input")
        input_weights = _require(w["input"], "weights", "input").size
        if input_weights != filters * 112 * 9:
            raise CorruptWeightsError(
                f"input convolution has {input_weights} weights; expected 112 x 9 x {filters}"
            )
        se_channels = 0
        if residual and "se" in residual[0]:
            se_channels = _size(residual[0]["se"], "b1", "residual.0.se")
        value_outputs = _size(w, "ip2_val_b", "weights")
        check_value_outputs(fmt, value_outputs, "ip2_val_b")
        has_mlh = fmt.moves_left == MovesLeftFormat.V1 and "moves_left" in w
        attention_policy = None
        if fmt.policy == PolicyFormat.ATTENTION:
            # lc0 hard-codes SELU for the policy tokens of ResNet bodies.
            attention_policy = build_policy_head(
                w, "weights", d_input=filters, activation=ActivationFunction("selu")
            )
        shape = ResNetShape(
            filters=filters,
            blocks=len(residual),
            se_channels=se_channels,
            policy_channels=_out_channels(_require(w, "policy", "weights"), "policy")
            if fmt.policy == PolicyFormat.CLASSICAL
            else 0,
            value_channels=_out_channels(_require(w, "value", "weights"), "value"),
            value_hidden=_size(w, "ip1_val_b", "weights"),
            value_outputs=value_outputs,
            moves_left_channels=_out_channels(w["moves_left"], "moves_left") if has_mlh else 0,
            moves_left_hidden=_size(w, "ip1_mov_b", "weights") if has_mlh else 0,
        )
        net = cls(fmt, shape, attention_policy)
        net._load(w, has_mlh)
        return net

    def _load(self, w: dict[str, Any], has_mlh: bool) -> None:
        self.input.load_lc0(w["input"], "input")
        for index, (block, source) in enumerate(
            zip(self.blocks, w.get("residual", []), strict=True)
        ):
            where = f"residual.{index}"
            block.conv1.load_lc0(_require(source, "conv1", where), f"{where}.conv1")
            block.conv2.load_lc0(_require(source, "conv2", where), f"{where}.conv2")
            if block.se is not None:
                se = source.get("se")
                if se is None:
                    raise CorruptWeightsError(f"residual block {index} has no SE unit")
                for target, key in (
                    (block.se.fc1.weight, "w1"),
                    (block.se.fc1.bias, "b1"),
                    (block.se.fc2.weight, "w2"),
                    (block.se.fc2.bias, "b2"),
                ):
                    _copy(
                        target,
                        _require(se, key, f"residual.{index}.se"),
                        f"residual.{index}.se.{key}",
                    )
        head = self.policy_head
        if isinstance(head, ConvolutionPolicyHead):
            head.conv1.load_lc0(_require(w, "policy1", "weights"), "policy1")
            weight, bias = fold_conv_block(_require(w, "policy", "weights"), "policy")
            _copy(head.conv2.weight, weight, "policy.weights")
            _copy(head.conv2.bias, bias, "policy.biases")
        elif isinstance(head, ClassicalPolicyHead):
            head.conv.load_lc0(_require(w, "policy", "weights"), "policy")
            _copy(head.fc.weight, _require(w, "ip_pol_w", "weights"), "ip_pol_w")
            _copy(head.fc.bias, _require(w, "ip_pol_b", "weights"), "ip_pol_b")
        self.value_head.conv.load_lc0(_require(w, "value", "weights"), "value")
        for target, key in (
            (self.value_head.fc1.weight, "ip1_val_w"),
            (self.value_head.fc1.bias, "ip1_val_b"),
            (self.value_head.fc2.weight, "ip2_val_w"),
            (self.value_head.fc2.bias, "ip2_val_b"),
        ):
            _copy(target, _require(w, key, "weights"), key)
        if has_mlh:
            assert self.moves_left_head is not None
            mlh = self.moves_left_head
            mlh.conv.load_lc0(w["moves_left"], "moves_left")
            for target, key in (
                (mlh.fc1.weight, "ip1_mov_w"),
                (mlh.fc1.bias, "ip1_mov_b"),
                (mlh.fc2.weight, "ip2_mov_w"),
                (mlh.fc2.bias, "ip2_mov_b"),
            ):
                _copy(target, _require(w, key, "weights"), key)

    def to_lc0(self) -> Lc0Weights:
        """Export as lc0 weights (batch norm already folded: plain conv weights and biases).

        ``save_weights(net.to_lc0(), path)`` writes a file that lc0 itself loads; this is how
        trained or distilled networks leave PyTorch.
        """

        def array(tensor: torch.Tensor) -> np.ndarray:
            return tensor.detach().float().cpu().numpy().reshape(-1).copy()

        def conv(module: nn.Conv2d) -> dict[str, np.ndarray]:
            return {"weights": array(module.weight), "biases": array(module.bias)}

        def dense(module: nn.Linear, weight: str, bias: str) -> dict[str, np.ndarray]:
            return {weight: array(module.weight), bias: array(module.bias)}

        w: dict[str, Any] = {"input": conv(self.input.conv), "residual": []}
        for block in self.blocks:
            residual: dict[str, Any] = {
                "conv1": conv(block.conv1.conv),
                "conv2": conv(block.conv2.conv),
            }
            if block.se is not None:
                residual["se"] = {
                    **dense(block.se.fc1, "w1", "b1"),
                    **dense(block.se.fc2, "w2", "b2"),
                }
            w["residual"].append(residual)
        head = self.policy_head
        if isinstance(head, ConvolutionPolicyHead):
            w["policy1"] = conv(head.conv1.conv)
            w["policy"] = conv(head.conv2)
        elif isinstance(head, ClassicalPolicyHead):
            w["policy"] = conv(head.conv.conv)
            w.update(dense(head.fc, "ip_pol_w", "ip_pol_b"))
        elif isinstance(head, AttentionPolicyHead):
            w.update(policy_head_weights(head))
        w["value"] = conv(self.value_head.conv.conv)
        w.update(dense(self.value_head.fc1, "ip1_val_w", "ip1_val_b"))
        w.update(dense(self.value_head.fc2, "ip2_val_w", "ip2_val_b"))
        if self.moves_left_head is not None:
            w["moves_left"] = conv(self.moves_left_head.conv.conv)
            w.update(dense(self.moves_left_head.fc1, "ip1_mov_w", "ip1_mov_b"))
            w.update(dense(self.moves_left_head.fc2, "ip2_mov_w", "ip2_mov_b"))
        return Lc0Weights(format=self.network_format, weights=w, min_version=(0, 21, 0))


def _require(node: dict[str, Any], key: str, where: str) -> Any:
    if key not in node:
        missing = key if where == "weights" else f"{where}.{key}"
        raise CorruptWeightsError(f"the network is missing '{missing}'")
    return node[key]


def _size(node: dict[str, Any], key: str, what: str) -> int:
    return int(_require(node, key, what).size)


def _out_channels(block: dict[str, Any], name: str) -> int:
    for key in ("biases", "bn_means"):
        if key in block and block[key].size:
            return int(block[key].size)
    raise CorruptWeightsError(f"convolution '{name}' has neither biases nor batch-norm means")
