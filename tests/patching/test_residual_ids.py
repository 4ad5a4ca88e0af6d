"""run_residual_patching(ids=...): patching a stratum instead of the filter's selection."""

from __future__ import annotations

import json

import numpy as np

from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.models import build_network
from leelalab.patching.residual import PatchingResults, run_residual_patching
from leelalab.puzzles.dataset import write_pairs_dataset
from positions import corrupted_puzzles


def test_ids_patch_unselected_puzzles_with_the_same_numbers(tmp_path) -> None:
    network = build_network(random_resnet_weights(blocks=2, filters=8, seed=5)).eval()
    puzzles = corrupted_puzzles(5, seed=2)
    write_pairs_dataset(tmp_path / "data", puzzles)
    whole = PatchingResults.load(
        run_residual_patching(network, tmp_path / "data", tmp_path / "all", progress=False)
    )
    # Unselect two puzzles: the default run skips them, an ids run patches them.
    path = tmp_path / "data" / "dataset.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record in records[:2]:
        record["selected"] = False
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    wanted = [records[0]["id"], records[3]["id"]]
    subset = PatchingResults.load(
        run_residual_patching(
            network, tmp_path / "data", tmp_path / "ids", ids=wanted, progress=False
        )
    )
    assert list(subset.arrays["puzzle_ids"]) == wanted
    rows = [list(whole.arrays["puzzle_ids"]).index(pid) for pid in wanted]
    # Equal up to float32 rounding (other batch compositions).
    np.testing.assert_allclose(
        subset.arrays["log_odds"], whole.arrays["log_odds"][rows], rtol=1e-3, atol=1e-4
    )
    settings = json.loads((tmp_path / "ids" / "settings.json").read_text())
    assert "ids_sha256" in settings
