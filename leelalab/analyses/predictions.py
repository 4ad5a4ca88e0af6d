"""The paper author's four predictions for an unfiltered puzzle set, tested on one filter run.

The look-ahead paper keeps only puzzles that a weak network does not solve. Critics built a
set where the strong network merely gets the first move right, and found moves and values
poorly correlated; the author predicted that on such an *unfiltered* set, compared with the
paper's set:

1. the paper's patching experiments give smaller effects;
2. the weak network puts non-trivial probability on the first move;
3. the strong network is much less confident along the line;
4. the strong network often gets later moves wrong even when the first is right, and
   first- and later-move correctness are at most weakly correlated.

Each is measured per stratum (:mod:`leelalab.analyses.strata`) with a 95% bootstrap or
Wilson interval, and judged by a rule fixed in advance (:data:`RULES`). Differences between
the paper's set and the unfiltered one — which contains it — are bootstrapped jointly over
their union (:func:`leelalab.stats.mean_difference_ci`).

Caveat printed with the table: the paper's filter thresholds exactly the quantities of
predictions 2–4 (weak P(1st) < 0.05, strong P(every solver move) > 0.5), so in the paper's
stratum those statistics are bounded by construction; the informative numbers are the
unfiltered and weak-solved strata's.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from leelalab.analyses.scoring import PuzzleScore, score_record
from leelalab.analyses.settings import PredictionSettings
from leelalab.analyses.strata import STRATA, strata_of
from leelalab.puzzles.dataset import SQUARE_GROUPS, DatasetError, iter_dataset
from leelalab.runs.experiment import Results
from leelalab.runs.records import format_name
from leelalab.stats import (
    Estimate,
    bootstrap,
    contingency,
    mean_ci,
    mean_difference_ci,
    odds_ratio_ci,
    phi_ci,
    proportion_ci,
)

HARD = 0.05
"""The paper's hardness threshold on the weak network's P(1st move): "non-trivial" is more."""
MUCH = 0.10
"""How much lower the strong network's mean P(solver move) must be to be "much" lower."""
DECENT = 0.10
"""A "decent fraction" of later mistakes: the interval's lower end must reach this."""
WEAK_PHI = 0.30
"""φ below this is a weak correlation (Cohen's "medium" starts at 0.3)."""
MINIMUM_N = 10
"""The fewest puzzles on each side of a verdict: below it the verdict is "too few" (a 95%
interval over fewer units says little, and a zero-width one nothing)."""
PATCHING_GROUPS = ("target_3", "target_1", "corrupted")
GROUP_WORDS = {
    "target_3": "3rd-move target",
    "target_1": "1st-move target",
    "corrupted": "corrupted-square",
    "other": "other-square",
}
"""The README's words for the square groups that tables print."""

RULES = {
    "1": "effect (mean over layers of the group's largest square effect, log-odds) is smaller "
    "on the unfiltered set: paper − unfiltered > 0 with its 95% CI above 0",
    "2": f"unfiltered mean weak P(1st move) has its 95% CI above {HARD} (the paper's hardness "
    "threshold) and above the paper set's",
    "3": f"paper − unfiltered mean strong P(solver move) ≥ {MUCH} with its 95% CI above 0",
    "4a": "P(a later solver move wrong | 1st right) on the unfiltered set has its 95% CI "
    f"lower end ≥ {DECENT}",
    "4b": f"φ(1st right, every later move right) has its 95% CI below {WEAK_PHI}",
}


@dataclass
class PuzzleTable:
    """Per-puzzle quantities of a filter run, for every record."""

    ids: list[str]
    strata: dict[str, np.ndarray]
    """Stratum name (and ``structural``) → membership mask."""
    weak_p_first: np.ndarray
    strong_p_first: np.ndarray
    strong_p_solver: np.ndarray
    """Mean strong P over the solver moves of the line (plies 0, 2, 4 …)."""
    first_correct: np.ndarray
    later_correct: np.ndarray
    """Every later solver move right (teacher-forced; ``False`` for one-move lines)."""
    weak_first_correct: np.ndarray
    weak_later_correct: np.ndarray
    ratings: np.ndarray
    solver_moves: np.ndarray
    themes: list[tuple[str, ...]]
    records: list[dict[str, Any]] = field(repr=False, default_factory=list)
    scores: dict[str, list[PuzzleScore]] = field(repr=False, default_factory=dict)
    """Network (``strong``, ``weak``) → each record's teacher-forced :class:`PuzzleScore`."""

    @classmethod
    def from_dataset(cls, directory: str | os.PathLike[str]) -> PuzzleTable:
        """Every record of a filter run's ``dataset.jsonl``.

        Raises:
            DatasetError: not a dataset, or a dataset without a puzzle (e.g. filtered from a
                CSV that holds only its header): every analysis needs at least one.
        """
        records = [puzzle.record for puzzle in iter_dataset(directory, selected_only=False)]
        if not records:
            raise DatasetError(f"{directory}: the dataset holds no puzzle; nothing to analyse")
        return cls.from_records(records)

    @classmethod
    def from_records(cls, records: list[dict[str, Any]]) -> PuzzleTable:
        if not records:
            raise DatasetError("no puzzle records; nothing to analyse")
        memberships = [set(strata_of(record)) for record in records]
        strata = {name: np.array([name in m for m in memberships]) for name in STRATA}
        strata["structural"] = np.array(
            [
                bool(r.get("filters", {}).get("not_mate_in_1"))
                and bool(r.get("filters", {}).get("pv_length"))
                and len(r["moves"]) >= 4  # at least two solver moves
                for r in records
            ]
        )
        strong = [score_record(record, "strong") for record in records]
        weak = [score_record(record, "weak") for record in records]

        def probability(record: dict[str, Any], key: str, index: int) -> float:
            values = record.get(key) or []
            return float(values[index]) if len(values) > index else math.nan

        return cls(
            ids=[record["id"] for record in records],
            strata=strata,
            weak_p_first=np.array([probability(r, "weak_pv_probs", 0) for r in records]),
            strong_p_first=np.array([probability(r, "strong_pv_probs", 0) for r in records]),
            strong_p_solver=np.array(
                [
                    float(np.mean(r["strong_pv_probs"][0::2]))
                    if r.get("strong_pv_probs")
                    else math.nan
                    for r in records
                ]
            ),
            first_correct=np.array([s.first_correct for s in strong]),
            later_correct=np.array([bool(s.later_correct) for s in strong]),
            weak_first_correct=np.array([s.first_correct for s in weak]),
            weak_later_correct=np.array([bool(s.later_correct) for s in weak]),
            ratings=np.array([r.get("rating") or 0 for r in records]),
            solver_moves=np.array([len(r["moves"]) // 2 for r in records]),
            themes=[tuple(r.get("themes", ())) for r in records],
            records=records,
            scores={"strong": strong, "weak": weak},
        )


@dataclass
class Prediction:
    """One prediction: its statistic per stratum, the decisive comparison and the verdict."""

    key: str
    claim: str
    statistic: str
    values: dict[str, Estimate]
    comparison: Estimate | None
    comparison_label: str
    verdict: str
    """``supported``, ``not supported``, ``contradicted`` or ``not measured``."""
    rule: str
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "claim": self.claim,
            "statistic": self.statistic,
            "values": {name: value.to_json() for name, value in self.values.items()},
            "comparison": None if self.comparison is None else self.comparison.to_json(),
            "comparison_label": self.comparison_label,
            "verdict": self.verdict,
            "rule": self.rule,
            "note": self.note,
        }


def _means(values: np.ndarray, table: PuzzleTable, seed: int) -> dict[str, Estimate]:
    out = {}
    for name in STRATA:
        member = table.strata[name] & np.isfinite(values)
        out[name] = mean_ci(values[member], seed=seed)
    return out


def _compared(
    values: np.ndarray, table: PuzzleTable, first: str, second: str, seed: int
) -> tuple[dict[str, Estimate], Estimate]:
    """Per-stratum means of ``values`` and the bootstrapped ``first − second`` difference
    (jointly over the two strata's union; puzzles without a value count as 0 there)."""
    difference = mean_difference_ci(
        np.nan_to_num(values), table.strata[first], table.strata[second], seed=seed
    )
    return _means(values, table, seed), difference


def prediction_weak_probability(table: PuzzleTable, seed: int = 0) -> Prediction:
    values, difference = _compared(table.weak_p_first, table, "unfiltered", "paper", seed)
    unfiltered = values["unfiltered"]
    if _too_few(unfiltered, values["paper"]):
        verdict = "too few"
    elif math.isnan(unfiltered.value):
        verdict = "not measured"
    elif unfiltered.low > HARD and difference.low > 0:
        verdict = "supported"
    elif unfiltered.high < HARD:
        verdict = "contradicted"
    else:
        verdict = "not supported"
    return Prediction(
        "2",
        "the weak network puts non-trivial probability on the 1st move",
        "mean weak P(1st move)",
        values,
        difference,
        "unfiltered − paper",
        verdict,
        RULES["2"],
        f"the paper's filter requires weak P(1st) < {HARD}",
    )


def prediction_strong_confidence(table: PuzzleTable, seed: int = 0) -> Prediction:
    values, difference = _compared(table.strong_p_solver, table, "paper", "unfiltered", seed)
    verdict = (
        "too few"
        if _too_few(values["paper"], values["unfiltered"])
        else _difference_verdict(difference, minimum=MUCH)
    )
    return Prediction(
        "3",
        "the strong network is much less confident",
        "mean strong P(solver move) along the line",
        values,
        difference,
        "paper − unfiltered",
        verdict,
        RULES["3"],
        "the paper's filter requires strong P > 0.5 on every solver move",
    )


def prediction_later_moves(table: PuzzleTable) -> Prediction:
    values = {}
    for name in STRATA:
        member = table.strata[name] & table.first_correct
        wrong = int((~table.later_correct[member]).sum())
        values[name] = proportion_ci(wrong, int(member.sum()))
    unfiltered = values["unfiltered"]
    if _too_few(unfiltered):
        verdict = "too few"
    elif unfiltered.low >= DECENT:
        verdict = "supported"
    elif unfiltered.high < DECENT:
        verdict = "contradicted"
    else:
        verdict = "not supported"
    return Prediction(
        "4a",
        "later moves are often wrong although the 1st is right",
        "P(a later solver move wrong | 1st right), teacher-forced top-1",
        values,
        None,
        "",
        verdict,
        RULES["4a"],
        "the paper's filter makes every solver move the top move",
    )


def prediction_correlation(table: PuzzleTable, seed: int = 0) -> Prediction:
    base = table.strata["structural"]
    first = table.first_correct[base]
    later = table.later_correct[base]
    phi = phi_ci(first, later, seed=seed)
    odds = odds_ratio_ci(contingency(first, later))
    values = {name: phi if name == "structural" else _undefined(table, name) for name in STRATA}
    values["structural"] = phi
    if _too_few(phi):
        verdict = "too few"
    elif math.isnan(phi.value) or math.isnan(phi.low):
        verdict = "not measured"
    elif phi.high < WEAK_PHI:
        verdict = "supported"
    elif phi.low >= WEAK_PHI:
        verdict = "contradicted"
    else:
        verdict = "not supported"
    table_text = contingency(first, later).tolist()
    return Prediction(
        "4b",
        "1st- and later-move correctness are weakly correlated",
        "φ(1st right, later right) over all puzzles with ≥ 2 solver moves (not mate-in-1)",
        values,
        odds,
        "odds ratio",
        verdict,
        RULES["4b"],
        f"2×2 [[1st✓ later✓, 1st✓ later✗], [1st✗ later✓, 1st✗ later✗]] = {table_text}; "
        "within each stratum the 1st move is fixed, so φ is computed on their common superset",
    )


def _too_few(*estimates: Estimate) -> bool:
    """Whether a verdict would rest on fewer than :data:`MINIMUM_N` puzzles on a side."""
    return any(estimate.n < MINIMUM_N for estimate in estimates)


def _undefined(table: PuzzleTable, name: str) -> Estimate:
    return Estimate(math.nan, math.nan, math.nan, int(table.strata[name].sum()))


def _difference_verdict(difference: Estimate, minimum: float = 0.0) -> str:
    if math.isnan(difference.value) or math.isnan(difference.low):
        return "not measured"
    if difference.low > 0 and difference.value >= minimum:
        return "supported"
    if difference.high < 0:
        return "contradicted"
    return "not supported"


# ----------------------------------------------------------------------------- patching


def patching_effects(
    results_path: str | os.PathLike[str], group: str, *, reduce: str = "max"
) -> tuple[list[str], np.ndarray]:
    """Per patched puzzle: the mean over layers of ``group``'s effect (``reduce`` over the
    group's squares, log-odds, noising); ``nan`` where the puzzle has no such square."""
    from leelalab.analyses.effects import patching_results_file
    from leelalab.patching.residual import PatchingResults

    results = PatchingResults.load(patching_results_file(results_path))
    effects = results.effects("log_odds")  # (puzzles, layers, 64)
    member = results.groups == SQUARE_GROUPS.index(group)  # (puzzles, 64)
    values = np.where(member[:, None, :], effects, np.nan)
    with warnings.catch_warnings():  # all-nan slices: puzzles without the group
        warnings.simplefilter("ignore", RuntimeWarning)
        per_layer = np.nanmax(values, axis=2) if reduce == "max" else np.nanmean(values, axis=2)
    per_puzzle = per_layer.mean(axis=1)
    per_puzzle[~member.any(axis=1)] = np.nan
    return [str(i) for i in results.arrays["puzzle_ids"]], per_puzzle


def unfiltered_sample(results_path: str | os.PathLike[str]) -> set[str] | None:
    """The unfiltered sample's ids written by :func:`leelalab.analyses.effects.
    run_strata_patching` beside its patching results, if any."""
    from leelalab.analyses.effects import SAMPLE_FILE, patching_results_file
    from leelalab.runs.records import RecordError, read_json

    path = patching_results_file(results_path).parent / SAMPLE_FILE
    if not path.is_file():
        return None
    sample = read_json(path, what="strata sample")
    if not isinstance(sample.get("unfiltered"), list):
        raise RecordError(f"{path}: no unfiltered sample in it; rerun `analyze strata-patching`")
    return {str(pid) for pid in sample["unfiltered"]}


def prediction_patching(
    table: PuzzleTable, results_path: str | os.PathLike[str] | None, seed: int = 0
) -> list[Prediction]:
    """Prediction 1, one row per square group (the 3rd-move target decides)."""
    if results_path is not None:
        from leelalab.analyses.effects import patching_results_file

        results_path = patching_results_file(results_path)  # one line when it is not one
    rows = []
    for group in PATCHING_GROUPS:
        key = "1" if group == "target_3" else f"1 ({group})"
        if results_path is None:
            rows.append(
                Prediction(
                    key,
                    "the paper's patching effects are smaller on the unfiltered set",
                    f"{group} effect",
                    {name: _undefined(table, name) for name in STRATA},
                    None,
                    "",
                    "not measured",
                    RULES["1"],
                    "no patching results given (`leelalab analyze strata-patching`)",
                )
            )
            continue
        rows.append(_patching_row(table, results_path, group, key, seed))
    return rows


def _patching_row(
    table: PuzzleTable, results_path: Path, group: str, key: str, seed: int
) -> Prediction:
    """Prediction 1 for one square group of a patching run."""
    ids, effect = patching_effects(results_path, group)
    position = {pid: i for i, pid in enumerate(table.ids)}
    rows_in_table = np.array([position.get(pid, -1) for pid in ids])
    known = rows_in_table >= 0
    masks = {
        name: np.where(known, table.strata[name][np.maximum(rows_in_table, 0)], False)
        for name in STRATA
    }
    sampled = unfiltered_sample(results_path)
    if sampled is not None:
        # The unfiltered stratum is represented by its random sample only (the paper's
        # puzzles, all patched, would otherwise be over-represented in it).
        in_sample = np.array([pid in sampled for pid in ids])
        masks["unfiltered"] &= in_sample
        masks["weak-solved"] &= in_sample
    finite = np.isfinite(effect)
    values = {name: mean_ci(effect[masks[name] & finite], seed=seed) for name in STRATA}
    paper, unfiltered = masks["paper"] & finite, masks["unfiltered"] & finite
    note = (
        "residual-stream noising patching on puzzles with a corruption (the unfiltered "
        "stratum: its random sample)"
    )
    difference: Estimate | None = None
    label = "paper − unfiltered"
    if unfiltered.any() and not (unfiltered & ~paper).any():
        # E.g. a plain `patch residual` run: it patched the paper's selection only, which
        # the unfiltered stratum contains — a stratum compared with itself (or a part).
        verdict, label = "not comparable", ""
        note = (
            "both sides are the same puzzles (the patching run covers no unfiltered "
            "puzzle outside the paper's selection): use `leelalab analyze strata-patching`"
        )
    elif _too_few(values["paper"], values["unfiltered"]):
        verdict = "too few"
    else:
        difference = mean_difference_ci(np.nan_to_num(effect), paper, unfiltered, seed=seed)
        verdict = _difference_verdict(difference)
    return Prediction(
        key,
        "the paper's patching effects are smaller on the unfiltered set",
        f"{GROUP_WORDS[group]} effect (log-odds, mean over layers)",
        values,
        difference,
        label,
        verdict,
        RULES["1"],
        note,
    )


def four_predictions(
    directory: str | os.PathLike[str],
    patching: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
) -> list[Prediction]:
    """Every prediction's row (prediction 1 needs ``patching``: a residual-patching result
    directory or ``patching.h5`` over puzzles of both strata)."""
    table = PuzzleTable.from_dataset(directory)
    return [
        *prediction_patching(table, Path(patching) if patching else None, seed),
        prediction_weak_probability(table, seed),
        prediction_strong_confidence(table, seed),
        prediction_later_moves(table),
        prediction_correlation(table, seed),
    ]


@dataclass
class PredictionResults(Results):
    """The four predictions' rows, as :func:`four_predictions` returns them."""

    FORMAT: ClassVar[str] = format_name("predictions", 1)
    FILE: ClassVar[str] = "predictions.json"
    HINT: ClassVar[str] = "run `leelalab analyze predictions DIR --output OUT`"

    rows: list[Prediction] = field(default_factory=list)

    def markdown(self) -> str:
        return predictions_markdown(self.rows)


def run_predictions(
    settings: PredictionSettings,
    directory: str | os.PathLike[str],
    patching: str | os.PathLike[str] | None = None,
) -> PredictionResults:
    """:func:`four_predictions` as an experiment (settings in, results object out)."""
    return PredictionResults(four_predictions(directory, patching, seed=settings.seed))


@dataclass(frozen=True)
class MoveLift:
    """How much knowing that the 1st solver move is right tells about solver move ``k``."""

    network: str
    k: int
    conditional: Estimate
    """P(move k right | move 1 right), Wilson interval."""
    marginal: Estimate
    """P(move k right), Wilson interval."""
    lift: Estimate
    """conditional − marginal, percentile bootstrap over puzzles."""


def later_move_lift(
    table: PuzzleTable,
    *,
    networks: Sequence[str] = ("strong", "weak"),
    max_k: int = 4,
    seed: int = 0,
) -> list[MoveLift]:
    """P(solver move k right | 1st right) − P(solver move k right) for k = 2 … ``max_k``.

    Over every puzzle with ≥ 2 solver moves that is not a mate-in-1 (the ``structural``
    set; within a stratum the strong network's 1st move is fixed, so the condition would be
    empty), restricted for each k to the lines with at least k solver moves. Moves are judged
    teacher-forced (:func:`leelalab.analyses.scoring.score_record`). A lift near 0 at every k
    is what pattern recognition of each position on its own predicts; planning one line
    predicts a positive lift that persists with k.
    """
    base = np.nonzero(table.strata["structural"])[0]
    lifts = []
    for network in networks:
        correct = [table.scores[network][i].correct for i in base]
        for k in range(2, max_k + 1):
            rows = [c for c in correct if len(c) >= k]
            first = np.array([c[0] for c in rows], dtype=bool)
            kth = np.array([c[k - 1] for c in rows], dtype=bool)

            def lift(
                indices: np.ndarray, first: np.ndarray = first, kth: np.ndarray = kth
            ) -> float:
                given = first[indices]
                if not given.any():
                    return math.nan
                return float(kth[indices][given].mean() - kth[indices].mean())

            lifts.append(
                MoveLift(
                    network,
                    k,
                    proportion_ci(int(kth[first].sum()), int(first.sum())),
                    proportion_ci(int(kth.sum()), len(kth)),
                    bootstrap(lift, len(rows), seed=seed),
                )
            )
    return lifts


def predictions_markdown(rows: list[Prediction]) -> str:
    """The table as Markdown (one row per prediction; strata as columns)."""
    from leelalab.analyses.search import describe_estimate, format_estimate

    lines = [
        "| # | prediction | statistic | paper | unfiltered | weak-solved | comparison | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = []
        for name in STRATA:
            value = row.values[name]
            cells.append(describe_estimate(value))
        if row.key == "4b":
            cells = [f"all: {describe_estimate(row.values['structural'])}", "", ""]
        comparison = (
            f"{row.comparison_label}: {format_estimate(row.comparison)}" if row.comparison else ""
        )
        statistic = row.statistic.replace("|", "\\|")  # a literal bar inside a cell
        lines.append(
            f"| {row.key} | {row.claim} | {statistic} | {' | '.join(cells)} | {comparison} "
            f"| **{row.verdict}** |"
        )
    lines.append("")
    lines += [f"- rule {key}: {rule}" for key, rule in RULES.items()]
    return "\n".join(lines) + "\n"
