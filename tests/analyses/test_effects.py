"""Prediction 1's pipeline: corrupt and patch the paper stratum and an unfiltered sample."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from leelalab.analyses.effects import StrataPatchingResults, run_strata_patching, strata_sample
from leelalab.analyses.predictions import PuzzleTable, prediction_patching
from leelalab.analyses.settings import StrataPatchingSettings
from leelalab.analyses.strata import strata_ids
from leelalab.inference.networks import load_network
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.patching.residual import PatchingResults
from leelalab.puzzles.corruptions import CorruptionThresholds
from leelalab.puzzles.filter import Thresholds, filter_puzzles
from leelalab.puzzles.reader import shipped_puzzles_path

ANYTHING = CorruptionThresholds(
    weak_log_odds_change=math.inf, strong_q_drop=-math.inf, strong_max_prob=2.0, max_jsd=math.inf
)


def test_strata_patching_covers_both_strata(tmp_path: Path) -> None:
    strong = load_network(
        save_weights(random_resnet_weights(blocks=2, filters=8, seed=11), tmp_path / "s.pb.gz")
    )
    weak = load_network(
        save_weights(random_resnet_weights(blocks=1, filters=8, seed=12), tmp_path / "w.pb.gz")
    )
    # Loose filter thresholds, so random networks select a few puzzles.
    loose = Thresholds(hard=1.0, correct=0.2, forcing=0.0)
    filter_puzzles(
        strong,
        weak,
        shipped_puzzles_path(),
        tmp_path / "run",
        limit=300,
        thresholds=loose,
        progress=False,
    )
    ids = strata_ids(tmp_path / "run")
    assert ids["paper"] and len(ids["unfiltered"]) > 3
    sample = strata_sample(tmp_path / "run", 3, seed=1)
    assert set(sample["unfiltered"]) <= set(ids["unfiltered"]) and len(sample["unfiltered"]) == 3
    assert set(strata_sample(tmp_path / "run", 2, seed=1)["unfiltered"]) <= set(
        sample["unfiltered"]
    )
    before = {
        path.name: path.read_bytes() for path in (tmp_path / "run").iterdir() if path.is_file()
    }
    result = run_strata_patching(
        StrataPatchingSettings(unfiltered=3, seed=1),
        tmp_path / "run",
        tmp_path / "patch",
        strong,
        weak,
        thresholds=ANYTHING,
        progress=False,
    )
    # The filter run is read, never written: its files are byte-identical afterwards.
    after = {
        path.name: path.read_bytes() for path in (tmp_path / "run").iterdir() if path.is_file()
    }
    assert after == before and "corruptions.jsonl" not in after
    corruptions = (tmp_path / "patch" / "corrupted" / "corruptions.jsonl").read_text()
    assert len(corruptions.splitlines()) == result.corruptions["selected"] == result.puzzles
    assert StrataPatchingResults.load(tmp_path / "patch") == result
    patched = set(PatchingResults.load(tmp_path / "patch" / result.patching).arrays["puzzle_ids"])
    assert patched <= set(sample["paper"]) | set(sample["unfiltered"])
    written = json.loads((tmp_path / "patch" / "patching" / "strata_sample.json").read_text())
    assert written["unfiltered"] == sample["unfiltered"]
    rows = prediction_patching(PuzzleTable.from_dataset(tmp_path / "run"), tmp_path / "patch")
    target_1 = next(row for row in rows if row.key == "1 (target_1)")
    # The unfiltered stratum is its sample's patched puzzles only.
    assert target_1.values["unfiltered"].n == len(patched & set(sample["unfiltered"]))
    assert target_1.values["paper"].n == len(patched & set(sample["paper"]))
    assert np.isfinite(target_1.values["paper"].value)
    assert target_1.statistic.startswith("1st-move target effect")
