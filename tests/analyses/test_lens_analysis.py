"""Lens analysis: emergence / found-then-lost / forgotten from ranks, per-puzzle arrays that
agree with the network's own output at the last layer, groups from the filter's strata, and a
resumable run for both network families."""

from __future__ import annotations

import json

import chess
import numpy as np
import pytest
import torch

from leelalab.analyses.lens_analysis import (
    GROUPS,
    LensRunSettings,
    LensSummary,
    emergence,
    lens_chunk,
    puzzle_position,
    run_lens_analysis,
)
from leelalab.analyses.strata import strata_of
from leelalab.lc0.weights.synthetic import random_resnet_weights, random_transformer_weights
from leelalab.models import build_network
from leelalab.models.evaluation import evaluate
from leelalab.probing.lens import TunedLens, residual_width, save_tuned_lens
from leelalab.puzzles.filter import filter_puzzles
from leelalab.puzzles.reader import shipped_puzzles_path
from leelalab.runs.results import read_h5


def test_emergence_from_ranks() -> None:
    rank = np.array(
        [
            [3, 0, 0, 0],  # found at layer index 1, kept
            [0, 2, 0, 0],  # found, lost, found again: found then lost, not forgotten
            [1, 0, 0, 4],  # found, lost at the end: forgotten
            [5, 4, 3, 2],  # never found
            [2, 1, 1, 0],  # found only at the end
        ]
    )
    derived = emergence(rank)
    assert derived["layer_index"].tolist() == [1, 0, 1, -1, 3]
    assert derived["found"].tolist() == [True, True, True, False, True]
    assert derived["found_then_lost"].tolist() == [False, True, True, False, False]
    assert derived["forgotten"].tolist() == [False, False, True, False, False]
    assert derived["overridden_at_last_layer"].tolist() == [False, False, True, False, False]


def _networks(kind: str):
    if kind == "resnet":
        strong = build_network(random_resnet_weights(blocks=3, filters=8, seed=21)).eval()
    else:
        strong = build_network(random_transformer_weights(layers=3, seed=22)).eval()
    weak = build_network(random_resnet_weights(blocks=1, filters=8, seed=23)).eval()
    return strong, weak


@pytest.fixture(scope="module", params=["resnet", "transformer"])
def filtered(request, tmp_path_factory):
    strong, weak = _networks(request.param)
    directory = tmp_path_factory.mktemp(f"filter-{request.param}")
    filter_puzzles(strong, weak, shipped_puzzles_path(), directory, limit=40, progress=False)
    return strong, directory


def test_lens_chunk_agrees_with_the_network_at_the_last_layer(filtered) -> None:
    network, directory = filtered
    records = [json.loads(line) for line in (directory / "dataset.jsonl").open()][:12]
    arrays = lens_chunk(network, records)
    evaluations = evaluate(network, [puzzle_position(r) for r in records])
    for i, (record, evaluation) in enumerate(zip(records, evaluations, strict=True)):
        solution = record["moves"][1]
        ranked = list(evaluation.policy)
        assert arrays["logit_rank"][i, -1] == ranked.index(solution)
        assert arrays["logit_prob"][i, -1] == pytest.approx(evaluation.policy[solution], abs=1e-5)
        assert arrays["final_top"][i] == ranked[0] == record["strong_top_moves"][0]
        assert json.loads(arrays["logit_top"][i])[-1] == ranked[0]
        assert arrays["logit_kl"][i, -1] == pytest.approx(0.0, abs=1e-6)
        assert arrays["logit_wdl"][i, -1] == pytest.approx(list(evaluation.wdl), abs=1e-5)
        assert arrays["group_all"][i]
        for name in ("paper", "unfiltered", "weak-solved"):
            assert arrays[f"group_{name}"][i] == (name in strata_of(record))
        structural = record["filters"]["not_mate_in_1"] and record["filters"]["pv_length"]
        assert arrays["group_strong-missed"][i] == (structural and ranked[0] != solution)
    # The puzzle position carries the opponent's move as history.
    board = puzzle_position(records[0])
    assert board.move_stack == [chess.Move.from_uci(records[0]["moves"][0])]


def test_identity_tuned_lens_equals_the_logit_lens_on_puzzles(filtered, tmp_path) -> None:
    network, directory = filtered
    records = [json.loads(line) for line in (directory / "dataset.jsonl").open()][:8]
    lens = TunedLens(residual_width(network), network.n_layers)
    arrays = lens_chunk(network, records, lens)
    assert np.array_equal(arrays["tuned_rank"], arrays["logit_rank"])
    np.testing.assert_allclose(arrays["tuned_kl"], arrays["logit_kl"], atol=1e-5)


def test_run_is_resumable_and_summarised(filtered, tmp_path, monkeypatch) -> None:
    network, directory = filtered
    lens_directory = tmp_path / "lens"
    torch.manual_seed(0)
    lens = TunedLens(residual_width(network), network.n_layers)
    with torch.no_grad():
        for translator in lens.translators:
            translator.weight.add_(0.05 * torch.randn_like(translator.weight))
    save_tuned_lens(lens, lens_directory, network)
    path = run_lens_analysis(
        network,
        directory,
        tmp_path / "whole",
        LensRunSettings(chunk_size=16),
        tuned_lens=lens_directory,
        progress=False,
    )
    arrays, _ = read_h5(path)
    assert len(arrays["puzzle_ids"]) == 40 and arrays["tuned_rank"].shape[1] == network.n_layers + 1
    summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert set(summary["logit"]["groups"]) == set(GROUPS)
    assert summary["logit"]["groups"]["all"]["n"] == 40
    unfiltered = summary["logit"]["groups"]["unfiltered"]
    if unfiltered["n"]:
        assert unfiltered["final_top1"]["value"] == 1.0  # by the stratum's definition
        assert unfiltered["forgotten"]["value"] == 0.0

    # Interrupted after one chunk, then resumed: the same results.
    from leelalab.analyses import lens_analysis

    calls = {"n": 0}
    real_chunk = lens_analysis.lens_chunk

    def fail_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_chunk(*args, **kwargs)

    monkeypatch.setattr(lens_analysis, "lens_chunk", fail_second)
    with pytest.raises(KeyboardInterrupt):
        run_lens_analysis(
            network,
            directory,
            tmp_path / "resumed",
            LensRunSettings(chunk_size=16),
            tuned_lens=lens_directory,
            progress=False,
        )
    monkeypatch.setattr(lens_analysis, "lens_chunk", real_chunk)
    resumed = run_lens_analysis(
        network,
        directory,
        tmp_path / "resumed",
        LensRunSettings(chunk_size=16),
        tuned_lens=lens_directory,
        progress=False,
    )
    again, _ = read_h5(resumed)
    for key in ("logit_rank", "tuned_rank", "logit_kl", "tuned_prob"):
        np.testing.assert_array_equal(again[key], arrays[key])


def test_lens_summary_round_trips_and_omits_a_lens_not_run(tmp_path) -> None:
    groups = {"all": {"n": 2, "final_top1": {"value": 0.5, "low": 0.1, "high": 0.9, "n": 2}}}
    summary = LensSummary(layers=[-1, 0, 1], n_puzzles=2, logit={"groups": groups})
    path = summary.save(tmp_path)
    data = json.loads(path.read_text())
    assert data["format"] == "leelalab.lens/1" and "tuned" not in data
    assert LensSummary.load(tmp_path) == summary
    assert list(LensSummary.load(path).kinds()) == ["logit"]
