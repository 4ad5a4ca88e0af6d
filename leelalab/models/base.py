"""What every leelalab network shares: activations, outputs, and the base module."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from leelalab.errors import CorruptWeightsError, LayerIndexError, UnsupportedNetworkError
from leelalab.hooks import HookedModule
from leelalab.lc0.weights.enums import Activation, DefaultActivation, ValueFormat
from leelalab.lc0.weights.file import NetworkFormat
from leelalab.models.evaluation import evaluate
from leelalab.models.outputs import NetworkOutput

SELU_LAMBDA = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717


def _relu_2(x: torch.Tensor) -> torch.Tensor:
    return torch.square(F.relu(x))


def _selu(x: torch.Tensor) -> torch.Tensor:
    # PyTorch's SELU constants equal lc0's (SELU_LAMBDA, SELU_ALPHA) to float32 precision;
    # the built-in op also exports to ONNX.
    return F.selu(x)


class ActivationFunction(nn.Module):
    """One of lc0's activation functions, by name (printable, hookable, scriptable)."""

    _FUNCTIONS = {
        "relu": F.relu,
        "mish": F.mish,
        "swish": F.silu,
        "selu": _selu,
        "relu_2": _relu_2,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "none": lambda x: x,
    }

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in self._FUNCTIONS:
            raise UnsupportedNetworkError(f"activation {name!r} is not supported")
        self.name = name
        self._function = self._FUNCTIONS[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._function(x)

    def fresh(self, x: torch.Tensor) -> torch.Tensor:
        """Apply to a tensor nobody else holds (a fresh conv or sum output).

        Without autograd, ReLU then runs in place, which saves an allocation and a pass
        over memory on the hot path; the result is identical.
        """
        if self.name == "relu" and not torch.is_grad_enabled():
            return x.relu_()
        return self._function(x)

    def extra_repr(self) -> str:
        return self.name


def resolve_activation(
    activation: Activation, default: DefaultActivation, where: str = "layer"
) -> ActivationFunction:
    """lc0's activation resolution: ``DEFAULT`` means the network's default activation."""
    if activation == Activation.DEFAULT:
        return ActivationFunction("mish" if default == DefaultActivation.MISH else "relu")
    if activation == Activation.SOFTMAX:
        raise UnsupportedNetworkError(f"SOFTMAX is not a valid activation for the {where}")
    return ActivationFunction(activation.name.lower())


def default_activation(fmt: NetworkFormat) -> ActivationFunction:
    return resolve_activation(Activation.DEFAULT, fmt.default_activation)


class LeelaNetwork(HookedModule):
    """Base class of every network family. ``forward(planes) -> NetworkOutput``.

    Attributes:
        network_format: the file's (normalised) header; ``network_format.input`` says how
            positions must be encoded.
    """

    network_format: NetworkFormat
    source: str | None = None
    """The file the network was loaded from, if any."""
    sha256: str | None = None
    """SHA-256 of that file, for provenance records."""

    def forward(self, planes: torch.Tensor) -> NetworkOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def n_layers(self) -> int:
        """Residual blocks / encoder layers of the body."""
        return len(self.blocks)  # type: ignore[arg-type]

    def residual_hook_name(self, layer: int) -> str:  # pragma: no cover - abstract
        """The hook on the residual stream after body layer ``layer`` (−1: after the input
        layer), ``(batch, 64, d)`` square-major in the network's frame."""
        raise NotImplementedError

    def run_from(self, layer: int, residual: torch.Tensor) -> NetworkOutput:  # pragma: no cover
        """Finish a forward pass from the residual stream after body layer ``layer``.

        ``residual`` has the shape of :meth:`residual_hook_name`'s hook. Hooks of the later
        layers and heads run as usual. Activation patching uses this to restart from the
        patched layer instead of the input.
        """
        raise NotImplementedError

    def _check_layer(self, layer: int) -> None:
        if not -1 <= layer < self.n_layers:
            name = f"{self.source}: " if self.source else ""
            raise LayerIndexError(
                f"{name}layer {layer} is out of range: the body has {self.n_layers} layers, "
                f"so valid layers are -1 (the input {self._input_layer_name}) to "
                f"{self.n_layers - 1}"
            )

    _input_layer_name = "layer"

    def evaluate(self, boards: Any, **kwargs: Any) -> list[Any]:
        """Shortcut for :func:`leelalab.models.evaluation.evaluate` with this network."""
        return evaluate(self, boards, **kwargs)

    @property
    def prefers_channels_last(self) -> bool:
        """Whether inputs should be channels-last (ResNets moved there run faster on CPU)."""
        return False

    def compiled(self) -> Any:
        """This network compiled with ``torch.compile`` for inference (hooks do not run).

        Inductor with weight freezing fuses convolutions with their activations; on CPU this
        is ~1.2-1.3x faster than eager for large batches. Compiling takes seconds per batch
        shape, so callers keep shapes fixed (see :func:`leelalab.models.evaluation.iter_evaluate`).
        The compiled callable is cached on the network.
        """
        compiled = self.__dict__.get("_compiled_forward")
        if compiled is None:
            compiled = torch.compile(self, dynamic=False, options={"freezing": True})
            self.__dict__["_compiled_forward"] = compiled
        return compiled

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype


def check_value_outputs(fmt: NetworkFormat, outputs: int, where: str) -> None:
    """The value head's width must match the header: 3 for WDL, 1 for classical (tanh)."""
    if fmt.value == ValueFormat.PARAM:
        raise UnsupportedNetworkError("VALUE_PARAM value heads are not supported (nor by lc0)")
    expected = 3 if fmt.value == ValueFormat.WDL else 1
    if outputs != expected:
        raise CorruptWeightsError(
            f"'{where}' has {outputs} values, but the header's value format {fmt.value.name} "
            f"needs {expected}"
        )


class InferenceLinear(nn.Linear):
    """``nn.Linear`` whose float32 CPU products run in oneDNN instead of MKL.

    PyTorch's CPU builds send float32 ``nn.Linear`` to MKL's sgemm, which runs about 2x
    slower than oneDNN's (and onnxruntime's) on AMD processors; transformer bodies are mostly
    such products. oneDNN computes the same float32 products (no reduced precision; results
    agree to float rounding), forward and, for training, backward. On other devices or
    dtypes, inside compiled training graphs, and where oneDNN is missing, this is plain
    ``nn.Linear``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type != "cpu"
            or x.dtype != torch.float32
            or not _onednn_available()
            # exporters (ONNX, TorchScript tracing) must see a standard linear layer
            or torch.onnx.is_in_onnx_export()
            or torch.jit.is_tracing()
        ):
            return super().forward(x)
        flat = x.reshape(-1, x.shape[-1])
        if torch.compiler.is_compiling():
            if torch.is_grad_enabled():
                return super().forward(x)
            out = _onednn_linear_op()(flat, self.weight, self.bias)
        elif torch.is_grad_enabled():
            out = _OneDnnLinearFunction.apply(flat, self.weight, self.bias)
        else:
            out = _onednn_product(flat, self.weight, self.bias)
        return out.reshape(*x.shape[:-1], out.shape[-1])


def _onednn_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> Any:
    """``x @ weight.T + bias`` for 2-D ``x`` in oneDNN."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class _OneDnnLinearFunction(torch.autograd.Function):
    """A linear layer with its three products (forward, input and weight gradients) in oneDNN."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn_product(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, Any, Any]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn_product(grad, weight.t().contiguous(), None)
        if ctx.needs_input_grad[1]:
            grad_weight = _onednn_product(grad.t().contiguous(), x.t().contiguous(), None)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(0)
        return grad_x, grad_weight, grad_bias


def use_inference_linears(module: nn.Module) -> None:
    """Turn every plain ``nn.Linear`` inside ``module`` into an :class:`InferenceLinear`."""
    for child in module.modules():
        if type(child) is nn.Linear:
            child.__class__ = InferenceLinear


_ONEDNN: dict[str, Any] = {}


def _onednn_available() -> bool:
    if "available" not in _ONEDNN:
        _ONEDNN["available"] = bool(torch.backends.mkldnn.is_available()) and hasattr(
            torch.ops.mkldnn, "_linear_pointwise"
        )
    return bool(_ONEDNN["available"])


def _onednn_linear_op() -> Any:
    """``leelalab::onednn_linear``, registered on first use: an opaque kernel to inductor,
    which would otherwise lower oneDNN's op itself and insist on pre-packed weights."""
    if "op" not in _ONEDNN:

        @torch.library.custom_op("leelalab::onednn_linear", mutates_args=())
        def onednn_linear(
            x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
        ) -> torch.Tensor:
            return _onednn_product(x, weight, bias)

        @onednn_linear.register_fake
        def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
            return x.new_empty(x.shape[0], weight.shape[0])

        _ONEDNN["op"] = onednn_linear
    return _ONEDNN["op"]


def value_to_wdl(value_logits: torch.Tensor) -> torch.Tensor:
    """WDL from the last value layer: softmax for 3 outputs, tanh mapped to W/D/L for 1."""
    if value_logits.shape[-1] == 3:
        return torch.softmax(value_logits, dim=-1)
    q = torch.tanh(value_logits[..., 0])
    return torch.stack(((1 + q) / 2, torch.zeros_like(q), (1 - q) / 2), dim=-1)


def copy_parameter(target: torch.Tensor, values: np.ndarray, name: str) -> None:
    """Copy a decoded lc0 layer into a parameter, checking the element count."""
    if values.size != target.numel():
        raise CorruptWeightsError(
            f"layer '{name}' has {values.size} values, expected {target.numel()} "
            f"for shape {tuple(target.shape)}"
        )
    with torch.no_grad():
        target.copy_(torch.from_numpy(np.ascontiguousarray(values)).reshape(target.shape))
