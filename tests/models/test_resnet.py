"""The ResNet module against an independent composition of stock PyTorch layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from leelalab.errors import (
    CorruptWeightsError,
    LayerIndexError,
    NonFiniteWeightsError,
    UnsupportedNetworkError,
)
from leelalab.lc0.weights import ValueFormat, with_format
from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.models import build_network
from leelalab.models.resnet import ResNet


def _bn_conv(x: torch.Tensor, block: dict, kernel: int) -> torch.Tensor:
    """Unfolded reference: conv, then eval-mode BatchNorm2d with lc0's parameters."""
    out_channels = block["bn_means"].size if "bn_means" in block else block["biases"].size
    weight = torch.from_numpy(block["weights"]).reshape(out_channels, -1, kernel, kernel)
    bias = torch.from_numpy(block["biases"]) if "biases" in block else None
    y = F.conv2d(x, weight, bias, padding=kernel // 2)
    if "bn_means" not in block:
        return y
    return F.batch_norm(
        y,
        torch.from_numpy(block["bn_means"]),
        torch.from_numpy(block["bn_stddivs"]),  # lc0's "stddivs" are variances
        torch.from_numpy(block["bn_gammas"]),
        torch.from_numpy(block["bn_betas"]),
        training=False,
        eps=1e-5,
    )


def _reference_forward(
    w: dict, planes: torch.Tensor, policy: str
) -> tuple[torch.Tensor, torch.Tensor]:
    act = F.relu
    x = act(_bn_conv(planes, w["input"], 3))
    for block in w["residual"]:
        y = act(_bn_conv(x, block["conv1"], 3))
        z = _bn_conv(y, block["conv2"], 3)
        se = block["se"]
        channels = z.shape[1]
        hidden = act(
            F.linear(
                z.mean((2, 3)),
                torch.from_numpy(se["w1"]).reshape(-1, channels),
                torch.from_numpy(se["b1"]),
            )
        )
        t = F.linear(
            hidden, torch.from_numpy(se["w2"]).reshape(2 * channels, -1), torch.from_numpy(se["b2"])
        )
        z = torch.sigmoid(t[:, :channels])[..., None, None] * z + t[:, channels:, None, None]
        x = act(z + x)
    if policy == "classical":
        p = act(_bn_conv(x, w["policy"], 1)).flatten(1)
        logits = F.linear(
            p, torch.from_numpy(w["ip_pol_w"]).reshape(1858, -1), torch.from_numpy(w["ip_pol_b"])
        )
    else:
        p = _bn_conv(act(_bn_conv(x, w["policy1"], 3)), w["policy"], 3).flatten(1)
        logits = p  # compared through the gather below
    v = act(_bn_conv(x, w["value"], 1)).flatten(1)
    v = act(
        F.linear(
            v,
            torch.from_numpy(w["ip1_val_w"]).reshape(w["ip1_val_b"].size, -1),
            torch.from_numpy(w["ip1_val_b"]),
        )
    )
    v = F.linear(
        v, torch.from_numpy(w["ip2_val_w"]).reshape(3, -1), torch.from_numpy(w["ip2_val_b"])
    )
    return logits, torch.softmax(v, -1)


@pytest.mark.parametrize("policy", ["convolution", "classical"])
def test_matches_unfolded_reference(policy: str) -> None:
    weights = random_resnet_weights(policy=policy, seed=7, blocks=2, filters=8)
    net = build_network(weights)
    planes = torch.from_numpy(
        np.random.default_rng(0).integers(0, 2, (5, 112, 8, 8)).astype(np.float32)
    )
    with torch.no_grad():
        out = net(planes)
        ref_logits, ref_wdl = _reference_forward(weights.weights, planes, policy)
    if policy == "convolution":
        from leelalab.lc0.policy_map import conv_policy_gather_index

        ref_logits = ref_logits[:, torch.from_numpy(conv_policy_gather_index().copy())]
    torch.testing.assert_close(out.policy_logits, ref_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.wdl, ref_wdl, rtol=1e-5, atol=1e-6)
    assert out.moves_left is not None and out.moves_left.shape == (5,)
    assert (out.moves_left > 0).all()


def test_classical_value_head_maps_tanh_to_wdl() -> None:
    net = build_network(random_resnet_weights(value="classical", seed=2))
    with torch.no_grad():
        out = net(torch.ones(3, 112, 8, 8))
    w, d, l = out.wdl.unbind(-1)
    assert torch.all(d == 0)
    torch.testing.assert_close(w + l, torch.ones(3))
    logit = net.run_with_cache(torch.ones(3, 112, 8, 8), names_filter="value_head.hook_logits")[1]
    torch.testing.assert_close(w - l, torch.tanh(logit["value_head.hook_logits"][:, 0]))


def test_batched_equals_unbatched() -> None:
    net = build_network(random_resnet_weights(seed=1))
    planes = torch.randn(6, 112, 8, 8)
    with torch.no_grad():
        batched = net(planes)
        single = [net(planes[i : i + 1]) for i in range(6)]
    torch.testing.assert_close(batched.policy_logits, torch.cat([s.policy_logits for s in single]))
    torch.testing.assert_close(batched.wdl, torch.cat([s.wdl for s in single]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_other_dtypes_run(dtype: torch.dtype) -> None:
    net = build_network(random_resnet_weights(seed=1))
    reference = net(torch.ones(2, 112, 8, 8)).wdl
    out = net.to(dtype)(torch.ones(2, 112, 8, 8, dtype=dtype))
    assert out.wdl.dtype == dtype
    torch.testing.assert_close(out.wdl.float(), reference, atol=0.05, rtol=0.05)


def test_inconsistent_layers_raise() -> None:
    weights = random_resnet_weights(seed=1)
    weights.weights["residual"][1]["conv1"]["weights"] = np.zeros(7, np.float32)
    with pytest.raises(CorruptWeightsError, match="residual.1.conv1"):
        build_network(weights)
    weights = random_resnet_weights(seed=1)
    del weights.weights["ip2_val_w"]
    with pytest.raises(CorruptWeightsError, match="ip2_val_w"):
        build_network(weights)


def test_value_param_is_rejected() -> None:
    weights = with_format(random_resnet_weights(), value=ValueFormat.PARAM)
    with pytest.raises(UnsupportedNetworkError, match="VALUE_PARAM"):
        build_network(weights)


def test_named_submodules() -> None:
    net = build_network(random_resnet_weights(blocks=3))
    assert isinstance(net, ResNet)
    names = dict(net.named_parameters())
    assert "blocks.2.conv2.conv.weight" in names
    assert "blocks.0.se.fc1.weight" in names
    assert "policy_head.conv2.weight" in names
    assert "value_head.fc2.bias" in names


@pytest.mark.parametrize("policy", ["convolution", "classical", "attention"])
def test_export_round_trip(tmp_path, policy: str) -> None:
    from leelalab.lc0.weights import Encoding, load_weights, save_weights

    net = build_network(random_resnet_weights(policy=policy, policy_encoders=1, seed=3))
    path = save_weights(net.to_lc0(), tmp_path / "exported.pb.gz", encoding=Encoding.FLOAT32)
    again = build_network(load_weights(path))
    planes = torch.randn(3, 112, 8, 8)
    with torch.no_grad():
        a, b = net(planes), again(planes)
    torch.testing.assert_close(a.policy_logits, b.policy_logits, rtol=0, atol=0)
    torch.testing.assert_close(a.wdl, b.wdl, rtol=0, atol=0)
    torch.testing.assert_close(a.moves_left, b.moves_left, rtol=0, atol=0)


def test_channels_last_gives_identical_outputs() -> None:
    net = build_network(random_resnet_weights(seed=8))
    planes = torch.randn(4, 112, 8, 8)
    with torch.no_grad():
        reference = net(planes)
        net_cl = net.to(memory_format=torch.channels_last)
        out = net_cl(planes.contiguous(memory_format=torch.channels_last))
        _, cache = net_cl.run_with_cache(planes.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out.policy_logits, reference.policy_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.wdl, reference.wdl, rtol=1e-5, atol=1e-6)
    assert cache["blocks.1.hook_resid_post"].shape == (4, 64, 8)


@pytest.mark.parametrize(
    ("path", "missing"),
    [
        (("residual", 1, "conv1"), "residual.1.conv1"),
        (("residual", 0, "conv2"), "residual.0.conv2"),
        (("residual", 0, "se", "b1"), "residual.0.se.b1"),
        (("input", "weights"), "input.weights"),
        (("policy",), "policy"),
        (("policy1",), "policy1"),
        (("value",), "value"),
        (("ip1_val_b",), "ip1_val_b"),
    ],
)
def test_missing_sub_messages_are_named(path: tuple, missing: str) -> None:
    weights = random_resnet_weights(seed=2)
    node = weights.weights
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    with pytest.raises(CorruptWeightsError, match=f"missing '{missing}'"):
        build_network(weights)


def test_value_head_width_must_match_the_header() -> None:
    wdl = random_resnet_weights(value="wdl")
    with pytest.raises(CorruptWeightsError, match="value format CLASSICAL needs 1"):
        build_network(with_format(wdl, value=ValueFormat.CLASSICAL))
    classical = random_resnet_weights(value="classical")
    with pytest.raises(CorruptWeightsError, match="value format WDL needs 3"):
        build_network(with_format(classical, value=ValueFormat.WDL))


def test_sizes_are_checked_before_memory_is_allocated(monkeypatch) -> None:
    # A corrupt value head claiming 30,000 channels would need a 30,000 x 64 x 16 dense layer
    # (123 MB); the meta-device dry run rejects it before anything real is allocated.
    weights = random_resnet_weights(seed=3)
    weights.weights["value"] = {
        "weights": np.zeros(30_000 * 8, np.float32),
        "biases": np.zeros(30_000, np.float32),
    }
    allocated: list[int] = []
    original_init = torch.nn.Linear.__init__

    def spy(self, in_features: int, out_features: int, *args, **kwargs) -> None:
        original_init(self, in_features, out_features, *args, **kwargs)
        if self.weight.device.type != "meta":
            allocated.append(in_features * out_features)

    monkeypatch.setattr(torch.nn.Linear, "__init__", spy)
    with pytest.raises(CorruptWeightsError, match="ip1_val_w"):
        build_network(weights)
    assert max(allocated, default=0) < 1_000_000


def test_build_errors_name_the_source() -> None:
    weights = random_resnet_weights()
    del weights.weights["value"]
    weights.source = "nets/broken.pb.gz"
    with pytest.raises(CorruptWeightsError, match=r"^nets/broken\.pb\.gz: the network is missing"):
        build_network(weights)


def test_unexpected_build_failures_are_still_one_clear_error(monkeypatch) -> None:
    def explode(_weights):
        raise ValueError("a case nobody thought of")

    monkeypatch.setattr(ResNet, "from_lc0", classmethod(lambda cls, w: explode(w)))
    weights = random_resnet_weights()
    weights.source = "odd.pb.gz"
    with pytest.raises(CorruptWeightsError, match=r"^odd\.pb\.gz: .*please report a bug"):
        build_network(weights)


@pytest.mark.parametrize("layer", [-2, 2, 9])
def test_out_of_range_layers_say_the_valid_range(layer: int) -> None:
    net = build_network(random_resnet_weights(blocks=2))
    net.source = "tiny.pb.gz"
    message = r"^tiny\.pb\.gz: layer .* valid layers are -1 \(the input convolution\) to 1$"
    with pytest.raises(LayerIndexError, match=message):
        net.residual_hook_name(layer)
    with pytest.raises(LayerIndexError, match=message):
        net.run_from(layer, torch.zeros(1, 64, 8))
    assert net.residual_hook_name(1) == "blocks.1.hook_resid_post"


def test_batch_norm_folding_rejects_what_would_be_nan() -> None:
    weights = random_resnet_weights(seed=5)
    weights.weights["residual"][0]["conv1"]["bn_stddivs"][3] = -0.5  # a negative variance
    with pytest.raises(CorruptWeightsError, match="residual.0.conv1': bn_stddivs .* 1 negative"):
        build_network(weights)
    weights = random_resnet_weights(seed=5)
    weights.weights["input"]["bn_gammas"][:] = 3e38  # finite, but the folded weights overflow
    weights.weights["input"]["weights"][:] = 100.0
    with pytest.raises(NonFiniteWeightsError, match="'input': folding its batch norm overflows"):
        build_network(weights)
