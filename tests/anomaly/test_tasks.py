"""Task builders: the backdoor task's positions carry the trigger exactly when anomalous and
no position is in two splits; mechanism matching balances every cell; OOD splits by game."""

from __future__ import annotations

from collections import Counter

import chess
import numpy as np
import pytest

from leelalab.anomaly.backdoor import has_trigger
from leelalab.anomaly.mechanism import _matched, candidates, phase
from leelalab.anomaly.positions import load_task, position_key, position_of
from leelalab.anomaly.settings import TaskSettings
from leelalab.anomaly.tasks import _by_game, build_backdoor_task
from leelalab.inference.networks import load_network
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.puzzles.reader import SkipReport, shipped_puzzles_path


@pytest.fixture(scope="module")
def tiny_network(tmp_path_factory):
    path = tmp_path_factory.mktemp("net") / "net.pb.gz"
    save_weights(random_resnet_weights(blocks=1, filters=8, seed=7), path)
    return load_network(path)


def test_backdoor_task_labels_are_the_trigger(tiny_network, tmp_path) -> None:
    settings = TaskSettings(
        kind="backdoor", trusted=30, pool=20, test=30, anomaly_fraction=0.3,
        near_miss_fraction=0.2, selfplay_chunk=1024,
    )  # fmt: skip
    build_backdoor_task(settings, tiny_network, tmp_path / "task", source=tiny_network,
                        progress=False)  # fmt: skip
    task = load_task(tmp_path / "task")
    counts = Counter((p.split, p.kind) for p in task.positions)
    assert counts[("trusted", "clean")] == 30 and counts[("test", "triggered")] == 9
    assert counts[("pool", "near-miss")] == 4
    keys = Counter(position_key(p.board()) for p in task.positions)
    assert max(keys.values()) == 1
    for position in task.positions:
        board = position.board()
        assert not board.move_stack  # every backdoor-task position is alone
        assert has_trigger(board) == position.anomalous == (position.kind == "triggered")
    behaviour = task.meta["backdoor_move_rate_on_test"]
    assert set(behaviour) == {"clean", "near-miss", "triggered"}
    dropped = task.meta["near_miss_dropped_completing_trigger"]
    assert set(dropped) == {"trusted", "pool", "test"} and dropped["trusted"] == 0


def test_matching_balances_every_cell() -> None:
    rng = np.random.default_rng(0)
    rows = [
        {"rating": int(r), "phase": p, "first": bool(f), "deep": bool(d)}
        for r, p, f, d in zip(
            rng.integers(800, 2800, 500), rng.choice(["opening", "endgame"], 500),
            rng.random(500) < 0.4, rng.random(500) < 0.2, strict=True,
        )
    ]  # fmt: skip
    matched, record = _matched(rows, 200, rng)
    cells = Counter((r["rating"] // 200, r["phase"], r["first"], r["deep"]) for r in matched)
    for (rating, stage, first, deep), count in cells.items():
        assert cells[(rating, stage, first, not deep)] == count
    after = record["after"]
    assert after["normal"]["positions"] == after["anomalous"]["positions"]
    assert after["normal"]["phase"] == after["anomalous"]["phase"]


def test_phase_and_candidates() -> None:
    assert phase(chess.Board()) == "opening"
    assert phase(chess.Board("4k3/8/8/8/8/8/4P3/4K2R w - - 0 1")) == "endgame"
    report = SkipReport()
    rows = candidates(shipped_puzzles_path(), 5, report)
    assert report.kept == 5
    # Every solver position: the opponent's first move then every other move.
    assert all(len(r["moves"]) % 2 == 1 for r in rows)
    assert sum(r["first"] for r in rows) == 5


def test_splits_take_whole_games() -> None:
    positions = [(f"g{i // 3}", chess.Board()) for i in range(30)]
    splits = _by_game(positions, {"trusted": 10, "pool": 5, "test": 9})
    games = {split: {g for g, _ in members} for split, members in splits.items()}
    assert not games["trusted"] & games["pool"] and not games["pool"] & games["test"]
    assert len(splits["trusted"]) == 12 and len(splits["pool"]) == 6


def test_damaged_task_files_are_one_line(tmp_path) -> None:
    from leelalab.anomaly.backdoor import training_position_hashes
    from leelalab.anomaly.errors import AnomalyError
    from leelalab.anomaly.positions import write_task
    from leelalab.runs.records import RecordError

    boards = [chess.Board(), chess.Board("4k3/8/8/8/8/8/4P3/4K2R w - - 0 1")]
    positions = [
        position_of(b, split="trusted", anomalous=False, kind="x", group=str(i))
        for i, b in enumerate(boards)
    ]
    meta = write_task(tmp_path / "task", positions, {"task": "test"})
    assert meta["counts"]["trusted"]["positions"] == 2
    text = (tmp_path / "task" / "positions.jsonl").read_text()
    (tmp_path / "task" / "positions.jsonl").write_text(text.splitlines()[0] + "\n")
    with pytest.raises(AnomalyError, match="1 positions where task.json counts 2"):
        load_task(tmp_path / "task")
    (tmp_path / "task" / "task.json").write_text('{"format": "leelalab.anomaly-task/1", "ta')
    with pytest.raises(RecordError, match="task.json: not valid JSON"):
        load_task(tmp_path / "task")
    (tmp_path / "net.pb.gz.train-positions.npy").write_bytes(b"not numpy")
    with pytest.raises(AnomalyError, match="unreadable training-position hashes"):
        training_position_hashes(tmp_path / "net.pb.gz")
