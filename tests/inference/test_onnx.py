"""ONNX export, onnxruntime backend, safetensors and conversions (no lc0 needed)."""

from __future__ import annotations

from pathlib import Path

import chess
import numpy as np
import pytest
import torch

from leelalab.cli import main
from leelalab.errors import CorruptWeightsError, UnsupportedNetworkError
from leelalab.inference.convert import convert
from leelalab.inference.networks import load_network
from leelalab.inference.safetensors_io import load_safetensors_network, save_safetensors
from leelalab.lc0.weights import Encoding, load_weights, save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights, random_transformer_weights
from leelalab.models import build_network
from leelalab.models.evaluation import evaluate, run_network
from positions import puzzle_line_boards

onnx = pytest.importorskip("onnx", reason="needs the onnx extra")
pytest.importorskip("onnxruntime", reason="needs the onnx extra")

from leelalab.inference.onnx import OnnxRuntimeNetwork, export_onnx, load_onnx_network  # noqa: E402

NETWORKS = {
    "se-conv-wdl-mlh": lambda: random_resnet_weights(seed=1),
    "classical-tanh": lambda: random_resnet_weights(
        seed=2, se_channels=0, policy="classical", value="classical", moves_left=False
    ),
    "attention-policy-resnet": lambda: random_resnet_weights(
        seed=3, policy="attention", policy_encoders=1
    ),
    "transformer": lambda: random_transformer_weights(seed=4),
    "dense-multihead-transformer": lambda: random_transformer_weights(
        seed=5, embedding="pe_dense", multihead=True
    ),
}


def _planes(batch: int = 5) -> torch.Tensor:
    return (torch.rand(batch, 112, 8, 8, generator=torch.Generator().manual_seed(3)) > 0.8).float()


@pytest.mark.parametrize("name", list(NETWORKS))
def test_export_runs_in_onnxruntime_like_the_module(tmp_path: Path, name: str) -> None:
    network = build_network(NETWORKS[name]())
    path = export_onnx(network, tmp_path / "net.onnx")
    ort = OnnxRuntimeNetwork(path, network.network_format)
    planes = _planes()
    with torch.no_grad():
        expected = network(planes)
    got = ort(planes)
    torch.testing.assert_close(got.policy_logits, expected.policy_logits, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(got.wdl, expected.wdl, atol=1e-5, rtol=1e-5)
    if expected.moves_left is not None:
        torch.testing.assert_close(got.moves_left, expected.moves_left, atol=1e-4, rtol=1e-5)
    assert onnx.load(str(path)).producer_name == "leelalab"


def test_onnxruntime_backend_inside_evaluate(tmp_path: Path) -> None:
    network = build_network(random_resnet_weights(seed=6))
    ort = OnnxRuntimeNetwork(export_onnx(network, tmp_path / "n.onnx"), network.network_format)
    boards = puzzle_line_boards(20, seed=1)
    for a, b in zip(evaluate(network, boards), evaluate(ort, boards), strict=True):
        assert max((abs(a.policy[m] - b.policy[m]) for m in a.policy), default=0) < 1e-5


@pytest.mark.parametrize("name", list(NETWORKS))
def test_safetensors_round_trip_is_exact(tmp_path: Path, name: str) -> None:
    network = build_network(NETWORKS[name]())
    again = load_safetensors_network(save_safetensors(network, tmp_path / "net.safetensors"))
    planes = _planes()
    with torch.no_grad():
        torch.testing.assert_close(
            again(planes).policy_logits, network(planes).policy_logits, rtol=0, atol=0
        )
    assert set(again.state_dict()) == set(network.state_dict())


def test_convert_between_formats(tmp_path: Path) -> None:
    source = save_weights(random_transformer_weights(seed=7), tmp_path / "net.pb.gz")
    reference = load_network(source)
    planes = _planes()
    exact = convert(source, tmp_path / "copy.pb.gz", encoding=Encoding.FLOAT32)
    assert load_weights(exact).min_version == (0, 33, 0)  # old lc0 refuses float layers cleanly
    for target in (exact, convert(source, tmp_path / "net.safetensors")):
        network = load_network(target)
        torch.testing.assert_close(
            run_network(network, planes).policy_logits,
            run_network(reference, planes).policy_logits,
            rtol=0,
            atol=0,
        )
    # Weights not on a LINEAR16 grid (fresh floats) lose precision in a LINEAR16 file.
    floats = build_network(random_transformer_weights(seed=8))
    save_safetensors(floats, tmp_path / "floats.safetensors")
    lossy = load_network(convert(tmp_path / "floats.safetensors", tmp_path / "l16.pb.gz"))
    diff = (
        run_network(lossy, planes).policy_logits - run_network(floats, planes).policy_logits
    ).abs()
    assert 0 < diff.max() < 0.05  # LINEAR16 quantisation: close, not exact


def test_cli_convert_and_ort_backend(tmp_path: Path, capsys) -> None:
    source = save_weights(random_resnet_weights(seed=8), tmp_path / "net.pb.gz")
    assert main(["convert", str(source), str(tmp_path / "net.onnx")]) == 0
    fen = chess.STARTING_FEN
    assert (
        main(["eval", str(tmp_path / "net.onnx"), "--backend", "ort", "--fen", fen, "--json"]) == 0
    )
    ort_record = capsys.readouterr().out
    assert main(["eval", str(source), "--fen", fen, "--json"]) == 0
    torch_record = capsys.readouterr().out
    import json

    a, b = json.loads(ort_record.splitlines()[-1]), json.loads(torch_record.splitlines()[-1])
    assert max(abs(a["policy"][m] - b["policy"][m]) for m in a["policy"]) < 1e-5
    assert main(["convert", str(source), str(tmp_path / "net.txt")]) == 1
    assert "unknown output format" in capsys.readouterr().err
    # Our own exports are for onnxruntime, not for native loading: a clear error says so.
    assert main(["eval", str(tmp_path / "net.onnx"), "--fen", fen]) == 1
    assert "exported by leelalab" in capsys.readouterr().err


def test_foreign_and_corrupt_onnx_files(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, producer_name="someone-else")
    path = tmp_path / "foreign.onnx"
    onnx.save(model, str(path))
    with pytest.raises(UnsupportedNetworkError, match="someone-else"):
        load_onnx_network(path)
    model.producer_name = "Lc0"
    onnx.save(model, str(path))
    with pytest.raises(UnsupportedNetworkError, match="initializer"):
        load_onnx_network(path)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01not onnx at all" * 10)
    with pytest.raises(CorruptWeightsError):
        load_onnx_network(garbage)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(np.arange(10, dtype=np.uint8).tobytes())
    with pytest.raises(CorruptWeightsError):
        load_safetensors_network(bad)
