"""Hook points: caching, patching and removal on a tiny ResNet."""

from __future__ import annotations

import pytest
import torch

from leelalab.hooks import HookPoint
from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.models import build_network


@pytest.fixture(scope="module")
def net():
    return build_network(random_resnet_weights(blocks=3, filters=8, seed=11))


@pytest.fixture(scope="module")
def planes() -> torch.Tensor:
    return torch.randn(4, 112, 8, 8, generator=torch.Generator().manual_seed(0))


def test_hook_names_are_readable(net) -> None:
    names = net.hook_names
    for expected in (
        "input.hook_out",
        "blocks.0.hook_resid_pre",
        "blocks.2.hook_resid_post",
        "blocks.1.hook_se",
        "policy_head.hook_logits",
        "value_head.hook_logits",
        "moves_left_head.hook_out",
    ):
        assert expected in names
    assert net.hook_dict["blocks.2.hook_conv1"].layer == 2


def test_caching_changes_nothing(net, planes) -> None:
    with torch.no_grad():
        plain = net(planes)
        cached, cache = net.run_with_cache(planes)
    torch.testing.assert_close(plain.policy_logits, cached.policy_logits, rtol=0, atol=0)
    torch.testing.assert_close(plain.wdl, cached.wdl, rtol=0, atol=0)
    assert cache["blocks.1.hook_resid_post"].shape == (4, 64, 8)
    assert cache["policy_head.hook_logits"].shape == (4, 1858)
    assert set(cache) == set(net.hook_names)


def test_cache_uses_square_layout(net, planes) -> None:
    _, cache = net.run_with_cache(planes, names_filter=["input.hook_out"])
    with torch.no_grad():
        conv_out = net.input(planes)  # (batch, C, 8, 8): rank-major squares
    square = 8 * 3 + 5  # f4 in the side-to-move frame
    torch.testing.assert_close(cache["input.hook_out"][:, square, :], conv_out[:, :, 3, 5])


def test_patching_with_own_activation_changes_nothing(net, planes) -> None:
    _, cache = net.run_with_cache(planes, names_filter=lambda n: n.endswith("resid_post"))

    def restore(tensor: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
        return cache[hook.name].clone()

    with torch.no_grad():
        clean = net(planes)
        patched = net.run_with_hooks(
            planes, fwd_hooks=[(lambda n: n.endswith("resid_post"), restore)]
        )
    torch.testing.assert_close(clean.policy_logits, patched.policy_logits, rtol=0, atol=0)


def test_zeroing_one_square_changes_only_that_forward(net, planes) -> None:
    def zero_square(tensor: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
        tensor = tensor.clone()
        tensor[:, 28, :] = 0
        return tensor

    with torch.no_grad():
        clean = net(planes)
        patched = net.run_with_hooks(planes, fwd_hooks=[("blocks.1.hook_resid_post", zero_square)])
        after = net(planes)
    assert not torch.allclose(clean.policy_logits, patched.policy_logits)
    torch.testing.assert_close(clean.policy_logits, after.policy_logits, rtol=0, atol=0)
    assert not any(hook.active for hook in net.hook_dict.values())


def test_hooks_are_removed_after_an_exception(net, planes) -> None:
    def explode(tensor: torch.Tensor, *, hook: HookPoint) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        net.run_with_hooks(planes, fwd_hooks=[("blocks.0.hook_conv1", explode)])
    assert not any(hook.active for hook in net.hook_dict.values())


def test_context_manager_and_unknown_names(net, planes) -> None:
    seen: list[str] = []
    with net.hooks([("blocks.0.hook_resid_pre", lambda t, *, hook: seen.append(hook.name))]):
        net(planes)
    net(planes)
    assert seen == ["blocks.0.hook_resid_pre"]
    with pytest.raises(KeyError, match="no hook point"):
        net.run_with_hooks(planes, fwd_hooks=[("blocks.9.hook_nothing", lambda t, *, hook: None)])
