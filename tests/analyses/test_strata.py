from __future__ import annotations

import json

import pytest

from leelalab.analyses.strata import iter_stratum, strata_ids, strata_of
from leelalab.errors import LeelaLabError

FLAGS_OK = {"not_mate_in_1": True, "pv_length": True}


def record(pid: str, *, selected=False, strong="e2e4", weak="d2d4", flags=FLAGS_OK) -> dict:
    return {
        "id": pid,
        "fen": "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR b KQkq - 0 1",
        "moves": ["e7e5", "e2e4", "b8c6", "g1f3"],
        "strong_top_moves": [strong, "b8c6", "g1f3"],
        "weak_top_moves": [weak, "b8c6", "g1f3"],
        "filters": dict(flags),
        "selected": selected,
    }


def test_strata_follow_their_definitions() -> None:
    assert strata_of(record("a", selected=True)) == ("paper", "unfiltered")
    assert strata_of(record("b", weak="e2e4")) == ("unfiltered", "weak-solved")
    assert strata_of(record("c", strong="d2d4")) == ()
    mate_in_one = {"not_mate_in_1": False, "pv_length": True}
    assert strata_of(record("d", flags=mate_in_one)) == ()


def test_strata_from_a_dataset_directory(tmp_path) -> None:
    records = [record("a", selected=True), record("b", weak="e2e4"), record("c", strong="a2a3")]
    (tmp_path / "dataset.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert strata_ids(tmp_path) == {"paper": ["a"], "unfiltered": ["a", "b"], "weak-solved": ["b"]}
    assert [p.id for p in iter_stratum(tmp_path, "unfiltered", limit=1)] == ["a"]
    with pytest.raises(LeelaLabError, match="unknown stratum"):
        list(iter_stratum(tmp_path, "easy"))
