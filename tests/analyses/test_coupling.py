"""Policy–value coupling: signs along the line, Stockfish scores, tables against counts."""

from __future__ import annotations

from pathlib import Path

import chess
import numpy as np
import pytest

from leelalab.analyses.coupling import (
    MATE_CP,
    CouplingResults,
    _solver_value,
    coupling_sample,
    coupling_tables,
    line_boards,
    run_coupling,
    stockfish_cp,
)
from leelalab.analyses.predictions import PuzzleTable
from leelalab.analyses.settings import CouplingSettings
from leelalab.engines import CACHE_FILE, EngineNotFoundError, Stockfish, find_stockfish
from leelalab.inference.networks import load_network
from leelalab.lc0.weights import save_weights
from leelalab.lc0.weights.synthetic import random_resnet_weights
from leelalab.puzzles.filter import filter_puzzles
from leelalab.puzzles.reader import shipped_puzzles_path
from leelalab.runs.results import read_h5


def _stockfish() -> str | None:
    try:
        return find_stockfish()
    except EngineNotFoundError:
        return None


needs_stockfish = pytest.mark.skipif(_stockfish() is None, reason="Stockfish is not installed")


def test_values_are_seen_from_the_solver() -> None:
    assert _solver_value([0.7, 0.2, 0.1], True) == pytest.approx(0.6)
    assert _solver_value([0.7, 0.2, 0.1], False) == pytest.approx(-0.6)
    record = {
        "id": "x",
        "fen": "6k1/5ppp/8/8/8/8/5PPP/1Q4K1 b - - 0 1",
        "moves": ["h7h6", "b1b3", "g8h7", "b3f7"],
    }
    boards = line_boards(record)
    assert boards["root"].turn == chess.WHITE and len(boards["root"].move_stack) == 1
    assert boards["first"].turn == chess.BLACK and len(boards["end"].move_stack) == 4


@needs_stockfish
def test_stockfish_scores_mates_for_the_solver() -> None:
    with Stockfish(_stockfish()) as engine:
        mate_in_one = chess.Board("6k1/5ppp/8/8/8/8/5PPP/R5K1 w - - 0 1")
        assert stockfish_cp(engine, mate_in_one, 6, chess.WHITE) > 9000
        assert stockfish_cp(engine, mate_in_one, 6, chess.BLACK) < -9000
        mated = chess.Board("R5k1/5ppp/8/8/8/8/5PPP/6K1 b - - 1 1")
        assert mated.is_checkmate()
        assert stockfish_cp(engine, mated, 6, chess.WHITE) == MATE_CP


@needs_stockfish
def test_coupling_run_and_tables_equal_direct_counts(tmp_path: Path) -> None:
    strong = load_network(
        save_weights(random_resnet_weights(blocks=1, filters=8, seed=1), tmp_path / "s.pb.gz")
    )
    weak = load_network(
        save_weights(random_resnet_weights(blocks=1, filters=8, seed=2), tmp_path / "w.pb.gz")
    )
    filter_puzzles(strong, weak, shipped_puzzles_path(), tmp_path / "run", limit=25, progress=False)
    settings = CouplingSettings(depth=4, sample=5, chunk_size=7)
    path = run_coupling(settings, tmp_path / "run", tmp_path / "out", strong, progress=False)
    arrays, _ = read_h5(path)
    table = PuzzleTable.from_dataset(tmp_path / "run")
    assert len(arrays["puzzle_ids"]) == table.strata["structural"].sum()
    assert arrays["stockfish"].sum() == coupling_sample(table, 5).sum() >= 5
    assert np.isfinite(arrays["stockfish_root"][arrays["stockfish"]]).all()
    assert np.isnan(arrays["stockfish_root"][~arrays["stockfish"]]).all()
    # The root value is the filter's first W/D/L (solver to move).
    first = table.records[int(np.nonzero(table.strata["structural"])[0][0])]
    assert arrays["value_root"][0] == pytest.approx(
        first["strong_wdl"][0][0] - first["strong_wdl"][0][2]
    )
    tables = {t.name: t for t in coupling_tables(tmp_path / "run", path)}
    structural = tables["structural"]
    assert structural.n == len(arrays["puzzle_ids"])
    assert structural.winning["root"].value == pytest.approx(np.mean(arrays["value_root"] > 0))
    ok = arrays["stockfish"]
    both = ((arrays["value_first"][ok] > 0) & (arrays["stockfish_first"][ok] >= 200)).sum()
    assert structural.stockfish["first"]["table"][0, 0] == both
    # Stockfish's lines are kept in the run's engine cache (leelalab.engines), not a
    # module-specific one.
    assert (tmp_path / "out" / CACHE_FILE).is_file()
    assert not (tmp_path / "out" / "stockfish_cache.sqlite").exists()
    # A second run is served by the Stockfish cache and the finished chunks.
    again = run_coupling(settings, tmp_path / "run", tmp_path / "out", strong, progress=False)
    np.testing.assert_array_equal(read_h5(again)[0]["stockfish_end"], arrays["stockfish_end"])


LINE = ["h7h6", "b1b3", "g8h7", "b3f7"]


def _dataset(directory: Path, count: int) -> list[str]:
    """A filter run of ``count`` hand-built two-move puzzles (the strong network right)."""
    import json

    directory.mkdir()
    records = [
        {
            "id": f"p{i}",
            "fen": "6k1/5ppp/8/8/8/8/5PPP/1Q4K1 b - - 0 1",
            "moves": LINE,
            "rating": 1500,
            "themes": ["fork"],
            "strong_top_moves": ["b1b3", "g8h7", "b3f7"],
            "weak_top_moves": ["b1b2", "g8h7", "b3b7"],
            "strong_pv_probs": [0.9, 0.5, 0.9],
            "weak_pv_probs": [0.01, 0.9, 0.1],
            "strong_wdl": [[0.5, 0.3, 0.2]] * 3,
            "filters": {"not_mate_in_1": True, "pv_length": True},
            "selected": i % 2 == 0,
        }
        for i in range(count)
    ]
    (directory / "dataset.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return [r["id"] for r in records]


def _coupling_file(path: Path, ids: list[str], format_name: str) -> Path:
    from leelalab.runs.results import write_h5_atomically

    rng = np.random.default_rng(3)
    n = len(ids)
    arrays = {
        "puzzle_ids": ids,
        "value_root": rng.uniform(-1, 1, n),
        "value_first": rng.uniform(-1, 1, n),
        "value_end": rng.uniform(-1, 1, n),
        "stockfish": np.arange(n) % 3 != 0,
    }
    for point in ("root", "first", "end"):
        arrays[f"stockfish_{point}"] = rng.uniform(-600, 600, n)
    write_h5_atomically(path, arrays, {"format": format_name})
    return path


def test_coupling_results_under_the_old_format_name_stay_readable(tmp_path: Path) -> None:
    ids = _dataset(tmp_path / "run", 30)
    old = _coupling_file(tmp_path / "old.h5", ids, "leelalab.analyses.coupling/1")
    new = _coupling_file(tmp_path / "new.h5", ids, "leelalab.coupling/1")
    from_old = CouplingResults(0.0, coupling_tables(tmp_path / "run", old)).to_json()
    assert from_old == CouplingResults(0.0, coupling_tables(tmp_path / "run", new)).to_json()
    assert from_old["tables"][0]["n"] == 30


def test_coupling_tables_round_trip_through_their_results_file(tmp_path: Path) -> None:
    ids = _dataset(tmp_path / "run", 30)
    path = _coupling_file(tmp_path / "c.h5", ids, "leelalab.coupling/1")
    results = CouplingResults(0.1, coupling_tables(tmp_path / "run", path, threshold=0.1))
    results.save(tmp_path)
    loaded = CouplingResults.load(tmp_path)
    assert loaded.to_json() == results.to_json()
    structural = loaded.tables[0]
    np.testing.assert_array_equal(
        structural.policy_value["table"], results.tables[0].policy_value["table"]
    )


def test_foreign_or_truncated_coupling_results_are_one_line(tmp_path: Path) -> None:
    from leelalab.runs.records import RecordError

    ids = _dataset(tmp_path / "run", 5)
    foreign = _coupling_file(tmp_path / "f.h5", ids, "leelalab.search-budgets/1")
    with pytest.raises(RecordError, match="expected leelalab.coupling/1"):
        coupling_tables(tmp_path / "run", foreign)
    truncated = tmp_path / "t.h5"
    truncated.write_bytes(_coupling_file(tmp_path / "g.h5", ids, "x").read_bytes()[:100])
    with pytest.raises(RecordError, match="t.h5"):
        coupling_tables(tmp_path / "run", truncated)
    (tmp_path / "coupling_tables.json").write_text('{"format": "leelalab.coupling-tables/1", "ta')
    with pytest.raises(RecordError, match="truncated"):
        CouplingResults.load(tmp_path)


def test_coupling_settings_refuse_out_of_range_values() -> None:
    from leelalab.runs.experiment import SettingsError

    with pytest.raises(SettingsError, match="--threshold must be at most 1.0"):
        CouplingSettings(threshold=2.0)
    with pytest.raises(SettingsError, match="--sample must be at least 0"):
        CouplingSettings(sample=-1)
