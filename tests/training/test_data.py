"""Self-play data: games from the start position, consistent targets, an exact resume."""

from __future__ import annotations

import chess
import numpy as np
import pytest
import torch

from leelalab.lc0 import policy_map
from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.models import build_network
from leelalab.models.evaluation import evaluate
from leelalab.training.data import (
    ReplayBuffer,
    SelfPlay,
    SelfPlaySettings,
    make_batch,
    positions_from_arrays,
    positions_to_arrays,
)

SETTINGS = SelfPlaySettings(games_in_parallel=6, max_plies=24, random_plies=2, sample_rate=0.7)


@pytest.fixture(scope="module")
def teacher():
    return build_network(random_resnet_weights(seed=7, filters=8, moves_left=False))


def test_positions_come_from_games_of_the_start_position(teacher) -> None:
    positions = SelfPlay(teacher, SETTINGS, seed=1).generate(60)
    assert len(positions) == 60
    for position in positions:
        board = position.board
        # Seven plies of history at most; replaying from the root reaches the position.
        assert len(board.move_stack) <= 7
        assert board.ply() == position.ply < SETTINGS.max_plies
        if position.ply <= 7:
            assert board.root().board_fen() == chess.STARTING_BOARD_FEN
        # Moves-left: the game really lasted that long (or was cut: NaN).
        ml = position.moves_left
        assert np.isnan(ml) or (1 <= ml <= SETTINGS.max_plies - position.ply)


def test_targets_are_the_teachers_legal_move_distribution(teacher) -> None:
    positions = SelfPlay(teacher, SETTINGS, seed=2).generate(12)
    evaluations = evaluate(teacher, [p.board for p in positions])
    for position, evaluation in zip(positions, evaluations, strict=True):
        moves = [policy_map.index_to_move(position.board, int(i)).uci() for i in position.indices]
        assert sorted(moves) == sorted(evaluation.policy)
        for move, probability in zip(moves, position.probabilities, strict=True):
            assert probability == pytest.approx(evaluation.policy[move], rel=1e-5, abs=1e-6)
        assert np.allclose(position.wdl, evaluation.wdl, atol=1e-6)
        assert position.probabilities.sum() == pytest.approx(1.0, abs=1e-5)


def test_a_resumed_stream_continues_exactly(teacher) -> None:
    straight = SelfPlay(teacher, SETTINGS, seed=3)
    straight.generate(20)
    arrays, record = straight.state()
    resumed = SelfPlay(teacher, SETTINGS, seed=99)  # the state replaces the seed
    resumed.load_state(arrays, record)
    a, b = straight.generate(40), resumed.generate(40)
    assert [p.board.fen() for p in a] == [p.board.fen() for p in b]
    assert [p.board.move_stack for p in a] == [p.board.move_stack for p in b]
    assert all(np.array_equal(x.probabilities, y.probabilities) for x, y in zip(a, b, strict=True))


def test_records_round_trip_and_the_buffer_is_bounded(teacher) -> None:
    positions = SelfPlay(teacher, SETTINGS, seed=4).generate(30)
    arrays, boards = positions_to_arrays(positions)
    again = positions_from_arrays(arrays, boards)
    assert [p.board.fen() for p in again] == [p.board.fen() for p in positions]
    batch, batch_again = make_batch(positions, 1), make_batch(again, 1)
    assert torch.equal(batch.planes, batch_again.planes)
    assert torch.equal(batch.policy, batch_again.policy)
    assert bool((batch.policy[~batch.legal] == 0).all())
    assert batch.legal.sum(1).tolist() == [len(p.indices) for p in positions]
    buffer = ReplayBuffer(16)
    buffer.add(positions)
    assert len(buffer) == 16
    assert buffer.positions[:14] == positions[16:30] and buffer.positions[14:] == positions[14:16]
    drawn = list(buffer.batches(3, 8, torch.Generator().manual_seed(0)))
    assert [len(b) for b in drawn] == [8, 8, 8]
    assert len({id(p) for p in drawn[0] + drawn[1]}) == 16  # without replacement


def test_sample_rate_thins_positions(teacher) -> None:
    def kept(rate: float) -> int:
        stream = SelfPlay(
            teacher, SelfPlaySettings(games_in_parallel=8, max_plies=20, sample_rate=rate), seed=5
        )
        for _ in range(40):
            stream.step()
        return (
            len(stream.generate(0))
            + len(stream._ready)
            + sum(len(game.pending) for game in stream.games)
        )

    assert kept(1.0) == 8 * 40  # every evaluated position
    assert 0.15 * 320 < kept(0.25) < 0.35 * 320
