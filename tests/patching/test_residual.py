"""Residual-stream patching: restarts, exactness, batched = naive, resumable runs."""

from __future__ import annotations

import json

import chess
import h5py
import numpy as np
import pytest
import torch

from leelalab.lc0.weights.synthetic import random_resnet_weights, random_transformer_weights
from leelalab.models import build_network
from leelalab.patching.primitives import replace_at_squares
from leelalab.patching.residual import (
    PatchingResults,
    group_effects,
    patch_residual_batch,
    patch_residual_naive,
    prepare_pairs,
    rank_statistics,
    run_residual_patching,
)
from leelalab.patching.settings import ResidualPatchingSettings
from leelalab.puzzles.dataset import SQUARE_GROUPS, write_pairs_dataset
from positions import corrupted_puzzles


@pytest.fixture(scope="module", params=["resnet", "transformer"])
def network(request):
    if request.param == "resnet":
        weights = random_resnet_weights(blocks=3, filters=16, se_channels=4, seed=3)
    else:
        weights = random_transformer_weights(layers=3, seed=1)
    return build_network(weights).eval()


@pytest.fixture(scope="module")
def puzzles():
    return corrupted_puzzles(5)


def test_fixture_puzzles_include_black_to_move(puzzles) -> None:
    assert {p.clean_board.turn for p in puzzles} == {True, False}


def test_run_from_equals_the_full_forward_at_every_layer(network, puzzles) -> None:
    pairs = prepare_pairs(network, puzzles)
    names = [network.residual_hook_name(layer) for layer in range(-1, network.n_layers)]
    with torch.no_grad():
        full, cache = network.run_with_cache(pairs.clean_planes, names_filter=names)
        for layer, name in zip(range(-1, network.n_layers), names, strict=True):
            restarted = network.run_from(layer, cache[name])
            torch.testing.assert_close(restarted.policy_logits, full.policy_logits)
            torch.testing.assert_close(restarted.wdl, full.wdl)


def test_patching_every_square_with_the_corrupted_run_gives_the_corrupted_output(
    network, puzzles
) -> None:
    pairs = prepare_pairs(network, puzzles)
    with torch.no_grad():
        corrupted = network(pairs.corrupted_planes)
        for layer in range(network.n_layers):
            name = network.residual_hook_name(layer)
            _, cache = network.run_with_cache(pairs.corrupted_planes, names_filter=name)
            patched = network.run_with_hooks(
                pairs.clean_planes,
                fwd_hooks=[(name, replace_at_squares(cache[name], list(range(64))))],
            )
            torch.testing.assert_close(patched.policy_logits, corrupted.policy_logits)
            torch.testing.assert_close(patched.wdl, corrupted.wdl)


def test_patching_with_the_clean_activation_changes_nothing(network, puzzles) -> None:
    pairs = prepare_pairs(network, puzzles)
    pairs.corrupted_planes = pairs.clean_planes  # the "source" run is the clean run itself
    pairs.corrupted_legal = pairs.clean_legal
    result = patch_residual_batch(
        network, pairs, range(network.n_layers), skip_identical=False, max_rows=100
    )
    assert result.forwards == len(puzzles) * network.n_layers * 64  # the patches really ran
    for metric in ("log_odds", "wl", "kl"):
        assert np.abs(result.effects[metric]).max() < 1e-5


@pytest.mark.parametrize("direction", ["noising", "denoising"])
def test_batched_restarted_patching_equals_naive_patching(network, puzzles, direction) -> None:
    pairs = prepare_pairs(network, puzzles)
    layers = list(range(-1, network.n_layers))
    fast = patch_residual_batch(network, pairs, layers, direction=direction, max_rows=37)
    naive = patch_residual_naive(network, pairs, layers, direction=direction)
    assert np.abs(naive).max() > 1e-3  # the corruption does something
    np.testing.assert_allclose(fast.effects["log_odds"], naive, atol=2e-5)


@pytest.mark.parametrize("direction", ["noising", "denoising"])
def test_sign_convention_against_an_independent_computation(network, puzzles, direction) -> None:
    """Effect at (puzzle 0, layer 0, real square) recomputed with the evaluation module's
    legal softmax: noising = clean - patched, denoising = patched - corrupted."""
    import math

    from leelalab.lc0.squares import model_square
    from leelalab.models.evaluation import legal_policy

    def probabilities(board, output) -> dict[str, float]:
        return legal_policy(board, output.policy_logits[0].numpy())

    for item in puzzles:  # one whose clean top move stays legal after the corruption
        pairs = prepare_pairs(network, [item])
        with torch.no_grad():
            clean_policy = probabilities(item.clean_board, network(pairs.clean_planes))
        top = max(clean_policy, key=clean_policy.get)
        if chess.Move.from_uci(top) in item.corrupted_board.legal_moves:
            break
    result = patch_residual_batch(network, pairs, [0], direction=direction)
    name = network.residual_hook_name(0)
    clean_board, corrupted_board = item.clean_board, item.corrupted_board
    base_planes, source_planes = pairs.base_and_source(direction)
    base_board = clean_board if direction == "noising" else corrupted_board

    with torch.no_grad():
        base_policy = probabilities(base_board, network(base_planes))
        _, cache = network.run_with_cache(source_planes, names_filter=name)
        for real in (item.target_square(1, frame="real"), item.corrupted_squares("real")[0]):
            square = model_square(clean_board, real)
            patched = network.run_with_hooks(
                base_planes, fwd_hooks=[(name, replace_at_squares(cache[name], [square]))]
            )
            patched_policy = probabilities(base_board, patched)

            def odds(p: float) -> float:
                return math.log(p / (1 - p))

            expected = odds(base_policy[top]) - odds(patched_policy[top])
            if direction == "denoising":
                expected = -expected
            assert result.effects["log_odds"][0, 0, real] == pytest.approx(expected, abs=1e-4)


def _arrays(path) -> dict[str, np.ndarray]:
    with h5py.File(path) as handle:
        return {name: handle[name][()] for name in handle}


def test_interrupted_run_resumes_to_identical_results(tmp_path, monkeypatch) -> None:
    network = build_network(random_resnet_weights(blocks=2, filters=8, seed=5)).eval()
    write_pairs_dataset(tmp_path / "data", corrupted_puzzles(7, seed=1))
    whole = run_residual_patching(
        network,
        tmp_path / "data",
        tmp_path / "whole",
        ResidualPatchingSettings(chunk_size=2),
        progress=False,
    )

    import leelalab.patching.residual as module

    calls = {"n": 0}
    original = module.patch_residual_batch

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "patch_residual_batch", failing)
    with pytest.raises(KeyboardInterrupt):
        run_residual_patching(
            network,
            tmp_path / "data",
            tmp_path / "resumed",
            ResidualPatchingSettings(chunk_size=2),
            progress=False,
        )
    assert len(list((tmp_path / "resumed" / "chunks").glob("*.h5"))) == 2
    monkeypatch.setattr(module, "patch_residual_batch", original)
    resumed = run_residual_patching(
        network,
        tmp_path / "data",
        tmp_path / "resumed",
        ResidualPatchingSettings(chunk_size=2),
        progress=False,
    )
    first, second = _arrays(whole), _arrays(resumed)
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    run = json.loads((tmp_path / "resumed" / "run.json").read_text())
    assert run["items"] == 7 and run["items_computed_this_session"] == 3
    assert run["network_sha256"] == network.sha256

    results = PatchingResults.load(tmp_path / "resumed")
    assert results.effects().shape == (7, 2, 64)
    assert set(results.group_table()) >= {"target_1", "other"}


def test_resuming_with_other_settings_is_refused(tmp_path) -> None:
    from leelalab.runs.results import ResultsError

    network = build_network(random_resnet_weights(blocks=2, filters=8, seed=5)).eval()
    write_pairs_dataset(tmp_path / "data", corrupted_puzzles(2))
    run_residual_patching(network, tmp_path / "data", tmp_path / "out", progress=False)
    with pytest.raises(ResultsError, match=r"other settings \(differing: direction\)"):
        run_residual_patching(
            network,
            tmp_path / "data",
            tmp_path / "out",
            ResidualPatchingSettings(direction="denoising"),
            progress=False,
        )
    path = run_residual_patching(
        network,
        tmp_path / "data",
        tmp_path / "out",
        ResidualPatchingSettings(direction="denoising"),
        progress=False,
        overwrite=True,
    )
    assert PatchingResults.load(path).direction == "denoising"


def test_a_dataset_without_corruptions_says_to_run_puzzles_corrupt(tmp_path) -> None:
    from leelalab.puzzles.dataset import DatasetError

    network = build_network(random_resnet_weights(blocks=2, filters=8, seed=5)).eval()
    write_pairs_dataset(tmp_path / "data", corrupted_puzzles(2))
    (tmp_path / "data" / "corruptions.jsonl").unlink()
    with pytest.raises(DatasetError, match="no corruptions.jsonl.*leelalab puzzles corrupt"):
        run_residual_patching(network, tmp_path / "data", tmp_path / "out", progress=False)
    (tmp_path / "data" / "corruptions.jsonl").write_text("")
    with pytest.raises(DatasetError, match="none of the 2 selected puzzles.*2 no corruption"):
        run_residual_patching(network, tmp_path / "data", tmp_path / "out", progress=False)
    with pytest.raises(DatasetError, match="no dataset.jsonl"):
        run_residual_patching(network, tmp_path / "nothing", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_group_effects_and_ranks_on_hand_made_numbers() -> None:
    groups = np.full((2, 64), SQUARE_GROUPS.index("other"))
    target_3 = SQUARE_GROUPS.index("target_3")
    corrupted = SQUARE_GROUPS.index("corrupted")
    groups[:, 10], groups[:, 20], groups[:, 30] = target_3, corrupted, target_3
    effects = np.zeros((2, 1, 64))
    effects[0, 0, 10], effects[0, 0, 30] = 1.0, 3.0  # puzzle 0: max over target_3 = 3
    effects[1, 0, 10] = 1.0  # puzzle 1: max = 1
    effects[:, 0, 20] = 9.0  # the corrupted square is the most important of all
    effects[1, 0, 40] = 2.0  # an "other" square beats puzzle 1's 3rd target
    curves = group_effects(effects, groups)
    assert curves["target_3"].mean[0] == pytest.approx(2.0)
    assert curves["target_3"].two_sem[0] == pytest.approx(2 * np.std([3, 1], ddof=1) / np.sqrt(2))
    assert curves["corrupted"].mean[0] == pytest.approx(9.0)
    assert curves["other"].mean[0] == pytest.approx(1.0)  # max over others: 0 and 2
    assert group_effects(effects, groups, reduce="mean")["target_3"].mean[0] == pytest.approx(1.25)
    ranks = rank_statistics(effects, groups)
    assert ranks["top1"][0] == pytest.approx(0.5)  # corrupted squares do not count
    assert ranks["mean_rank"][0] == pytest.approx(1.5)


@pytest.mark.slow
def test_maia_sweep_equals_naive_and_full_patches_reproduce_the_corrupted_run(maia_path) -> None:
    from leelalab.inference.networks import load_network

    maia = load_network(maia_path)
    pairs = prepare_pairs(maia, corrupted_puzzles(3, seed=4))
    layers = list(range(maia.n_layers))
    fast = patch_residual_batch(maia, pairs, layers)
    naive = patch_residual_naive(maia, pairs, layers)
    np.testing.assert_allclose(fast.effects["log_odds"], naive, atol=1e-4)
    with torch.no_grad():
        corrupted = maia(pairs.corrupted_planes)
        for layer in (0, 3, 5):
            name = maia.residual_hook_name(layer)
            _, cache = maia.run_with_cache(pairs.corrupted_planes, names_filter=name)
            restarted = maia.run_from(layer, cache[name])
            torch.testing.assert_close(restarted.policy_logits, corrupted.policy_logits)
