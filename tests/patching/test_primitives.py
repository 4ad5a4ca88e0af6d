"""Patching primitives on tiny ResNet and transformer networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leelalab.lc0.weights.synthetic import random_resnet_weights, random_transformer_weights
from leelalab.models import build_network
from leelalab.patching.primitives import (
    mean_ablate_at_squares,
    patch_forward,
    replace_at_squares,
    replace_head,
    square_mask,
    zero_at_squares,
    zero_attention_entry,
    zero_head,
)


def _planes(seed: int, batch: int = 4) -> torch.Tensor:
    return (
        torch.rand(batch, 112, 8, 8, generator=torch.Generator().manual_seed(seed)) > 0.8
    ).float()


@pytest.fixture(scope="module", params=["resnet", "transformer"])
def net(request):
    if request.param == "resnet":
        return build_network(random_resnet_weights(blocks=3, filters=8, seed=1))
    return build_network(random_transformer_weights(layers=2, seed=1))


HOOK = "blocks.1.hook_resid_post"


def test_patching_every_square_gives_the_corrupted_output(net) -> None:
    clean, corrupted = _planes(1), _planes(2)
    with torch.no_grad():
        target, cache = net.run_with_cache(corrupted, names_filter=HOOK)
        patched = patch_forward(net, clean, cache, HOOK, list(range(64)))
    torch.testing.assert_close(patched.policy_logits, target.policy_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(patched.wdl, target.wdl, atol=1e-6, rtol=1e-5)


def test_patching_the_clean_activation_changes_nothing(net) -> None:
    clean = _planes(1)
    with torch.no_grad():
        reference, cache = net.run_with_cache(clean, names_filter=HOOK)
        patched = patch_forward(net, clean, cache, HOOK, [3, 17, 60])
    torch.testing.assert_close(patched.policy_logits, reference.policy_logits, atol=1e-6, rtol=1e-5)


def test_per_example_squares_equal_a_loop(net) -> None:
    clean, corrupted = _planes(1), _planes(2)
    squares = np.array([5, 28, 28, 63])
    with torch.no_grad():
        _, cache = net.run_with_cache(corrupted, names_filter=HOOK)
        batched = patch_forward(net, clean, cache, HOOK, squares)
        for i, square in enumerate(squares):
            single = patch_forward(
                net, clean[i : i + 1], {HOOK: cache[HOOK][i : i + 1]}, HOOK, int(square)
            )
            torch.testing.assert_close(
                batched.policy_logits[i : i + 1], single.policy_logits, atol=1e-5, rtol=1e-5
            )
        one_square = patch_forward(net, clean, cache, HOOK, 28)
    assert not torch.allclose(one_square.policy_logits, net(clean).policy_logits)


def test_zero_and_mean_ablation_match_manual_edits(net) -> None:
    clean = _planes(3)
    _, cache = net.run_with_cache(clean, names_filter=HOOK)
    manual = cache[HOOK].clone()
    manual[:, 10] = 0
    with torch.no_grad():
        zeroed = net.run_with_hooks(clean, fwd_hooks=[(HOOK, zero_at_squares(10))])
        by_hand = net.run_with_hooks(clean, fwd_hooks=[(HOOK, lambda t, *, hook: manual)])
        mean = cache[HOOK].mean(dim=(0, 1))
        mean_ablated = net.run_with_hooks(
            clean, fwd_hooks=[(HOOK, mean_ablate_at_squares(mean, [10]))]
        )
    torch.testing.assert_close(zeroed.policy_logits, by_hand.policy_logits)
    assert not torch.allclose(mean_ablated.policy_logits, zeroed.policy_logits)


def test_inputs_are_not_mutated() -> None:
    activation = torch.randn(2, 64, 4, 8)
    source = torch.randn(2, 64, 4, 8)
    copies = activation.clone(), source.clone()

    class Hook:
        name = "test"

    for fn in (
        replace_at_squares(source, [1]),
        zero_at_squares(np.array([0, 5])),
        zero_head(2),
        replace_head(source, 1),
    ):
        fn(activation, hook=Hook())
    pattern = torch.rand(2, 4, 64, 64)
    pattern_copy = pattern.clone()
    out = zero_attention_entry(3, np.array([12, 20]), np.array([44, 7]))(pattern, hook=Hook())
    assert torch.equal(activation, copies[0]) and torch.equal(source, copies[1])
    assert torch.equal(pattern, pattern_copy)
    changed = (out != pattern).nonzero().tolist()
    assert changed == [[0, 3, 12, 44], [1, 3, 20, 7]]
    assert out[0, 3, 12, 44] == 0 and out[1, 3, 20, 7] == 0


def test_head_primitives_on_a_transformer() -> None:
    net = build_network(random_transformer_weights(layers=2, seed=3))
    clean, corrupted = _planes(1), _planes(2)
    z_hook = "blocks.1.attn.hook_z"
    _, clean_cache = net.run_with_cache(clean, names_filter=z_hook)
    _, corrupted_cache = net.run_with_cache(corrupted, names_filter=z_hook)
    manual = clean_cache[z_hook].clone()
    manual[:, :, 2] = 0
    with torch.no_grad():
        zeroed = net.run_with_hooks(clean, fwd_hooks=[(z_hook, zero_head(2))])
        by_hand = net.run_with_hooks(clean, fwd_hooks=[(z_hook, lambda t, *, hook: manual)])
        replaced_all = net.run_with_hooks(
            clean, fwd_hooks=[(z_hook, replace_head(corrupted_cache[z_hook], h)) for h in range(4)]
        )
        entry = net.run_with_hooks(
            clean, fwd_hooks=[("blocks.0.attn.hook_pattern", zero_attention_entry(1, 12, 44))]
        )
    torch.testing.assert_close(zeroed.policy_logits, by_hand.policy_logits)
    assert not torch.allclose(entry.policy_logits, net(clean).policy_logits)
    # Replacing every head's output in the last layer's attention is not the full corrupted
    # run (the residual still carries clean information), but it must differ from clean.
    assert not torch.allclose(replaced_all.policy_logits, net(clean).policy_logits)


def test_shape_errors_are_clear() -> None:
    class Hook:
        name = "blocks.0.attn.hook_pattern"

    with pytest.raises(ValueError, match=r"\(batch, 64, heads, d_head\)"):
        zero_head(0)(torch.zeros(2, 4, 64, 64), hook=Hook())
    with pytest.raises(ValueError, match="out of range"):
        zero_head(9)(torch.zeros(2, 64, 4, 8), hook=Hook())
    with pytest.raises(ValueError, match="0..63"):
        square_mask([64], 2)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        square_mask(np.array([1, 2]), 3)
