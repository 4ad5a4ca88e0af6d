"""The four predictions on hand-built filter records, checked against direct counts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from leelalab.analyses.predictions import (
    PuzzleTable,
    four_predictions,
    prediction_correlation,
    prediction_later_moves,
    prediction_strong_confidence,
    prediction_weak_probability,
    predictions_markdown,
)
from leelalab.stats import phi_coefficient

START = "6k1/5ppp/8/8/8/8/5PPP/1Q4K1 b - - 0 1"
LINE = ["h7h6", "b1b3", "g8h7", "b3f7"]
FLAGS = {"not_mate_in_1": True, "pv_length": True}


def record(
    pid: str,
    *,
    first: bool,
    later: bool,
    weak_first: bool = False,
    selected: bool = False,
    weak_p: float = 0.01,
    strong_p: tuple[float, float] = (0.9, 0.9),
) -> dict:
    return {
        "id": pid,
        "fen": START,
        "moves": LINE,
        "rating": 1500,
        "themes": ["fork"],
        "strong_top_moves": ["b1b3" if first else "b1b2", "g8h7", "b3f7" if later else "b3b7"],
        "weak_top_moves": ["b1b3" if weak_first else "b1b2", "g8h7", "b3b7"],
        "strong_pv_probs": [strong_p[0], 0.5, strong_p[1]],
        "weak_pv_probs": [weak_p, 0.9, 0.1],
        "strong_wdl": [[0.5, 0.3, 0.2]] * 3,
        "weak_wdl": [[0.4, 0.3, 0.3]] * 3,
        "filters": dict(FLAGS),
        "selected": selected,
    }


def _table(counts: dict[tuple[bool, bool], int]) -> PuzzleTable:
    records = []
    for (first, later), count in counts.items():
        for i in range(count):
            records.append(record(f"{first}{later}{i}", first=first, later=later))
    return PuzzleTable.from_records(records)


def test_later_move_errors_and_phi_equal_direct_counts() -> None:
    counts = {(True, True): 30, (True, False): 20, (False, True): 10, (False, False): 40}
    table = _table(counts)
    assert table.strata["unfiltered"].sum() == 50
    later = prediction_later_moves(table)
    assert later.values["unfiltered"].value == pytest.approx(20 / 50)
    assert later.verdict == "supported"  # Wilson lower end of 0.4 at n = 50 is above 0.1
    phi = prediction_correlation(table, seed=1)
    expected = phi_coefficient(np.array([[30, 20], [10, 40]]))
    assert phi.values["structural"].value == pytest.approx(expected)
    assert phi.comparison.value == pytest.approx(30 * 40 / (20 * 10))
    # φ ≈ 0.41, but at n = 100 its interval reaches below 0.3: undecided.
    assert phi.values["structural"].low < 0.3 < phi.values["structural"].high
    assert phi.verdict == "not supported"


def test_uncorrelated_correctness_supports_a_weak_correlation() -> None:
    table = _table({(True, True): 100, (True, False): 100, (False, True): 100, (False, False): 100})
    row = prediction_correlation(table)
    assert row.values["structural"].value == pytest.approx(0.0)
    assert row.verdict == "supported"


def test_weak_probability_and_confidence_rules() -> None:
    records = [record(f"p{i}", first=True, later=True, selected=True) for i in range(30)]
    records += [
        record(f"u{i}", first=True, later=True, weak_p=0.3, strong_p=(0.55, 0.6)) for i in range(60)
    ]
    table = PuzzleTable.from_records(records)
    weak = prediction_weak_probability(table)
    assert weak.values["paper"].value == pytest.approx(0.01)
    assert weak.values["unfiltered"].value == pytest.approx((30 * 0.01 + 60 * 0.3) / 90)
    assert weak.verdict == "supported"
    confidence = prediction_strong_confidence(table)
    assert confidence.values["paper"].value == pytest.approx(0.9)
    unfiltered = (30 * 0.9 + 60 * 0.575) / 90
    assert confidence.comparison.value == pytest.approx(0.9 - unfiltered)
    assert confidence.verdict == "supported"
    # The same confidence everywhere is not "much less confident".
    flat = PuzzleTable.from_records(
        [record(f"p{i}", first=True, later=True, selected=True) for i in range(30)]
        + [record(f"u{i}", first=True, later=True) for i in range(30)]
    )
    assert prediction_strong_confidence(flat).verdict == "not supported"


def test_four_predictions_from_a_directory_without_patching(tmp_path: Path) -> None:
    records = [record(f"p{i}", first=True, later=True, selected=True) for i in range(10)]
    records += [record(f"u{i}", first=True, later=i % 2 == 0, weak_p=0.2) for i in range(20)]
    (tmp_path / "dataset.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    rows = four_predictions(tmp_path)
    assert [r.key for r in rows] == ["1", "1 (target_1)", "1 (corrupted)", "2", "3", "4a", "4b"]
    assert all(r.verdict == "not measured" for r in rows[:3])
    assert math.isnan(rows[0].values["paper"].value)
    text = predictions_markdown(rows)
    assert text.count("\n| ") == 7 and "not measured" in text
    json.dumps([r.to_json() for r in rows])  # serialisable


def test_later_move_lift_equals_direct_counts() -> None:
    from leelalab.analyses.predictions import later_move_lift

    counts = {(True, True): 30, (True, False): 20, (False, True): 10, (False, False): 40}
    lifts = later_move_lift(_table(counts), networks=("strong",), max_k=3, seed=2)
    # The hand-built lines have two solver moves: k = 2 only has rows, k = 3 none.
    two, three = lifts
    assert (two.k, two.conditional.n, two.marginal.n) == (2, 50, 100)
    assert two.conditional.value == pytest.approx(30 / 50)
    assert two.marginal.value == pytest.approx(40 / 100)
    assert two.lift.value == pytest.approx(30 / 50 - 40 / 100)
    assert two.lift.low > 0  # 0.2 at n = 100 is clear of 0
    assert three.marginal.n == 0 and math.isnan(three.lift.value)


def test_independent_moves_have_no_lift() -> None:
    from leelalab.analyses.predictions import later_move_lift

    counts = {(True, True): 60, (True, False): 60, (False, True): 60, (False, False): 60}
    (two,) = later_move_lift(_table(counts), networks=("strong",), max_k=2)
    assert two.lift.value == pytest.approx(0.0)
    assert two.lift.low < 0 < two.lift.high


def test_verdicts_on_fewer_than_the_minimum_n_are_too_few() -> None:
    from leelalab.analyses.predictions import MINIMUM_N

    small = MINIMUM_N - 1
    records = [record(f"p{i}", first=True, later=True, selected=True) for i in range(small)]
    records += [
        record(f"u{i}", first=True, later=i % 2 == 0, weak_p=0.3, strong_p=(0.2, 0.2))
        for i in range(small)
    ]
    table = PuzzleTable.from_records(records)
    assert table.strata["paper"].sum() == small
    for row in (prediction_weak_probability(table), prediction_strong_confidence(table)):
        assert row.verdict == "too few", row.key
    # 4a is decided on the unfiltered stratum, which holds both kinds here.
    assert prediction_later_moves(table).values["unfiltered"].n == 2 * small
    few = PuzzleTable.from_records(records[small:])
    assert prediction_later_moves(few).verdict == "too few"
    # The same data one puzzle larger on each side decides.
    records.append(record("p-extra", first=True, later=True, selected=True))
    records.append(record("u-extra", first=True, later=False, weak_p=0.3, strong_p=(0.2, 0.2)))
    assert prediction_weak_probability(PuzzleTable.from_records(records)).verdict != "too few"


def test_an_empty_stratum_gives_too_few_not_a_verdict() -> None:
    records = [record(f"u{i}", first=True, later=True) for i in range(30)]
    row = prediction_weak_probability(PuzzleTable.from_records(records))
    assert row.values["paper"].n == 0 and row.verdict == "too few"


def test_prediction_results_round_trip(tmp_path: Path) -> None:
    from leelalab.analyses.predictions import PredictionResults

    records = [record(f"p{i}", first=True, later=True, selected=True) for i in range(12)]
    records += [record(f"u{i}", first=True, later=i % 3 == 0, weak_p=0.2) for i in range(24)]
    (tmp_path / "dataset.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    results = PredictionResults(four_predictions(tmp_path, seed=3))
    results.save(tmp_path)
    loaded = PredictionResults.load(tmp_path)
    assert [r.to_json() for r in loaded.rows] == [r.to_json() for r in results.rows]


def test_an_empty_dataset_is_a_dataset_error(tmp_path: Path) -> None:
    from leelalab.puzzles.dataset import DatasetError

    (tmp_path / "dataset.jsonl").write_text("")
    with pytest.raises(DatasetError, match="holds no puzzle"):
        PuzzleTable.from_dataset(tmp_path)


def test_no_zero_width_interval_is_formatted() -> None:
    from leelalab.analyses.search import format_estimate
    from leelalab.stats import Estimate

    assert format_estimate(Estimate(0.525, 0.525, 0.525, 3)) == "0.525 (no spread)"
    # Ends that differ beyond the 3rd decimal get the digits that show it.
    assert format_estimate(Estimate(0.0001, -0.0002, 0.0003, 5)) == "0.0001 [-0.0002, 0.0003]"
    assert format_estimate(Estimate(0.5, 0.25, 0.75, 5)) == "0.500 [0.250, 0.750]"
