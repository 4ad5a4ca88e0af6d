"""Theme analysis: residualisation, a planted rare-motif deficit, frequencies from a CSV."""

from __future__ import annotations

import numpy as np
import pytest

from leelalab.analyses.predictions import PuzzleTable
from leelalab.analyses.themes import (
    NON_MOTIF_THEMES,
    design_matrix,
    residualise,
    theme_analysis,
    theme_frequencies,
)
from leelalab.errors import LeelaLabError

START = "6k1/5ppp/8/8/8/8/5PPP/1Q4K1 b - - 0 1"
LINE = ["h7h6", "b1b3", "g8h7", "b3f7"]


def test_residuals_of_an_additive_model_are_exactly_zero() -> None:
    rng = np.random.default_rng(0)
    ratings = rng.integers(400, 2800, 500)
    depth = rng.integers(1, 7, 500)
    design = design_matrix(ratings, depth)
    coefficients = rng.normal(size=design.shape[1])
    assert np.allclose(residualise(design @ coefficients, design), 0.0)
    noisy = rng.random(500) < 0.5
    assert residualise(noisy, design).mean() == pytest.approx(0.0, abs=1e-9)


def _record(pid: str, themes: list[str], solved: bool, rating: int) -> dict:
    return {
        "id": pid,
        "fen": START,
        "moves": LINE,
        "rating": rating,
        "themes": themes,
        "strong_top_moves": ["b1b3", "g8h7", "b3f7" if solved else "b3b7"],
        "weak_top_moves": ["b1b2", "g8h7", "b3b7"],
        "strong_pv_probs": [0.6, 0.5, 0.6],
        "weak_pv_probs": [0.1, 0.5, 0.1],
        "filters": {"not_mate_in_1": True, "pv_length": True},
        "selected": False,
    }


def test_a_rare_theme_with_a_planted_deficit_gives_a_positive_slope() -> None:
    rng = np.random.default_rng(1)
    records = []
    for i in range(900):
        rating = int(rng.integers(600, 2400))
        easy = 0.8 - (rating - 600) / 1800 * 0.6  # accuracy falls with rating
        theme = "fork" if i < 600 else ("pin" if i < 840 else "zugzwangLike")
        rate = easy - (0.3 if theme == "zugzwangLike" else 0.0)
        records.append(_record(f"p{i}", [theme, "short"], bool(rng.random() < rate), rating))
    table = PuzzleTable.from_records(records)
    analysis = theme_analysis(table, "strong", resamples=200)
    by_theme = {row.theme: row for row in analysis.rows}
    assert set(by_theme) == {"fork", "pin", "zugzwangLike"}  # "short" is not a motif
    assert "short" in NON_MOTIF_THEMES
    assert by_theme["zugzwangLike"].n == 60
    assert by_theme["zugzwangLike"].frequency == pytest.approx(60 / 900)
    assert by_theme["zugzwangLike"].residual.high < 0
    assert analysis.slope.low > 0
    # Given frequencies replace the run's own.
    other = theme_analysis(table, "strong", frequencies={"fork": 0.2, "pin": 0.01}, resamples=50)
    assert {row.theme for row in other.rows} == {"fork", "pin"}


def test_theme_frequencies_from_a_lichess_csv(tmp_path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        "PuzzleId,FEN,Moves,Rating,Themes\n"
        "a,x,e2e4 e7e5,1000,fork short\n"
        "b,x,e2e4 e7e5,1000,fork pin\n"
        "c,x,e2e4 e7e5,1000,\n"
        "d,x,e2e4 e7e5,1000,fork fork\n"
    )
    shares, rows = theme_frequencies(path)
    assert rows == 4 and shares == {"fork": 0.75, "short": 0.25, "pin": 0.25}
    (tmp_path / "bad.csv").write_text("PuzzleId,FEN\na,b\n")
    with pytest.raises(LeelaLabError, match="no Themes column"):
        theme_frequencies(tmp_path / "bad.csv")
    with pytest.raises(LeelaLabError, match="no such puzzle file"):
        theme_frequencies(tmp_path / "missing.csv")
