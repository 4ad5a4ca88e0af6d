"""Accuracy by Lichess theme against the theme's frequency (rare motifs are where pattern
recognition should fail).

Every puzzle of a filter run is scored for each network alone (its top policy move at every
solver position, from the filter's records; :mod:`leelalab.analyses.scoring`). Difficulty
confounds themes — rare motifs tend to be long and highly rated — so accuracy is
residualised: a linear probability model of ``solved`` on rating band (200-point bands) and
line length (solver moves 1, 2, 3, 4, 5+), both one-hot, additive, fitted on all puzzles;
a theme's residual accuracy is the mean of ``solved − fitted`` over its puzzles.

Only *motif* themes count: Lichess's length (``short``, ``long`` …), mate-count
(``mateIn2`` …), evaluation (``advantage`` …), phase (``endgame`` …) and source
(``master`` …) tags are left out (:data:`NON_MOTIF_THEMES`). A theme's frequency is its share
of a reference puzzle collection: by default the run's own puzzles, or the counts of a
Lichess CSV (:func:`theme_frequencies`, e.g. the whole database). A sample drawn per theme —
like the shipped ``lichess_sample.csv``, with 130–900 puzzles per theme — has frequencies
that say nothing about how rare a motif is; pass the database. The slope of residual
accuracy on ``log10(frequency)`` (weighted by each theme's puzzle count) comes with a
bootstrap interval over puzzles; pattern recognition predicts a positive slope.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from leelalab.analyses.predictions import PuzzleTable
from leelalab.analyses.settings import ThemeSettings
from leelalab.errors import LeelaLabError
from leelalab.runs.experiment import Results
from leelalab.runs.records import format_name
from leelalab.stats import Estimate, bootstrap, mean_ci

NON_MOTIF_THEMES = frozenset(
    {
        "oneMove",
        "short",
        "long",
        "veryLong",
        "mate",
        "mateIn1",
        "mateIn2",
        "mateIn3",
        "mateIn4",
        "mateIn5",
        "advantage",
        "crushing",
        "equality",
        "opening",
        "middlegame",
        "endgame",
        "master",
        "masterVsMaster",
        "superGM",
    }
)
RATING_BAND = 200


def design_matrix(ratings: np.ndarray, solver_moves: np.ndarray) -> np.ndarray:
    """One-hot rating band and line length (intercept through the bands)."""
    bands = (np.asarray(ratings) // RATING_BAND).astype(int)
    depth = np.clip(np.asarray(solver_moves), 1, 5).astype(int)
    columns = [bands == b for b in np.unique(bands)]
    columns += [depth == d for d in np.unique(depth)[1:]]
    return np.stack(columns, axis=1).astype(np.float64)


def residualise(solved: np.ndarray, design: np.ndarray) -> np.ndarray:
    """``solved − fitted`` of the least-squares linear probability model."""
    y = np.asarray(solved, dtype=np.float64)
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    return y - design @ coefficients


@dataclass
class ThemeRow:
    theme: str
    n: int
    frequency: float
    accuracy: float
    residual: Estimate


@dataclass
class ThemeAnalysis:
    network: str
    rows: list[ThemeRow]
    slope: Estimate
    """Residual accuracy per decade of frequency (weighted least squares)."""
    overall_accuracy: float
    n: int
    frequency_source: str = "the run's puzzles"

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "n": self.n,
            "frequency_source": self.frequency_source,
            "overall_accuracy": self.overall_accuracy,
            "slope_per_decade": self.slope.to_json(),
            "themes": [
                {
                    "theme": r.theme,
                    "n": r.n,
                    "frequency": r.frequency,
                    "accuracy": r.accuracy,
                    "residual": r.residual.to_json(),
                }
                for r in self.rows
            ],
        }


def _slope(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    if x.size < 2 or np.ptp(x) == 0:
        return math.nan
    xm = np.average(x, weights=w)
    ym = np.average(y, weights=w)
    return float(np.sum(w * (x - xm) * (y - ym)) / np.sum(w * (x - xm) ** 2))


def theme_frequencies(path: str | os.PathLike[str]) -> tuple[dict[str, float], int]:
    """Each theme's share of the puzzles of a Lichess CSV (``.csv`` or ``.csv.zst``),
    streamed (only the ``Themes`` column is read); returns shares and the row count."""
    import csv
    import io

    path = Path(path)
    if not path.is_file():
        raise LeelaLabError(f"{path}: no such puzzle file")
    counts: Counter[str] = Counter()
    rows = 0
    if path.suffix == ".zst":
        import zstandard

        raw = path.open("rb")
        handle: Any = io.TextIOWrapper(
            zstandard.ZstdDecompressor().stream_reader(raw, closefd=True), encoding="utf-8"
        )
    else:
        handle = path.open(encoding="utf-8", newline="")
    with handle:
        reader = csv.DictReader(handle)
        if "Themes" not in (reader.fieldnames or []):
            raise LeelaLabError(f"{path}: not a Lichess puzzle CSV (no Themes column)")
        for row in reader:
            rows += 1
            counts.update(set((row.get("Themes") or "").split()))
    if rows == 0:
        raise LeelaLabError(f"{path}: no puzzle rows")
    return {theme: count / rows for theme, count in counts.items()}, rows


def theme_analysis(
    table: PuzzleTable,
    network: str = "strong",
    *,
    frequencies: dict[str, float] | None = None,
    min_puzzles: int = 20,
    seed: int = 0,
    resamples: int = 1000,
) -> ThemeAnalysis:
    """Residualised accuracy per motif theme with at least ``min_puzzles`` puzzles.

    ``frequencies``: theme → share of a reference collection (default: of ``table``);
    themes missing from it are left out."""
    solved = np.array([score.solved for score in table.scores[network]])
    design = design_matrix(table.ratings, table.solver_moves)
    residual = residualise(solved, design)
    counts = Counter(t for themes in table.themes for t in set(themes) if t not in NON_MOTIF_THEMES)
    n = len(table.records)
    shares = frequencies if frequencies is not None else {t: c / n for t, c in counts.items()}
    names = sorted(t for t, c in counts.items() if c >= min_puzzles and shares.get(t, 0) > 0)
    member = np.array([[name in themes for name in names] for themes in table.themes])
    rows = []
    for column, name in enumerate(names):
        mask = member[:, column]
        rows.append(
            ThemeRow(
                name,
                int(mask.sum()),
                shares[name],
                float(solved[mask].mean()),
                mean_ci(residual[mask], seed=seed, resamples=resamples),
            )
        )
    log_frequency = np.log10([row.frequency for row in rows]) if rows else np.zeros(0)

    def statistic(index: np.ndarray) -> float:
        sub = member[index]
        counts_b = sub.sum(axis=0)
        keep = counts_b > 0
        if keep.sum() < 2:
            return math.nan
        means = (residual[index][:, None] * sub).sum(axis=0)[keep] / counts_b[keep]
        return _slope(log_frequency[keep], means, counts_b[keep].astype(float))

    slope = (
        bootstrap(statistic, n, seed=seed, resamples=resamples)
        if len(rows) >= 2
        else Estimate(math.nan, math.nan, math.nan, n)
    )
    return ThemeAnalysis(network, rows, slope, float(solved.mean()), n)


@dataclass
class ThemeResults(Results):
    """Each network's theme analysis (``strong``, then ``weak``)."""

    FORMAT: ClassVar[str] = format_name("themes", 1)
    FILE: ClassVar[str] = "themes.json"
    HINT: ClassVar[str] = "run `leelalab analyze themes DIR --output OUT`"

    analyses: list[ThemeAnalysis] = field(default_factory=list)


def run_themes(
    settings: ThemeSettings, directory: str | os.PathLike[str], table: PuzzleTable | None = None
) -> ThemeResults:
    """Both networks' :func:`theme_analysis` of a filter run (``table``: its puzzles, when
    already read)."""
    frequencies, source = None, "the run's puzzles"
    if settings.frequencies:
        frequencies, count = theme_frequencies(settings.frequencies)
        source = f"{Path(settings.frequencies).name}, {count} puzzles"
    table = table if table is not None else PuzzleTable.from_dataset(directory)
    analyses = []
    for network in ("strong", "weak"):
        analysis = theme_analysis(
            table,
            network,
            frequencies=frequencies,
            min_puzzles=settings.min_puzzles,
            seed=settings.seed,
        )
        analysis.frequency_source = source
        analyses.append(analysis)
    return ThemeResults(analyses)
