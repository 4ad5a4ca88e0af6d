"""corrupt_dataset(ids=...): corruptions for puzzles the filter did not select (a stratum),
extending corruptions.jsonl and resuming."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from leelalab.errors import LeelaLabError
from leelalab.inference.networks import load_network
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.puzzles.corruptions import CorruptionThresholds, find_corruption
from leelalab.puzzles.filter import corrupt_dataset, filter_puzzles
from leelalab.puzzles.reader import Puzzle, shipped_puzzles_path

# Accept every candidate, so that random networks give every puzzle a corruption.
ANYTHING = CorruptionThresholds(
    weak_log_odds_change=math.inf, strong_q_drop=-math.inf, strong_max_prob=2.0, max_jsd=math.inf
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    strong = load_network(
        save_weights(random_resnet_weights(blocks=1, filters=8, seed=1), folder / "s.pb.gz")
    )
    weak = load_network(
        save_weights(random_resnet_weights(blocks=1, filters=8, seed=2), folder / "w.pb.gz")
    )
    filter_puzzles(strong, weak, shipped_puzzles_path(), folder / "data", limit=8, progress=False)
    return folder / "data", strong, weak


def _entries(directory: Path) -> dict:
    lines = (directory / "corruptions.jsonl").read_text().splitlines()
    return {json.loads(line)["id"]: json.loads(line)["corruption"] for line in lines}


def test_ids_extend_the_file_and_resume(run, monkeypatch) -> None:
    directory, strong, weak = run
    records = [json.loads(line) for line in (directory / "dataset.jsonl").open()]
    ids = [r["id"] for r in records]
    (directory / "corruptions.jsonl").write_text(
        json.dumps({"id": "other", "corruption": None}) + "\n"
    )
    counts = corrupt_dataset(directory, strong, weak, ANYTHING, ids=ids[:3], progress=False)
    assert counts == {"selected": 3, "corrupted": 3, "computed": 3}
    entries = _entries(directory)
    assert set(entries) == {"other", *ids[:3]}
    # The same corruption as the search itself finds for that puzzle.
    first = records[0]
    puzzle = Puzzle(first["id"], first["fen"], tuple(first["moves"]), first["rating"])
    assert entries[first["id"]] == find_corruption(puzzle, strong, weak, ANYTHING).to_json()
    # A larger request computes only the new puzzles.
    import leelalab.puzzles.corruptions as corruptions

    calls = []
    original = corruptions.find_corruption
    monkeypatch.setattr(
        corruptions,
        "find_corruption",
        lambda p, *a, **k: calls.append(p.id) or original(p, *a, **k),
    )
    counts = corrupt_dataset(directory, strong, weak, ANYTHING, ids=ids[:5], progress=False)
    assert counts["computed"] == 2 and calls == ids[3:5]
    assert set(_entries(directory)) == {"other", *ids[:5]}
    run_json = json.loads((directory / "run.json").read_text())
    assert run_json["corruption_subsets"][-1]["counts"]["selected"] == 5


def test_unknown_ids_are_an_error(run) -> None:
    directory, strong, weak = run
    with pytest.raises(LeelaLabError, match="no puzzle with id 'nope'"):
        corrupt_dataset(directory, strong, weak, ANYTHING, ids=["nope"], progress=False)
