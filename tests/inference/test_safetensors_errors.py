"""Damaged leelalab safetensors files fail with one clear error naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from leelalab.errors import CorruptWeightsError, NonFiniteWeightsError, UnsupportedNetworkError
from leelalab.inference.networks import load_network
from leelalab.inference.safetensors_io import FORMAT_KEY, INTEGERS_KEY, save_safetensors
from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.models import build_network

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def _rewrite(path: Path, change) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as handle:
        metadata = dict(handle.metadata())
        arrays = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    change(arrays, metadata)
    safetensors_numpy.save_file(arrays, str(path), metadata=metadata)


@pytest.fixture
def network_file(tmp_path: Path) -> Path:
    return save_safetensors(build_network(random_resnet_weights()), tmp_path / "net.safetensors")


def test_nan_weights(network_file: Path) -> None:
    def poison(arrays, _metadata) -> None:
        arrays["input.biases"] = np.full_like(arrays["input.biases"], np.nan)

    _rewrite(network_file, poison)
    with pytest.raises(NonFiniteWeightsError, match=r"input\.biases") as caught:
        load_network(network_file)
    assert str(caught.value).startswith(f"{network_file}: ")


def test_unset_input_format(network_file: Path) -> None:
    def unset(_arrays, metadata) -> None:
        header = json.loads(metadata[FORMAT_KEY])
        metadata[FORMAT_KEY] = json.dumps({**header, "input": 0})

    _rewrite(network_file, unset)
    with pytest.raises(UnsupportedNetworkError, match="input format is 0") as caught:
        load_network(network_file)
    assert str(caught.value).startswith(f"{network_file}: ")


@pytest.mark.parametrize(
    ("key", "value"), [(FORMAT_KEY, "{not json"), (INTEGERS_KEY, '{"a.b": "x"}')]
)
def test_malformed_metadata(network_file: Path, key: str, value: str) -> None:
    _rewrite(network_file, lambda _arrays, metadata: metadata.__setitem__(key, value))
    with pytest.raises(CorruptWeightsError, match="malformed leelalab metadata") as caught:
        load_network(network_file)
    assert str(caught.value).startswith(f"{network_file}: ")


def test_missing_layers_name_the_file(network_file: Path) -> None:
    _rewrite(network_file, lambda arrays, _metadata: arrays.pop("value.weights"))
    with pytest.raises(CorruptWeightsError, match="convolution 'value' has no weights") as caught:
        load_network(network_file)
    assert str(caught.value).startswith(f"{network_file}: ")
