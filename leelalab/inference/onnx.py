"""ONNX: load ``lc0 leela2onnx`` exports into native modules, export ours, run onnxruntime.

Import is *structured*: the initializers of an lc0-made graph (producer ``"Lc0"``) are
mapped back to lc0's weights schema (dense weights transposed from ONNX's ``[in, out]`` to
``[out, in]``, gates and the smolgen matrix transposed back) and the header is inferred
from the graph (which heads exist, activation ops, attention head count). The result goes
through :func:`leelalab.models.build_network`, so an ONNX file becomes the *same* native
module, with the same parameter and hook names, as the ``.pb.gz`` it came from.

Limits: the input format is not recorded in an ONNX graph (pass ``input_format``); graphs
from other exporters, PE_DENSE/multihead exports and ``--onnx2pytorch`` exports are
rejected with :class:`~leelalab.errors.UnsupportedNetworkError`. Exports of lc0 ≤ 0.31
scale the residual *input* by ``(2N)^(1/4)`` instead of the sublayer by ``(2N)^(-1/4)``;
LayerNorm makes the two equal up to the epsilon (a relative effect below 1e-6), and the
native module uses lc0's current form.

Needs the ``onnx`` extra: ``pip install "leelalab[onnx]"``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leelalab.errors import LeelaLabError, UnsupportedNetworkError
from leelalab.lc0.weights.enums import Activation, InputEmbedding, NetworkStructure, PolicyFormat
from leelalab.lc0.weights.file import Lc0Weights, NetworkFormat
from leelalab.models import LeelaNetwork, NetworkOutput, build_network

_ACTIVATION_SUFFIXES = {
    "relu": Activation.RELU,
    "mish": Activation.MISH,
    "selu": Activation.SELU,
    "swish": Activation.SWISH,
    "sqrrelu": Activation.RELU_2,
    "tanh": Activation.TANH,
    "sigmoid": Activation.SIGMOID,
}


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise LeelaLabError(
            'ONNX support needs the onnx extra: pip install "leelalab[onnx]"'
        ) from None
    return onnx


class _Graph:
    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        self.initializers = {
            init.name: numpy_helper.to_array(init).astype(np.float32, copy=False)
            if init.data_type in (1, 10, 16)
            else numpy_helper.to_array(init)
            for init in model.graph.initializer
        }
        self.node_names = [node.name for node in model.graph.node]
        self.outputs = {output.name for output in model.graph.output}

    def has(self, name: str) -> bool:
        return name in self.initializers

    def array(self, name: str, transpose: bool = False) -> np.ndarray:
        if name not in self.initializers:
            raise UnsupportedNetworkError(f"the ONNX graph has no initializer '{name}'")
        values = self.initializers[name].astype(np.float32)
        if transpose:
            values = values.reshape(values.shape[0], -1).T
        return np.ascontiguousarray(values).reshape(-1)

    def activation(self, prefix: str) -> Activation:
        """The activation applied right after the node ``prefix`` (by lc0's node naming)."""
        for name in self.node_names:
            if name.startswith(prefix + "/"):
                first = name[len(prefix) + 1 :].split("/")[0]
                if first in _ACTIVATION_SUFFIXES:
                    return _ACTIVATION_SUFFIXES[first]
        return Activation.NONE


def _conv(graph: _Graph, prefix: str) -> dict[str, np.ndarray]:
    return {"weights": graph.array(f"{prefix}/w/kernel"), "biases": graph.array(f"{prefix}/w/bias")}


def _dense(
    graph: _Graph, prefix: str, weight: str, bias: str, style: str = "matmul"
) -> dict[str, np.ndarray]:
    if style == "matmul":
        return {
            weight: graph.array(f"{prefix}/matmul/w", True),
            bias: graph.array(f"{prefix}/add/w"),
        }
    return {weight: graph.array(f"{prefix}/w/w", True), bias: graph.array(f"{prefix}/b/w")}


def _norm(graph: _Graph, prefix: str, name: str) -> dict[str, np.ndarray]:
    return {
        f"{name}_gammas": graph.array(f"{prefix}/w/scale"),
        f"{name}_betas": graph.array(f"{prefix}/w/bias"),
    }


def _encoder(graph: _Graph, prefix: str) -> dict[str, Any]:
    mha: dict[str, Any] = {}
    for onnx_name, ours in (("Q", "q"), ("K", "k"), ("V", "v")):
        mha.update(_dense(graph, f"{prefix}/mha/{onnx_name}", f"{ours}_w", f"{ours}_b", "wb"))
    mha.update(_dense(graph, f"{prefix}/mha/out/dense", "dense_w", "dense_b", "wb"))
    if graph.has(f"{prefix}/smolgen/compress/w"):
        smolgen = {"compress": graph.array(f"{prefix}/smolgen/compress/w", True)}
        smolgen.update(_dense(graph, f"{prefix}/smolgen/dense1", "dense1_w", "dense1_b", "wb"))
        smolgen.update(_norm(graph, f"{prefix}/smolgen/ln1", "ln1"))
        smolgen.update(_dense(graph, f"{prefix}/smolgen/dense2", "dense2_w", "dense2_b", "wb"))
        smolgen.update(_norm(graph, f"{prefix}/smolgen/ln2", "ln2"))
        mha["smolgen"] = smolgen
    ffn = {
        **_dense(graph, f"{prefix}/ffn/dense1", "dense1_w", "dense1_b", "wb"),
        **_dense(graph, f"{prefix}/ffn/dense2", "dense2_w", "dense2_b", "wb"),
    }
    return {
        "mha": mha,
        **_norm(graph, f"{prefix}/ln1", "ln1"),
        "ffn": ffn,
        **_norm(graph, f"{prefix}/ln2", "ln2"),
    }


def _heads(graph: _Graph, shape_name: str) -> int:
    shape = graph.initializers.get(shape_name)
    if shape is None or shape.size != 4:
        raise UnsupportedNetworkError(f"cannot find the attention head count ('{shape_name}')")
    return int(shape[2])


def _count(graph: _Graph, pattern: str) -> int:
    found = {int(m.group(1)) for name in graph.initializers if (m := re.match(pattern, name))}
    return max(found) + 1 if found else 0


def _scalar_head(
    graph: _Graph, transformer: bool, onnx_name: str, conv_name: str, key: str
) -> dict[str, Any]:
    """The value or moves-left head: a token embedding (transformer) or a 1x1 convolution
    (ResNet), then two dense layers; ``key`` is lc0's infix (``ip1_{key}_w``...)."""
    w: dict[str, Any] = {}
    if transformer:
        w.update(_dense(graph, f"/{onnx_name}/embed", f"ip_{key}_w", f"ip_{key}_b"))
    else:
        w[conv_name] = _conv(graph, f"/{onnx_name}/conv")
    w.update(_dense(graph, f"/{onnx_name}/dense1", f"ip1_{key}_w", f"ip1_{key}_b"))
    w.update(_dense(graph, f"/{onnx_name}/dense2", f"ip2_{key}_w", f"ip2_{key}_b"))
    return w


def weights_from_onnx(model: Any, input_format: int = 1) -> Lc0Weights:
    """Map an lc0-made ONNX ``ModelProto`` back to lc0 weights (see the module docstring)."""
    if model.producer_name == "leelalab":
        raise UnsupportedNetworkError(
            "this ONNX file was exported by leelalab: load the .pb.gz or .safetensors it came "
            "from, or run it with onnxruntime (--backend ort)"
        )
    if model.producer_name != "Lc0":
        raise UnsupportedNetworkError(
            f"this ONNX graph was made by {model.producer_name or 'an unknown exporter'!r}, not "
            "by lc0's leela2onnx; only lc0 exports can be loaded as native modules"
        )
    graph = _Graph(model)
    if graph.has("/attn_body/embedding/preprocess/matmul/w") or any(
        "var_eps" in name for name in graph.initializers
    ):
        raise UnsupportedNetworkError(
            "PE_DENSE (BT3/BT4) and --onnx2pytorch ONNX exports are not supported; load the "
            ".pb.gz file instead"
        )
    w: dict[str, Any] = {}
    transformer = graph.has("/encoder0/mha/Q/w/w")
    if transformer:
        body = graph.activation("/attn_body")
        layers = _count(graph, r"^/encoder(\d+)/mha/Q/w/w$")
        w["ip_emb_w"] = graph.array("/attn_body/matmul/w", True)
        w["ip_emb_b"] = graph.array("/attn_body/add/w")
        if graph.has("/ip_mul_gate/w"):
            w["ip_mult_gate"] = graph.array("/ip_mul_gate/w", True)
        if graph.has("/ip_add_gate/w"):
            w["ip_add_gate"] = graph.array("/ip_add_gate/w", True)
        w["encoder"] = [_encoder(graph, f"/encoder{i}") for i in range(layers)]
        w["headcount"] = _heads(graph, "/const/encoder0/mha/shape")
        if graph.has("/const/smolgen_w"):
            w["smolgen_w"] = graph.array("/const/smolgen_w", True)
    else:
        body = graph.activation("/inputconv")
        blocks = _count(graph, r"^/block(\d+)/conv1/w/kernel$")
        w["input"] = _conv(graph, "/inputconv")
        w["residual"] = []
        for i in range(blocks):
            block: dict[str, Any] = {
                "conv1": _conv(graph, f"/block{i}/conv1"),
                "conv2": _conv(graph, f"/block{i}/conv2"),
            }
            se = f"/block{i}/conv2/se"
            if graph.has(f"{se}/matmul1/w"):
                block["se"] = {
                    "w1": graph.array(f"{se}/matmul1/w", True),
                    "b1": graph.array(f"{se}/add1/w"),
                    "w2": graph.array(f"{se}/matmul2/w", True),
                    "b2": graph.array(f"{se}/add2/w"),
                }
            w["residual"].append(block)
    if body not in (Activation.RELU, Activation.MISH):
        raise UnsupportedNetworkError(f"unrecognised body activation {body.name} in the ONNX graph")

    if graph.has("/policy/conv2/w/kernel"):
        policy = PolicyFormat.CONVOLUTION
        w["policy1"] = _conv(graph, "/policy/conv1")
        w["policy"] = _conv(graph, "/policy/conv2")
    elif graph.has("/policy/dense/matmul/w"):
        policy = PolicyFormat.CLASSICAL
        w["policy"] = _conv(graph, "/policy/conv")
        w["ip_pol_w"] = graph.array("/policy/dense/matmul/w", True)
        w["ip_pol_b"] = graph.array("/output/policy/w")
    elif graph.has("/policy/Q/matmul/w"):
        policy = PolicyFormat.ATTENTION
        w.update(_dense(graph, "/policy/dense1", "ip_pol_w", "ip_pol_b"))
        w.update(_dense(graph, "/policy/Q", "ip2_pol_w", "ip2_pol_b"))
        w.update(_dense(graph, "/policy/K", "ip3_pol_w", "ip3_pol_b"))
        w["ip4_pol_w"] = graph.array("/policy/promotion/matmul/w", True)
        encoders = _count(graph, r"^/policy/enc_layer_(\d+)/mha/Q/w/w$")
        if encoders:
            w["pol_encoder"] = [_encoder(graph, f"/policy/enc_layer_{j}") for j in range(encoders)]
            shapes = [n for n in graph.initializers if re.match(r".*enc_layer_0/mha/shape$", n)]
            w["pol_headcount"] = _heads(graph, shapes[0]) if shapes else 1
    else:
        raise UnsupportedNetworkError("unrecognised policy head in the ONNX graph")

    w.update(_scalar_head(graph, transformer, "value", "value", "val"))
    has_mlh = graph.has("/mlh/dense1/matmul/w")
    if has_mlh:
        w.update(_scalar_head(graph, transformer, "mlh", "moves_left", "mov"))

    ffn = smolgen = Activation.DEFAULT
    if transformer:
        ffn = graph.activation("/encoder0/ffn/dense1")
        smolgen = graph.activation("/encoder0/smolgen/dense1") if "smolgen_w" in w else body
        ffn = Activation.DEFAULT if ffn == body else ffn
        smolgen = Activation.DEFAULT if smolgen == body else smolgen
    wdl = "/output/wdl" in graph.outputs
    se = bool(w.get("residual")) and "se" in w["residual"][0]
    network_format = NetworkFormat.build(
        input_format,
        NetworkStructure.ATTENTIONBODY_WITH_HEADFORMAT
        if transformer
        else (
            NetworkStructure.SE_WITH_HEADFORMAT
            if se
            else NetworkStructure.CLASSICAL_WITH_HEADFORMAT
        ),
        policy,
        wdl=wdl,
        moves_left=has_mlh,
        mish=body == Activation.MISH,
    )
    network_format = dataclasses.replace(
        network_format,
        smolgen_activation=smolgen,
        ffn_activation=ffn,
        input_embedding=InputEmbedding.PE_MAP if transformer else InputEmbedding.NONE,
    )
    return Lc0Weights(format=network_format, weights=w)


def _load_model(source: str | os.PathLike[str] | bytes | Lc0Weights) -> Any:
    onnx = _require_onnx()
    if isinstance(source, Lc0Weights):
        if source.onnx_model is None:
            raise UnsupportedNetworkError("this network file has no embedded ONNX model")
        source = bytes(source.onnx_model["model"])
    if isinstance(source, bytes):
        return onnx.load_model_from_string(source)
    path = Path(source)
    if not path.is_file():
        from leelalab.errors import WeightsFileNotFoundError

        raise WeightsFileNotFoundError(f"{path}: no such ONNX file")
    try:
        return onnx.load(str(path))
    except Exception as error:  # onnx raises DecodeError and others for garbage
        from leelalab.errors import CorruptWeightsError

        raise CorruptWeightsError(f"{path}: not a valid ONNX file ({error})") from None


def load_onnx_network(
    source: str | os.PathLike[str] | bytes | Lc0Weights, *, input_format: int = 1
) -> LeelaNetwork:
    """Load an ``lc0 leela2onnx`` export (path, bytes, or an ONNX-in-pb file) natively."""
    network = build_network(weights_from_onnx(_load_model(source), input_format))
    if not isinstance(source, bytes | Lc0Weights):
        network.source = str(source)
    return network


class _ExportWrapper(torch.nn.Module):
    def __init__(self, network: LeelaNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, planes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output = self.network(planes)
        if output.moves_left is None:
            return output.policy_logits, output.wdl
        return output.policy_logits, output.wdl, output.moves_left[:, None]


def export_onnx(network: LeelaNetwork, path: str | os.PathLike[str], *, opset: int = 17) -> Path:
    """Export ``network`` to ONNX with lc0's tensor names and a dynamic batch axis.

    Outputs: ``/output/policy`` (raw logits), ``/output/wdl`` (probabilities) and, with a
    moves-left head, ``/output/mlh``.
    """
    _require_onnx()
    path = Path(path)
    names = ["/output/policy", "/output/wdl"]
    if getattr(network, "moves_left_head", None) is not None:
        names.append("/output/mlh")
    wrapper = (
        _ExportWrapper(network).eval().float().to("cpu", memory_format=torch.contiguous_format)
    )
    example = torch.zeros(1, 112, 8, 8)
    with torch.no_grad(), warnings.catch_warnings():
        # The value head's "3 outputs or 1" branch is fixed per network: tracing it is safe.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            input_names=["/input/planes"],
            output_names=names,
            dynamic_axes={name: {0: "batch"} for name in ["/input/planes", *names]},
            opset_version=opset,
            dynamo=False,
        )
    onnx = _require_onnx()
    model = onnx.load(str(path))
    model.producer_name = "leelalab"
    entry = model.metadata_props.add()
    entry.key = "leelalab.network_format"
    entry.value = json.dumps(network.network_format.to_message())
    onnx.save(model, str(path))
    return path


def onnx_network_format(path: str | os.PathLike[str], input_format: int = 1) -> NetworkFormat:
    """The lc0 header of an ``.onnx`` file: leelalab's own metadata, else read off the graph."""
    model = _load_model(Path(path))
    stored = {entry.key: entry.value for entry in model.metadata_props}
    if "leelalab.network_format" in stored:
        return NetworkFormat.from_message(json.loads(stored["leelalab.network_format"]))
    return weights_from_onnx(model, input_format).format


class OnnxRuntimeNetwork:
    """An onnxruntime session with the calling contract of :class:`LeelaNetwork`.

    Works with :func:`leelalab.models.evaluation.evaluate` for users who only need outputs fast;
    it has no hook points.
    """

    device = torch.device("cpu")
    dtype = torch.float32
    prefers_channels_last = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        network_format: NetworkFormat,
        threads: int | None = None,
    ):
        try:
            import onnxruntime
        except ImportError:
            raise LeelaLabError(
                'the ort backend needs the onnx extra: pip install "leelalab[onnx]"'
            ) from None
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [output.name for output in self.session.get_outputs()]
        self.network_format = network_format
        self.hook_dict: dict[str, Any] = {}
        self.source: str | None = str(path)

    def __call__(self, planes: torch.Tensor) -> NetworkOutput:
        results = dict(
            zip(
                self.output_names,
                self.session.run(None, {self.input_name: planes.float().numpy()}),
                strict=True,
            )
        )
        policy = torch.from_numpy(results["/output/policy"])
        if "/output/wdl" in results:
            wdl = torch.from_numpy(results["/output/wdl"])
        else:
            q = torch.from_numpy(results["/output/value"])[:, 0]
            wdl = torch.stack(((1 + q) / 2, torch.zeros_like(q), (1 - q) / 2), dim=-1)
        mlh = results.get("/output/mlh")
        return NetworkOutput(policy, wdl, None if mlh is None else torch.from_numpy(mlh)[:, 0])

    def compiled(self) -> OnnxRuntimeNetwork:
        return self
