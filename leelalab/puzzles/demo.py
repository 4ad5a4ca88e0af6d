"""The bundled main job: how a network does on the first move of each shipped puzzle.

For every puzzle, the network sees the position after the opponent's move (history: the
puzzle FEN plus that move, as lc0 would get it) and we record the probability of the
solution's first move and whether it is the network's top choice. Later the puzzle pipeline
(strong/weak filtering, corruptions) builds on the same pieces.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from leelalab.models.base import LeelaNetwork
from leelalab.models.evaluation import iter_evaluate
from leelalab.puzzles.reader import Puzzle, SkipReport, iter_puzzles

RATING_BANDS = ((0, 1200), (1200, 1600), (1600, 2000), (2000, 2400), (2400, 10_000))


@dataclass
class PuzzleStartResult:
    puzzle_id: str
    rating: int | None
    solution_probability: float
    top_move_correct: bool
    q: float


@dataclass
class DemoSummary:
    results: list[PuzzleStartResult] = field(default_factory=list)
    report: SkipReport = field(default_factory=SkipReport)

    def table(self) -> list[list[str]]:
        """Rows (header first): rating band, puzzles, top-1 accuracy, mean P(solution), mean Q."""
        rows = [["rating", "puzzles", "top-1 = solution", "mean P(solution)", "mean Q"]]
        bands = [
            (f"{low}-{high - 1}" if high < 10_000 else f"{low}+", low, high)
            for low, high in RATING_BANDS
        ]
        bands.append(("all", -1, 10**9))
        for label, low, high in bands:
            chosen = [
                r
                for r in self.results
                if label == "all" or (r.rating is not None and low <= r.rating < high)
            ]
            if not chosen:
                continue
            rows.append(
                [
                    label,
                    str(len(chosen)),
                    f"{np.mean([r.top_move_correct for r in chosen]):.1%}",
                    f"{np.mean([r.solution_probability for r in chosen]):.3f}",
                    f"{np.mean([r.q for r in chosen]):+.3f}",
                ]
            )
        return rows


def evaluate_puzzle_starts(
    network: LeelaNetwork,
    path: str | os.PathLike[str],
    *,
    limit: int | None = None,
    batch_size: int = 256,
    progress: bool = True,
    compile: bool = False,
) -> DemoSummary:
    """Evaluate ``network`` on the starting position of every puzzle in ``path``."""
    summary = DemoSummary()
    puzzles: list[Puzzle] = []

    def boards() -> Iterator:
        for puzzle in iter_puzzles(path, limit=limit, report=summary.report):
            puzzles.append(puzzle)
            yield puzzle.board(plies=1)

    evaluations = iter_evaluate(
        network, boards(), history="lc0", batch_size=batch_size, compile=compile
    )
    for index, evaluation in enumerate(
        tqdm(evaluations, desc="puzzles", unit="pos", disable=not progress, total=limit)
    ):
        puzzle = puzzles[index]
        solution = puzzle.moves[1]
        top = next(iter(evaluation.policy))
        summary.results.append(
            PuzzleStartResult(
                puzzle_id=puzzle.id,
                rating=puzzle.rating,
                solution_probability=evaluation.policy.get(solution, 0.0),
                top_move_correct=top == solution,
                q=evaluation.q,
            )
        )
    return summary
