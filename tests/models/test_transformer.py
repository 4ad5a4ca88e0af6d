"""Transformer networks: the parts lc0 v0.31 cannot check (PE_DENSE, multihead), hooks, size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leelalab.errors import CorruptWeightsError, LayerIndexError, UnsupportedNetworkError
from leelalab.hooks import HookPoint
from leelalab.lc0.weights import (
    InputEmbedding,
    NetworkStructure,
    PolicyFormat,
    ValueFormat,
    with_format,
)
from leelalab.lc0.weights.synthetic import TRANSFORMER_SHAPES, random_transformer_weights
from leelalab.models import TransformerNetwork, build_network


def _planes(batch: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 112, 8, 8, generator=generator) > 0.8).float()


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_dense_embedding_follows_the_format_spec() -> None:
    # Reference written from the format notes (§2.4 PE_DENSE), in float64 numpy.
    weights = random_transformer_weights(embedding="pe_dense", multihead=True, seed=2, layers=3)
    w = {k: v.astype(np.float64) for k, v in weights.weights.items() if isinstance(v, np.ndarray)}
    ffn = {k: v.astype(np.float64) for k, v in weights.weights["ip_emb_ffn"].items()}
    e, ds = w["ip_emb_b"].size, w["ip_emb_preproc_b"].size // 64
    planes = _planes(2, seed=5)
    x = planes.numpy().astype(np.float64).reshape(2, 112, 64).transpose(0, 2, 1)  # (b, 64, 112)
    pre = x[:, :, :12].reshape(2, 768) @ w["ip_emb_preproc_w"].reshape(64 * ds, 768).T
    pre = (pre + w["ip_emb_preproc_b"]).reshape(2, 64, ds)
    z = np.concatenate([x, pre], axis=2) @ w["ip_emb_w"].reshape(e, 112 + ds).T + w["ip_emb_b"]
    z = np.maximum(z, 0)
    z = _layer_norm(z, w["ip_emb_ln_gammas"], w["ip_emb_ln_betas"], 1e-3)
    z = z * w["ip_mult_gate"].reshape(e, 64).T + w["ip_add_gate"].reshape(e, 64).T
    hidden = np.maximum(z @ ffn["dense1_w"].reshape(-1, e).T + ffn["dense1_b"], 0)
    f = hidden @ ffn["dense2_w"].reshape(e, -1).T + ffn["dense2_b"]
    alpha = (2 * 3) ** -0.25
    z = _layer_norm(z + alpha * f, w["ip_emb_ffn_ln_gammas"], w["ip_emb_ffn_ln_betas"], 1e-3)
    network = build_network(weights)
    _, cache = network.run_with_cache(planes, names_filter="embed.hook_out")
    np.testing.assert_allclose(cache["embed.hook_out"].numpy(), z, atol=2e-5)


def test_epsilons_and_residual_scaling() -> None:
    dense = build_network(
        random_transformer_weights(embedding="pe_dense", multihead=True, layers=4)
    )
    mapped = build_network(random_transformer_weights(layers=3))
    assert dense.blocks[0].ln1.eps == 1e-3 and dense.blocks[0].ln2.eps == 1e-3
    assert mapped.blocks[0].ln1.eps == 1e-6 and mapped.blocks[2].ln2.eps == 1e-6
    assert mapped.blocks[0].attn.smolgen.ln1.eps == 1e-3
    assert dense.blocks[0].alpha == pytest.approx(8**-0.25)
    assert mapped.blocks[0].alpha == pytest.approx(6**-0.25)


def test_multihead_selection_matches_single_head_files() -> None:
    multi = random_transformer_weights(multihead=True, seed=4)
    network = build_network(multi)
    assert set(network.policy_heads) == {"vanilla", "optimistic"}
    assert set(network.value_heads) == {"winner", "q"}
    planes = _planes()

    def single_head(policy_key: str, value_key: str) -> TransformerNetwork:
        w = {k: v for k, v in multi.weights.items() if k not in ("policy_heads", "value_heads")}
        w.update(
            ip_pol_w=multi.weights["policy_heads"]["ip_pol_w"],
            ip_pol_b=multi.weights["policy_heads"]["ip_pol_b"],
        )
        w.update(multi.weights["policy_heads"][policy_key])
        w.update(multi.weights["value_heads"][value_key])
        single = with_format(multi, network=NetworkStructure.ATTENTIONBODY_WITH_HEADFORMAT)
        single.weights = w
        return build_network(single)

    with torch.no_grad():
        default = network(planes)
        torch.testing.assert_close(
            default.policy_logits, single_head("vanilla", "winner")(planes).policy_logits
        )
        network.policy_head_name, network.value_head_name = "optimistic", "q"
        other = network(planes)
        reference = single_head("optimistic_st", "q")(planes)
    torch.testing.assert_close(other.policy_logits, reference.policy_logits)
    torch.testing.assert_close(other.wdl, reference.wdl)
    assert not torch.allclose(default.policy_logits, other.policy_logits)


@pytest.fixture(scope="module")
def net() -> TransformerNetwork:
    return build_network(random_transformer_weights(layers=3, seed=9))


def test_hook_shapes(net) -> None:
    _, cache = net.run_with_cache(_planes(2))
    assert cache["embed.hook_out"].shape == (2, 64, 32)
    assert cache["blocks.1.hook_resid_post"].shape == (2, 64, 32)
    assert cache["blocks.1.attn.hook_pattern"].shape == (2, 4, 64, 64)
    assert cache["blocks.1.attn.hook_scores"].shape == (2, 4, 64, 64)
    assert cache["blocks.1.attn.hook_smolgen"].shape == (2, 4, 64, 64)
    assert cache["blocks.2.attn.hook_z"].shape == (2, 64, 4, 8)
    assert cache["blocks.0.attn.hook_q"].shape == (2, 64, 4, 8)
    assert cache["blocks.0.mlp.hook_post"].shape == (2, 64, 64)
    assert cache["policy_heads.vanilla.hook_scores"].shape == (2, 64, 64)
    assert cache["policy_heads.vanilla.hook_logits"].shape == (2, 1858)
    torch.testing.assert_close(cache["blocks.0.attn.hook_pattern"].sum(-1), torch.ones(2, 4, 64))
    assert net.hook_dict["blocks.2.attn.hook_z"].layer == 2


def test_caching_and_explicit_attention_change_nothing(net) -> None:
    planes = _planes(4)
    with torch.no_grad():
        fused = net(planes)  # scaled_dot_product_attention path
        explicit, _ = net.run_with_cache(planes)  # every hook active: explicit path
    torch.testing.assert_close(fused.policy_logits, explicit.policy_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused.wdl, explicit.wdl, atol=1e-6, rtol=1e-5)


def test_patching_own_activation_changes_nothing_and_zeroing_changes_one_forward(net) -> None:
    planes = _planes(4)
    names = ["blocks.1.hook_resid_post", "blocks.1.attn.hook_pattern", "blocks.0.attn.hook_z"]
    clean, cache = net.run_with_cache(planes, names_filter=names)

    def restore(tensor: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
        return cache[hook.name].clone()

    patched = net.run_with_hooks(planes, fwd_hooks=[(names, restore)])
    torch.testing.assert_close(clean.policy_logits, patched.policy_logits, rtol=1e-5, atol=1e-6)

    def zero_square(tensor: torch.Tensor, *, hook: HookPoint) -> torch.Tensor:
        tensor = tensor.clone()
        tensor[:, 36] = 0
        return tensor

    with torch.no_grad():
        changed = net.run_with_hooks(planes, fwd_hooks=[("blocks.1.hook_resid_post", zero_square)])
        after = net(planes)
    assert not torch.allclose(changed.policy_logits, clean.policy_logits, atol=1e-4)
    torch.testing.assert_close(after.policy_logits, clean.policy_logits, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_t82_sized_network_builds_and_runs() -> None:
    weights = random_transformer_weights(**TRANSFORMER_SHAPES["t82"], seed=1)
    network = build_network(weights)
    assert network.network_format.input_embedding == InputEmbedding.PE_MAP
    description = weights.describe()
    assert (description.layers, description.d_model, description.heads) == (15, 768, 24)
    with torch.no_grad():
        output, cache = network.run_with_cache(
            _planes(2), names_filter="blocks.12.attn.hook_pattern"
        )
    assert output.policy_logits.shape == (2, 1858) and torch.isfinite(output.policy_logits).all()
    assert cache["blocks.12.attn.hook_pattern"].shape == (2, 24, 64, 64)


@pytest.mark.parametrize(
    "options",
    [{}, {"embedding": "pe_dense", "multihead": True}, {"smolgen": None, "gates": False}],
)
def test_export_round_trip(tmp_path, options: dict) -> None:
    from leelalab.lc0.weights import Encoding, load_weights, save_weights

    original = random_transformer_weights(seed=12, **options)
    network = build_network(original)
    exported = network.to_lc0()
    assert sorted(name for name, _ in exported.layers()) == sorted(
        name for name, _ in original.layers()
    )
    path = save_weights(exported, tmp_path / "exported.pb.gz", encoding=Encoding.FLOAT32)
    again = build_network(load_weights(path))
    planes = _planes(3)
    with torch.no_grad():
        a, b = network(planes), again(planes)
    torch.testing.assert_close(a.policy_logits, b.policy_logits, rtol=0, atol=0)
    torch.testing.assert_close(a.wdl, b.wdl, rtol=0, atol=0)


def test_attention_bodies_need_an_attention_policy_and_matching_value_width() -> None:
    weights = random_transformer_weights(seed=4)
    with pytest.raises(UnsupportedNetworkError, match="policy format CONVOLUTION"):
        build_network(with_format(weights, policy=PolicyFormat.CONVOLUTION))
    with pytest.raises(CorruptWeightsError, match="value format CLASSICAL needs 1"):
        build_network(with_format(weights, value=ValueFormat.CLASSICAL))


def test_heads_must_split_the_attention_channels() -> None:
    weights = random_transformer_weights(seed=4, d_model=32, heads=4, smolgen=None)
    weights.weights["headcount"] = 3
    with pytest.raises(CorruptWeightsError, match="do not split into 3 heads"):
        build_network(weights)


@pytest.mark.parametrize("layer", [-2, 2])
def test_out_of_range_layers_name_the_embedding(layer: int) -> None:
    net = build_network(random_transformer_weights(seed=4, layers=2))
    with pytest.raises(LayerIndexError, match=r"-1 \(the input embedding\) to 1$"):
        net.run_from(layer, torch.zeros(1, 64, 32))
