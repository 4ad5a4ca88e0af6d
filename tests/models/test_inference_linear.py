"""InferenceLinear (oneDNN products on CPU) computes what nn.Linear computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from leelalab.lc0.weights.synthetic import random_transformer_weights
from leelalab.models import build_network
from leelalab.models.base import InferenceLinear


def _pair(bias: bool) -> tuple[nn.Linear, nn.Linear]:
    torch.manual_seed(0)
    plain = nn.Linear(48, 80, bias=bias)
    fast = nn.Linear(48, 80, bias=bias)
    fast.load_state_dict(plain.state_dict())
    fast.__class__ = InferenceLinear
    return plain, fast


@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_gradients_match_nn_linear(bias: bool) -> None:
    plain, fast = _pair(bias)
    x = torch.randn(5, 64, 48, requires_grad=True)
    y = x.detach().clone().requires_grad_()
    upstream = torch.randn(5, 64, 80)
    (plain(x) * upstream).sum().backward()
    (fast(y) * upstream).sum().backward()
    assert torch.allclose(x.grad, y.grad, atol=1e-5, rtol=1e-5)
    assert torch.allclose(plain.weight.grad, fast.weight.grad, atol=1e-4, rtol=1e-5)
    if bias:
        assert torch.allclose(plain.bias.grad, fast.bias.grad, atol=1e-4, rtol=1e-5)
    with torch.no_grad():
        assert torch.allclose(plain(x), fast(x), atol=1e-5, rtol=1e-5)
    # float64 (no oneDNN path) falls back to nn.Linear exactly.
    assert torch.equal(plain.double()(x.double()), fast.double()(x.double()))


def test_transformer_bodies_use_it() -> None:
    network = build_network(random_transformer_weights(seed=1))
    linears = [m for m in network.modules() if isinstance(m, nn.Linear)]
    assert linears and all(type(m) is InferenceLinear for m in linears)
