"""Policy–value coupling: signs along the line, Stockfish scores, tables against counts."""

from __future__ import annotations

from pathlib import Path

import chess
import numpy as np
import pytest

from leelalab.analyses.coupling import (
    MATE_CP,
    _solver_value,
    coupling_sample,
    coupling_tables,
    line_boards,
    run_coupling,
    stockfish_cp,
)
from leelalab.analyses.predictions import PuzzleTable
from leelalab.engines import EngineNotFoundError, Stockfish, find_stockfish
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
    path = run_coupling(
        tmp_path / "run", tmp_path / "out", strong, depth=4, sample=5, chunk_size=7, progress=False
    )
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
    # A second run is served by the Stockfish cache and the finished chunks.
    again = run_coupling(
        tmp_path / "run", tmp_path / "out", strong, depth=4, sample=5, chunk_size=7, progress=False
    )
    np.testing.assert_array_equal(read_h5(again)[0]["stockfish_end"], arrays["stockfish_end"])
