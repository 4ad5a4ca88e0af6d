"""Attention-head analyses on a small random transformer: batched = naive, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leelalab.lc0.weights.synthetic import random_resnet_weights, random_transformer_weights
from leelalab.models import build_network
from leelalab.models.evaluation import legal_policy
from leelalab.patching.heads import (
    PIECE_TYPES,
    NeedsAttentionError,
    PieceMovementHeads,
    entry_ablation,
    head_search,
    move_mass,
    patch_heads_batch,
    percentile_curve,
    piece_move_masks,
    piece_movement_ablation,
    piece_movement_heads,
    piece_movement_scores,
    prepare_clean,
    usable_for_entries,
)
from leelalab.patching.pairs import prepare_pairs
from leelalab.patching.primitives import replace_head, zero_attention_entry
from positions import corrupted_puzzles


@pytest.fixture(scope="module")
def network():
    return build_network(random_transformer_weights(layers=3, heads=4, seed=1)).eval()


@pytest.fixture(scope="module")
def puzzles():
    return corrupted_puzzles(5)


def _log_odds(board, output, top: str) -> float:
    p = legal_policy(board, output.policy_logits[0].numpy())[top]
    return float(np.log(p / (1 - p)))


def test_resnets_get_a_clear_error(puzzles) -> None:
    resnet = build_network(random_resnet_weights()).eval()
    with pytest.raises(NeedsAttentionError, match="without attention heads"):
        head_search(resnet, puzzles)
    with pytest.raises(NeedsAttentionError):
        patch_heads_batch(resnet, prepare_pairs(resnet, puzzles))


def test_batched_head_patching_equals_naive_hooks(network, puzzles) -> None:
    pairs = prepare_pairs(network, puzzles)
    fast = patch_heads_batch(network, pairs, max_rows=7)["log_odds"]
    assert fast.shape == (len(puzzles), 3, 4)
    with torch.no_grad():
        clean = network(pairs.clean_planes)
        names = [f"blocks.{layer}.attn.hook_z" for layer in range(3)]
        _, source = network.run_with_cache(pairs.corrupted_planes, names_filter=names)
    for index, item in enumerate(puzzles):
        policy = legal_policy(item.clean_board, clean.policy_logits[index].numpy())
        top = max(policy, key=policy.get)
        base = np.log(policy[top] / (1 - policy[top]))
        for layer in (0, 2):
            for head in range(4):
                name = names[layer]
                with torch.no_grad():
                    patched = network.run_with_hooks(
                        pairs.clean_planes[index : index + 1],
                        fwd_hooks=[(name, replace_head(source[name][index : index + 1], head))],
                    )
                expected = base - _log_odds(item.clean_board, patched, top)
                assert fast[index, layer, head] == pytest.approx(expected, abs=1e-4)
    assert np.abs(fast).max() > 1e-4


def test_head_search_and_entry_ablation_equal_naive_entry_zeroing(network, puzzles) -> None:
    usable = usable_for_entries(puzzles, network)
    assert usable
    search = head_search(network, usable, max_rows=5)
    batch = prepare_clean(network, usable)
    for index, item in enumerate(usable):
        query, key = int(batch.targets[index, 0, 1]), int(batch.targets[index, 2, 1])
        planes = batch.planes[index : index + 1]
        with torch.no_grad():
            clean = network(planes)
        policy = legal_policy(item.clean_board, clean.policy_logits[0].numpy())
        top = max(policy, key=policy.get)
        for layer in range(3):
            for head in range(4):
                hook = zero_attention_entry(head, query, key)
                with torch.no_grad():
                    ablated = network.run_with_hooks(
                        planes, fwd_hooks=[(f"blocks.{layer}.attn.hook_pattern", hook)]
                    )
                expected = _log_odds(item.clean_board, clean, top) - _log_odds(
                    item.clean_board, ablated, top
                )
                assert search[index, layer, head] == pytest.approx(expected, abs=1e-4)
    single = entry_ablation(network, usable, 1, 2, random_samples=3)
    np.testing.assert_allclose(single.target, search[:, 1, 2], atol=1e-5)
    assert single.random_entries.shape == (len(usable), 3)
    # Zeroing all other entries of a head is a much bigger intervention than one entry.
    assert np.abs(single.all_other).mean() > np.abs(single.target).mean()


def test_entry_ablation_rejects_heads_that_do_not_exist(network, puzzles) -> None:
    from leelalab.errors import LeelaLabError

    with pytest.raises(LeelaLabError, match="does not exist"):
        entry_ablation(network, puzzles, 3, 0)


def test_piece_move_masks_match_python_chess_counts() -> None:
    masks = piece_move_masks()
    assert masks.shape == (5, 64, 64)
    assert (masks == masks.transpose(0, 2, 1)).all()  # symmetric move sets
    knight, bishop, rook, queen, king = masks.sum(axis=2)
    assert knight[0] == 2 and knight[27] == 8  # a1, d4
    assert bishop[27] == 13 and rook[0] == 14 and king[0] == 3
    assert (queen == rook + bishop).all()


def test_a_planted_knight_head_is_found_and_a_uniform_head_is_not() -> None:
    masks = torch.as_tensor(piece_move_masks(), dtype=torch.float32)
    knight = masks[0] / masks[0].sum(dim=1, keepdim=True)  # all mass on knight moves
    rook = masks[2] / masks[2].sum(dim=1, keepdim=True)
    uniform = torch.full((64, 64), 1 / 64)
    patterns = torch.stack([knight, rook, uniform])[None].repeat(2, 1, 1, 1)  # (2, 3, 64, 64)
    mass = move_mass(patterns)
    torch.testing.assert_close(mass[0, 0], torch.tensor(1.0))
    scores = piece_movement_scores(mass.numpy()[None])  # (1 layer, 3 heads, 5)
    np.testing.assert_allclose(scores[0, 2], 0.0, atol=1e-6)  # uniform = chance everywhere
    found = PieceMovementHeads(scores, threshold=0.2)
    assert [(layer, head) for layer, head, _ in found.heads("knight")] == [(0, 0)]
    assert [(layer, head) for layer, head, _ in found.heads("rook")] == [(0, 1)]
    assert all(not found.heads(piece) for piece in ("bishop", "queen", "king"))


def test_piece_movement_analysis_runs_end_to_end(network) -> None:
    puzzles = corrupted_puzzles(40, min_moves=5)
    found = piece_movement_heads(network, [p.clean_board for p in puzzles], threshold=-1.0)
    assert set(found.to_json()) == set(PIECE_TYPES)
    assert sum(len(found.heads(piece)) for piece in PIECE_TYPES) == 12  # every head, once
    result = piece_movement_ablation(network, puzzles, found)
    assert len(result.main) == len(result.piece_types) > 0
    assert set(result.piece_types) <= {"knight", "bishop", "rook"}


def test_percentile_intervals_cover_the_true_median() -> None:
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(200):
        _, lower, upper = percentile_curve(rng.normal(size=101), [50])
        covered += lower[0] <= 0.0 <= upper[0]
    assert 0.9 <= covered / 200 <= 0.995


def test_head_runs_check_the_dataset_and_the_output_first(network, tmp_path) -> None:
    from leelalab.patching.heads import run_head_patching, run_piece_movement
    from leelalab.puzzles.dataset import DatasetError, write_pairs_dataset
    from leelalab.runs.results import ResultsError

    write_pairs_dataset(tmp_path / "data", corrupted_puzzles(3, min_moves=5))
    (tmp_path / "data" / "corruptions.jsonl").unlink()
    with pytest.raises(DatasetError, match="run `leelalab puzzles corrupt"):
        run_head_patching(network, tmp_path / "data", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    # piece-movement refuses another run's directory before detecting heads.
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "settings.json").write_text('{"experiment": "other"}')
    with pytest.raises(ResultsError, match="other settings.*--overwrite"):
        run_piece_movement(network, tmp_path / "data", tmp_path / "out", progress=False)
    path, _ = run_piece_movement(
        network, tmp_path / "data", tmp_path / "out", progress=False, overwrite=True
    )
    assert path.is_file() and (tmp_path / "out" / "heads.json").is_file()
