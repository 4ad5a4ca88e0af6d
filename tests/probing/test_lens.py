"""Logit and tuned lens: exact at the last layer, identity-initialised tuned lens equals the
logit lens, the lens at layer ℓ equals a network cut after ℓ, training helps held out,
files round-trip, and an interrupted fit resumes to the same lens."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from leelalab.errors import LeelaLabError
from leelalab.lc0 import encoding
from leelalab.lc0.weights.synthetic import random_resnet_weights, random_transformer_weights
from leelalab.models import build_network
from leelalab.probing import lens as lens_module
from leelalab.probing.lens import (
    LensError,
    TunedLens,
    TunedLensConfig,
    evaluate_lens,
    fit_tuned_lens,
    held_out_split,
    lens_outputs,
    load_tuned_lens,
    residual_width,
)
from leelalab.training.distill import self_play_game_ids, self_play_positions
from positions import puzzle_line_boards


def _resnet():
    return build_network(random_resnet_weights(blocks=3, filters=8, seed=11)).eval()


def _transformer():
    return build_network(random_transformer_weights(layers=3, seed=12)).eval()


@pytest.fixture(scope="module", params=["resnet", "transformer"])
def network(request):
    return _resnet() if request.param == "resnet" else _transformer()


@pytest.fixture(scope="module")
def boards():
    return puzzle_line_boards(24, seed=3)


def _planes(network, boards) -> torch.Tensor:
    return torch.from_numpy(encoding.encode_boards(boards, int(network.network_format.input)))


def test_lens_at_the_last_layer_is_the_network_output(network, boards) -> None:
    planes = _planes(network, boards)
    out = lens_outputs(network, planes)
    assert out.layers == list(range(-1, network.n_layers))
    with torch.no_grad():
        plain = network(planes)
    # Bit for bit against the same (hooked) forward pass and against a plain forward.
    assert torch.equal(out.policy_logits[-1], out.final.policy_logits)
    assert torch.equal(out.wdl[-1], out.final.wdl)
    torch.testing.assert_close(out.policy_logits[-1], plain.policy_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.wdl[-1], plain.wdl, rtol=1e-5, atol=1e-6)
    # Earlier layers do read something else.
    assert not torch.allclose(out.policy_logits[0], out.final.policy_logits)


def test_identity_tuned_lens_equals_logit_lens(network, boards) -> None:
    planes = _planes(network, boards)
    logit = lens_outputs(network, planes)
    tuned = lens_outputs(
        network, planes, tuned=TunedLens(residual_width(network), network.n_layers)
    )
    # Identity translators still run their own matmuls: equal up to float32 rounding, which
    # differs between CPU kernels (1.2e-7 on a wdl of 0.5 with AVX-512), hence rtol.
    torch.testing.assert_close(tuned.policy_logits, logit.policy_logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tuned.wdl, logit.wdl, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", [0, 1])
def test_logit_lens_equals_a_network_cut_after_the_layer(network, boards, layer) -> None:
    """Heads applied to the stream after block ℓ = the network with blocks ℓ+1… removed."""
    planes = _planes(network, boards)
    out = lens_outputs(network, planes, layers=[layer])
    cut = copy.deepcopy(network)
    cut.blocks = cut.blocks[: layer + 1]
    cut.setup_hooks()
    with torch.no_grad():
        expected = cut(planes)
    torch.testing.assert_close(out.policy_logits[0], expected.policy_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.wdl[0], expected.wdl, rtol=1e-5, atol=1e-6)


def test_residual_width_is_the_stream_width() -> None:
    assert residual_width(_resnet()) == 8
    assert residual_width(_transformer()) == 32


def _encoded(network, count: int, seed: int):
    boards = puzzle_line_boards(count, seed=seed)
    planes, masks = lens_module._encoded(network, boards)
    return planes, masks


def test_tuned_lens_training_lowers_held_out_kl_and_keeps_the_last_layer(network) -> None:
    torch.manual_seed(0)
    train_planes, train_masks = _encoded(network, 256, seed=1)
    held_planes, held_masks = _encoded(network, 96, seed=2)
    config = TunedLensConfig(epochs=6, batch_size=32, learning_rate=3e-3)
    lens, losses = lens_module.train_tuned_lens(
        network, train_planes, train_masks, config, progress=False
    )
    assert losses[-1] < losses[0]
    before = evaluate_lens(network, held_planes, held_masks, None)
    after = evaluate_lens(network, held_planes, held_masks, lens)
    assert before["policy_kl"][-1] == after["policy_kl"][-1] == 0.0
    # Held-out KL (policy + W/D/L) summed over the translated layers goes down.
    total_before = sum(before["policy_kl"][:-1]) + sum(before["wdl_kl"][:-1])
    total_after = sum(after["policy_kl"][:-1]) + sum(after["wdl_kl"][:-1])
    assert total_after < 0.9 * total_before
    # The network itself was not trained.
    assert all(p.requires_grad for p in network.parameters())


def test_kl_helpers_against_direct_formulas() -> None:
    logits = torch.tensor([[1.0, 2.0, 0.0, 5.0]])
    target = torch.tensor([[0.0, 1.0, 3.0, -2.0]])
    mask = torch.tensor([[True, True, True, False]])
    p = torch.softmax(target[0, :3], 0)
    q = torch.softmax(logits[0, :3], 0)
    expected = float((p * (p / q).log()).sum())
    assert float(lens_module.policy_kl(target, logits, mask)[0]) == pytest.approx(expected)
    wdl_p = torch.tensor([[0.5, 0.0, 0.5]])
    wdl_q = torch.tensor([[0.25, 0.25, 0.5]])
    assert float(lens_module.wdl_kl(wdl_p, wdl_q)[0]) == pytest.approx(0.5 * np.log(2))


def test_fit_saves_loads_and_resumes_to_the_same_lens(tmp_path, monkeypatch) -> None:
    network = _resnet()
    network.sha256 = "a" * 64
    config = TunedLensConfig(positions=96, epochs=2, batch_size=32, games_in_parallel=16)
    report = fit_tuned_lens(network, tmp_path / "whole", config, progress=False)
    dropped = report["held_out_dropped_as_in_training"]
    assert report["train_positions"] + report["held_out_positions"] + dropped == 96
    assert report["train_games"] + report["held_out_games"] <= 16  # one game per slot here
    whole, record = load_tuned_lens(tmp_path / "whole", network)
    assert record["report"]["held_out"]["tuned_lens"]["policy_kl"][-1] == 0.0
    assert (tmp_path / "whole" / "run.json").is_file()

    # Interrupt after the first epoch's checkpoint, then resume.
    real_checkpoint = lens_module._checkpoint

    def stop_after_first(directory, epoch, lens, optimizer, loss):
        real_checkpoint(directory, epoch, lens, optimizer, loss)
        raise KeyboardInterrupt

    monkeypatch.setattr(lens_module, "_checkpoint", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        fit_tuned_lens(network, tmp_path / "resumed", config, progress=False)
    monkeypatch.setattr(lens_module, "_checkpoint", real_checkpoint)
    fit_tuned_lens(network, tmp_path / "resumed", config, progress=False)
    resumed, _ = load_tuned_lens(tmp_path / "resumed", network)
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)

    with pytest.raises(LeelaLabError, match="other settings"):
        fit_tuned_lens(network, tmp_path / "whole", TunedLensConfig(positions=50), progress=False)
    other = _resnet()
    other.sha256 = "b" * 64
    with pytest.raises(LensError, match="another network"):
        load_tuned_lens(tmp_path / "whole", other)
    with pytest.raises(LensError, match="layers"):
        load_tuned_lens(
            tmp_path / "whole", build_network(random_transformer_weights(layers=2, seed=1))
        )
    (tmp_path / "whole" / "lens.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(LensError, match="not a leelalab tuned lens"):
        load_tuned_lens(tmp_path / "whole")
    with pytest.raises(LensError, match="no tuned lens"):
        load_tuned_lens(tmp_path / "nothing")


def test_logit_lens_is_exact_on_maia_1900(maia_path, boards) -> None:
    from leelalab.inference.networks import load_network

    network = load_network(maia_path)
    planes = _planes(network, boards)
    out = lens_outputs(network, planes)
    with torch.no_grad():
        plain = network(planes)
    assert torch.equal(out.policy_logits[-1], out.final.policy_logits)
    torch.testing.assert_close(out.policy_logits[-1], plain.policy_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.wdl[-1], plain.wdl, rtol=1e-5, atol=1e-6)


def test_held_out_split_shares_no_game_and_no_position_with_training() -> None:
    """Self-play restarts games in their slots (short games here), every game begins at the
    start position and openings repeat: the split by game must still keep every game and
    every position (pieces, side, castling, en passant) on one side only."""
    network = _resnet()
    boards = self_play_positions(
        network, 600, games_in_parallel=8, max_plies=24, seed=5, progress=False
    )
    games = self_play_game_ids(boards, 8)
    assert len(np.unique(games)) > 8  # slots did start new games
    # The ids, checked by the moves themselves: a game's next position is its previous one
    # plus one move.
    last: dict[int, int] = {}
    for k, game in enumerate(games.tolist()):
        if game in last:
            before = boards[k].copy()
            before.pop()
            assert before.fen() == boards[last[game]].fen()
        else:
            assert boards[k].ply() == 0
        last[game] = k
    assert sum(board.ply() == 0 for board in boards) == len(np.unique(games))

    train, held, dropped = held_out_split(boards, games, 0.2, seed=0)
    assert held.size > 0 and train.size > 0
    assert train.size + held.size + dropped == len(boards)
    assert set(games[train].tolist()).isdisjoint(games[held].tolist())
    assert {boards[i].epd() for i in train}.isdisjoint(boards[i].epd() for i in held)
    assert dropped >= len(np.unique(games[held]))  # at least each held game's start position
    # The same seed, the same split.
    again = held_out_split(boards, games, 0.2, seed=0)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], held)


def test_game_ids_refuse_positions_out_of_self_play_order() -> None:
    boards = self_play_positions(_resnet(), 32, games_in_parallel=4, seed=1, progress=False)
    with pytest.raises(ValueError, match="does not continue"):
        self_play_game_ids(boards[::-1], 4)


def test_fit_refuses_a_split_with_nothing_held_out(tmp_path) -> None:
    # 16 games of one position each: all the start position, so nothing can be held out.
    config = TunedLensConfig(positions=16, games_in_parallel=16, epochs=1)
    with pytest.raises(LensError, match="too few for a held-out split by game"):
        fit_tuned_lens(_resnet(), tmp_path / "lens", config, progress=False)
