"""Steering: the probe direction is the gradient it claims to be, the optimised vector makes
the probe read s′, a zero vector changes nothing, "consistent" moves follow the definition,
and a whole run on a synthetic network and a planted probe writes sensible results."""

from __future__ import annotations

import json

import chess
import pytest
import torch
from safetensors.torch import save_file

from leelalab.analyses import steering
from leelalab.analyses.steering import (
    SteeringConfig,
    SteeringError,
    consistent_moves,
    probe_direction,
    reachable_squares,
    run_steering,
    steering_vectors,
    summarize_steering,
)
from leelalab.lc0 import encoding
from leelalab.lc0.weights.synthetic import random_resnet_weights, random_transformer_weights
from leelalab.models import build_network
from leelalab.probing.lens import residual_width
from leelalab.probing.probes import BilinearProbe, ProbeConfig
from leelalab.puzzles.dataset import DatasetPuzzle, write_pairs_dataset
from leelalab.puzzles.reader import iter_puzzles, shipped_puzzles_path


@pytest.mark.parametrize("target", [40, 5])
def test_probe_direction_is_the_gradient_of_the_probes_log_p(target) -> None:
    """Through the query and the key of the query square (target 5 = the query square)."""
    torch.manual_seed(0)
    probe = BilinearProbe(12, rank=4)
    residual = torch.randn(64, 12)
    query = 5
    x_q = residual[query].clone().requires_grad_(True)
    steered = torch.cat([residual[:query], x_q[None], residual[query + 1 :]])
    log_p = torch.log_softmax(probe(steered[None], torch.tensor([query]))[0], 0)[target]
    (expected,) = torch.autograd.grad(log_p, x_q)
    torch.testing.assert_close(probe_direction(probe, residual, query, target), expected)


def test_steering_vectors_have_the_norm_and_beat_the_gradient_step() -> None:
    torch.manual_seed(1)
    probe = BilinearProbe(16, rank=8)
    residual = torch.randn(64, 16)
    targets = list(range(64))
    vectors = steering_vectors(probe, residual, 9, targets, [16.0] * 64)
    assert (vectors.norm(dim=1) <= 16.0 + 1e-4).all()
    assert (vectors.norm(dim=1) > 15.9).float().mean() > 0.9  # mostly on the sphere

    def read(vector: torch.Tensor, target: int) -> tuple[float, bool]:
        steered = residual.clone()
        steered[9] += vector
        logits = probe(steered[None], torch.tensor([9]))[0]
        log_p = torch.log_softmax(logits, 0)[target]
        return float(log_p.detach()), int(logits.argmax()) == target

    hits, better = 0, 0
    for target, vector in zip(targets, vectors, strict=True):
        gradient = probe_direction(probe, residual, 9, target)
        log_p, hit = read(vector, target)
        log_p_gradient, _ = read(16.0 * gradient / gradient.norm(), target)
        hits += hit
        better += log_p >= log_p_gradient - 1e-4
    assert better == 64  # never worse than the plain gradient step of the same length
    assert hits > 32  # most targets can be made the probe's prediction (chance: 1)
    assert not steering_vectors(probe, residual, 9, [3], [0.0]).any()


def test_consistent_moves_follow_the_moved_piece() -> None:
    board = chess.Board("4k3/8/8/8/8/8/8/R3K2N w - - 0 1")
    moves = {m.uci() for m in consistent_moves(board, chess.A8)}
    # The rook can go to a8 from anywhere on the a-file it moves to, or from the 8th rank.
    assert "a1a5" in moves and "a1a7" in moves and "a1b1" not in moves
    assert "a1a8" not in moves  # from a8 itself it cannot move to a8
    # h5: the knight via g3, or the rook along the 5th rank after a1a5.
    assert {m.uci() for m in consistent_moves(board, chess.H5)} == {"h1g3", "a1a5"}
    pawn = chess.Board("4k3/8/8/8/8/8/4P3/4K3 w - - 0 1")
    assert {m.uci() for m in consistent_moves(pawn, chess.E5)} == {"e2e4"}  # then e4-e5
    reach = reachable_squares(board)
    assert set(reach) == set(board.legal_moves)


def _network(kind: str):
    if kind == "resnet":
        return build_network(random_resnet_weights(blocks=3, filters=8, seed=5)).eval()
    return build_network(random_transformer_weights(layers=3, d_model=16, heads=2, seed=6)).eval()


@pytest.mark.parametrize("kind", ["resnet", "transformer"])
def test_zero_vector_changes_nothing(kind) -> None:
    network = _network(kind)
    boards = [p.board(plies=1) for p in iter_puzzles(shipped_puzzles_path(), limit=6)]
    planes = torch.from_numpy(encoding.encode_boards(boards, 1))
    with torch.no_grad():
        clean = network(planes)
        for layer in range(network.n_layers):
            _, cache = network.run_with_cache(
                planes, names_filter=[network.residual_hook_name(layer)]
            )
            residual = cache[network.residual_hook_name(layer)].clone()
            residual[:, 7] += 0.0 * torch.ones(residual.shape[-1])
            steered = network.run_from(layer, residual)
            assert torch.equal(steered.policy_logits, clean.policy_logits)
            assert torch.equal(steered.wdl, clean.wdl)


def _probe_directory(tmp_path, network, puzzles, layers):
    """Saved bilinear probes (random weights) with the records steering reads."""
    directory = tmp_path / "probes"
    directory.mkdir()
    config = ProbeConfig(seeds=[0], rank=4)
    (directory / "config.json").write_text(json.dumps(config.__dict__))
    store_settings = {"selected_only": False, "min_moves": 1, "limit": None}
    store_settings["puzzles"] = len(puzzles)
    (directory / "run.json").write_text(json.dumps({"store_settings": store_settings}))
    width = residual_width(network)
    torch.manual_seed(3)
    for layer in layers:
        probe = BilinearProbe(width, rank=4)
        tensors = {k: v.detach().contiguous() for k, v in probe.state_dict().items()}
        save_file(tensors, str(directory / f"blocks.{layer}.hook_resid_post.safetensors"))
    return directory


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    directory = tmp_path_factory.mktemp("steer-data")
    puzzles = [
        DatasetPuzzle(p, {}, None)
        for p in iter_puzzles(shipped_puzzles_path(), limit=40)
        if len(p.moves) >= 4
    ]
    write_pairs_dataset(directory, puzzles)
    return directory, puzzles


@pytest.mark.parametrize("kind", ["resnet", "transformer"])
def test_steering_run_on_a_synthetic_network(kind, dataset, tmp_path) -> None:
    directory, puzzles = dataset
    network = _network(kind)
    probes = _probe_directory(tmp_path, network, puzzles, [0, 2])
    config = SteeringConfig(scales=[0.0, 3.0], targets_per_puzzle=2, random_directions=2, limit=6)
    path = run_steering(network, directory, probes, tmp_path / "out", config, progress=False)
    summary = summarize_steering(path)
    rows = {(r["layer"], r["scale"]): r for r in summary["rows"]}
    assert set(rows) == {(0, 0.0), (0, 3.0), (2, 0.0), (2, 3.0)}
    for layer in (0, 2):
        zero = rows[layer, 0.0]
        # A zero vector: nothing moves, so nothing succeeds (the top move is never consistent).
        assert zero["probe_changed"]["value"] == 0 and zero["random_changed"]["value"] == 0
        assert zero["probe_success"]["value"] == 0
        # (Equal up to float rounding between batch compositions.)
        assert abs(zero["probe_mass_change"]["value"]) < 1e-6
        assert abs(zero["random_mass_change"]["value"]) < 1e-6
        # (How often the probe reads s′ depends on the keys; see steering_vectors' test.)
        hit = rows[layer, 3.0]["probe_predicts_target"]["value"]
        assert hit >= rows[layer, 0.0]["probe_predicts_target"]["value"]
    held = steering.held_out_puzzles(directory, probes, ProbeConfig(seeds=[0]))
    assert summary["puzzles"] <= 6 and len(held) >= 6
    assert all(p.n_moves >= 3 for p in held)
    assert (tmp_path / "out" / "run.json").is_file()


def test_steering_refuses_other_probes(dataset, tmp_path) -> None:
    directory, puzzles = dataset
    network = _network("resnet")
    probes = _probe_directory(tmp_path, network, puzzles, [0])
    (probes / "config.json").write_text(
        json.dumps(ProbeConfig(probe="linear", query=None).__dict__)
    )
    with pytest.raises(SteeringError, match="bilinear"):
        run_steering(network, directory, probes, tmp_path / "out", progress=False)
    with pytest.raises(SteeringError, match="no saved"):
        run_steering(network, directory, tmp_path, tmp_path / "out2", progress=False)
