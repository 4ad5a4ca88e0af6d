"""Positions to legal-move probabilities and W/D/L."""

from __future__ import annotations

import chess
import numpy as np
import pytest
import torch

from leelalab.errors import NonFiniteOutputError
from leelalab.inference.networks import load_network
from leelalab.lc0 import encoding, policy_map
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.models import build_network
from leelalab.models.evaluation import (
    check_finite,
    evaluate,
    iter_evaluate,
    legal_policy,
    run_network,
)
from leelalab.models.outputs import NetworkOutput
from positions import edge_case_boards, puzzle_line_boards


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("net") / "tiny.pb.gz"
    return load_network(save_weights(random_resnet_weights(seed=6, filters=16), path))


def test_policy_is_a_softmax_over_legal_moves_only(tiny) -> None:
    boards = edge_case_boards()
    results = evaluate(tiny, boards, batch_size=7)
    planes = encoding.encode_boards(boards, 1, "lc0")
    logits = run_network(tiny, planes).policy_logits.numpy()
    for board, result, row in zip(boards, results, logits, strict=True):
        legal = {move.uci() for move in board.legal_moves}
        assert set(result.policy) == legal
        if legal:
            assert sum(result.policy.values()) == pytest.approx(1.0, abs=1e-9)
            # Ratios of probabilities are exp(logit differences), whatever the illegal entries.
            best, p_best = next(iter(result.policy.items()))
            i_best = policy_map.move_to_index(board, best)
            for move, probability in result.policy.items():
                index = policy_map.move_to_index(board, move)
                assert np.log(p_best / probability) == pytest.approx(
                    row[i_best] - row[index], abs=1e-4
                )
        assert list(result.policy.values()) == sorted(result.policy.values(), reverse=True)
        assert sum(result.wdl) == pytest.approx(1.0, abs=1e-6)
        assert result.q == pytest.approx(result.wdl[0] - result.wdl[2])


def test_checkmate_gives_an_empty_policy(tiny) -> None:
    board = chess.Board("7k/6Q1/6K1/8/8/8/8/8 b - - 0 1")
    assert board.is_checkmate()
    result = evaluate(tiny, board)[0]
    assert result.policy == {}
    assert legal_policy(board, np.zeros(1858, np.float32)) == {}


def test_batch_size_does_not_change_results(tiny) -> None:
    boards = puzzle_line_boards(37, seed=3)
    a = evaluate(tiny, boards, batch_size=1)
    b = evaluate(tiny, boards, batch_size=16)
    for x, y in zip(a, b, strict=True):
        assert x.policy.keys() == y.policy.keys()
        assert max((abs(x.policy[m] - y.policy[m]) for m in x.policy), default=0) < 1e-6
        assert np.allclose(x.wdl, y.wdl, atol=1e-6)


def test_history_modes_differ_where_they_should(tiny) -> None:
    board = chess.Board()
    for uci in ("e2e4", "e7e5", "g1f3", "b8c6"):
        board.push_uci(uci)
    lc0, none, repeat = (evaluate(tiny, board, history=h)[0] for h in ("lc0", "none", "repeat"))
    assert lc0.policy != none.policy and lc0.policy != repeat.policy


def test_hooks_still_run_inside_evaluate(tiny) -> None:
    seen: list[int] = []
    with tiny.hooks([("blocks.0.hook_resid_post", lambda t, *, hook: seen.append(t.shape[0]))]):
        evaluate(tiny, [chess.Board()] * 3, compile=True)
    assert seen == [3]


@pytest.mark.slow
def test_compiled_evaluation_matches_eager() -> None:
    network = build_network(random_resnet_weights(seed=9, filters=16))
    boards = puzzle_line_boards(20, seed=5)
    eager = evaluate(network, boards, batch_size=8)
    compiled = evaluate(network, boards, batch_size=8, compile=True)  # last batch padded
    for x, y in zip(eager, compiled, strict=True):
        assert max((abs(x.policy[m] - y.policy[m]) for m in x.policy), default=0) < 1e-5
        assert np.allclose(x.wdl, y.wdl, atol=1e-5)
    torch._dynamo.reset()


def _overflowing_network(source: str | None):
    # Finite weights whose products overflow: what a corrupt (but finite) LINEAR16 range of
    # +-1e30 does to a real file.
    network = build_network(random_resnet_weights(seed=6, filters=16)).eval()
    with torch.no_grad():
        network.value_head.fc1.weight.mul_(1e30)
        network.value_head.fc2.weight.mul_(1e30)
    network.source = source
    return network


def test_non_finite_outputs_are_an_error_naming_the_network() -> None:
    network = _overflowing_network("nets/absurd.pb.gz")
    boards = [chess.Board(), chess.Board("8/8/8/4k3/8/8/8/4K2R w K - 0 1")]
    message = r"^nets/absurd\.pb\.gz: the network's outputs are NaN or infinite for 2 of 2"
    with pytest.raises(NonFiniteOutputError, match=message):
        evaluate(network, boards)
    with pytest.raises(NonFiniteOutputError, match=message):
        next(iter_evaluate(network, boards))
    planes = encoding.encode_boards(boards, 1, "lc0")
    with pytest.raises(NonFiniteOutputError, match=message):
        run_network(network, planes)
    with pytest.raises(NonFiniteOutputError, match=r"^the ResNet: "):
        run_network(_overflowing_network(None), planes)


def test_the_guard_checks_every_output(tiny) -> None:
    planes = torch.as_tensor(encoding.encode_boards([chess.Board()], 1, "lc0"))
    output = run_network(tiny, planes)
    assert output.moves_left is not None
    for field in NetworkOutput._fields:
        values = getattr(output, field).clone()
        values.view(-1)[0] = float("nan")
        with pytest.raises(NonFiniteOutputError, match="for 1 of 1"):
            check_finite(tiny, output._replace(**{field: values}))
    check_finite(tiny, output)


@pytest.mark.parametrize("background", [True, False])
def test_iter_evaluate_is_in_order_and_raises_input_errors_in_place(
    tiny, background: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With or without the preparation thread: same evaluations, and an error while reading
    the boards comes after the evaluations of the boards before it."""
    from leelalab.models import evaluation as module

    monkeypatch.setattr(module, "_core_left_for_preparation", lambda device: background)
    boards = puzzle_line_boards(7)

    def reader():
        yield from boards
        raise ValueError("line 8 is bad")

    seen = []
    with pytest.raises(ValueError, match="line 8 is bad"):
        for evaluation in iter_evaluate(tiny, reader(), batch_size=3):
            seen.append(evaluation)
    expected = evaluate(tiny, boards, batch_size=3)
    assert len(seen) == 6  # the third batch never ran: its reading failed
    assert [e.policy for e in seen] == [e.policy for e in expected[:6]]
    assert [e.wdl for e in seen] == [e.wdl for e in expected[:6]]
