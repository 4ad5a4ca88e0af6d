"""Statistics every analysis reports: bootstrap confidence intervals, proportions, 2×2
tables (φ, odds ratio) and detection metrics (AUROC, average precision, FPR at 95% TPR).

Plain numpy, seeded, no global state. Bootstrap intervals resample *units* (puzzles,
positions): pass one value per unit, or a statistic of unit indices when units carry
several numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    """A statistic with a two-sided confidence interval (``nan`` where undefined)."""

    value: float
    low: float
    high: float
    n: int
    level: float = 0.95

    def __str__(self) -> str:
        if math.isnan(self.value):
            return f"n/a (n={self.n})"
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}] (n={self.n})"

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def has_width(self) -> bool:
        """Whether the interval is an interval: a zero-width one means no spread was seen
        (a single unit, or all units alike), not certainty."""
        return bool(self.high > self.low)

    def describe(self, minimum_n: int = 1) -> str:
        """``str(self)``, or "too few" below ``minimum_n`` units, or a note that the interval
        has no width — never a zero-width interval presented as a result."""
        if self.n < minimum_n:
            return f"too few (n={self.n}; at least {minimum_n} needed)"
        if not math.isnan(self.value) and not self.has_width:
            return f"{self.value:.3f} (no spread in n={self.n}: interval not estimable)"
        return str(self)

    @classmethod
    def from_json(cls, data: dict[str, float | int | None]) -> Estimate:
        """The estimate :meth:`to_json` wrote (``None`` reads back as ``nan``)."""

        def number(key: str) -> float:
            value = data.get(key)
            return math.nan if value is None else float(value)

        return cls(
            value=number("value"),
            low=number("low"),
            high=number("high"),
            n=int(data["n"] or 0),
            level=float(data.get("level") or 0.95),
        )

    def to_json(self) -> dict[str, float | int]:
        return {
            "value": _json_float(self.value),
            "low": _json_float(self.low),
            "high": _json_float(self.high),
            "n": self.n,
            "level": self.level,
        }


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def bootstrap(
    statistic: Callable[[np.ndarray], float],
    n: int,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
    strata: Sequence[int] | np.ndarray | None = None,
) -> Estimate:
    """Percentile bootstrap of ``statistic(indices)`` over ``n`` units resampled with
    replacement. ``statistic(np.arange(n))`` is the point estimate. Resamples on which the
    statistic is undefined (``nan``) are dropped.

    With ``strata`` (one label per unit), units are resampled within each stratum, keeping
    every stratum's size: the bootstrap of a stratified sample."""
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, level)
    point = float(statistic(np.arange(n)))
    rng = np.random.default_rng(seed)
    if strata is None:
        groups = [np.arange(n)]
    else:
        labels = np.asarray(strata)
        if labels.shape != (n,):
            raise ValueError("bootstrap: strata need one label per unit")
        groups = [np.nonzero(labels == label)[0] for label in np.unique(labels)]

    def draw() -> np.ndarray:
        # One group without strata: the same draws as a plain bootstrap.
        return np.concatenate([group[rng.integers(0, group.size, group.size)] for group in groups])

    values = np.array([float(statistic(draw())) for _ in range(resamples)], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Estimate(point, math.nan, math.nan, n, level)
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return Estimate(point, float(low), float(high), n, level)


def mean_ci(
    values: Sequence[float] | np.ndarray,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """The mean with a percentile-bootstrap interval (non-finite values are an error)."""
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError("mean_ci: values must be finite")
    return bootstrap(
        lambda index: array[index].mean(), array.size, resamples=resamples, level=level, seed=seed
    )


def proportion_ci(successes: int, n: int, *, level: float = 0.95) -> Estimate:
    """A proportion with its Wilson score interval (well behaved at 0 and 1)."""
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, level)
    z = _normal_quantile(1 - (1 - level) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Estimate(p, low, high, n, level)


def effective_sample_size(weights: Sequence[float] | np.ndarray) -> float:
    """Kish's effective sample size ``(Σw)² / Σw²``: as many units as an unweighted sample
    with the same variance of a mean (for a stratified sample with weights ``N_h / n_h``,
    ``1 / Σ_h W_h² / n_h``: it shrinks with the number of units per stratum)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or not np.isfinite(w).all() or (w <= 0).any():
        raise ValueError("effective_sample_size: weights must be positive and finite")
    return float(w.sum() ** 2 / (w**2).sum()) if w.size else 0.0


def weighted_proportion_ci(
    successes: Sequence[bool] | np.ndarray,
    weights: Sequence[float] | np.ndarray,
    *,
    level: float = 0.95,
) -> Estimate:
    """A weighted proportion (e.g. a stratified sample reweighted to its population) with the
    Wilson score interval at Kish's effective sample size.

    Unlike a bootstrap within strata, the interval reflects how few units each stratum has
    even where a stratum's units all agree (a bootstrap gives such a stratum no variance,
    and a stratum of one unit none at all): the variance is that of the stratified mean when
    every stratum has the variance of the overall proportion. ``n`` is the number of units.
    """
    x = np.asarray(successes, dtype=bool)
    w = np.asarray(weights, dtype=np.float64)
    if x.shape != w.shape or x.ndim != 1:
        raise ValueError("weighted_proportion_ci: one weight per unit")
    if x.size == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, level)
    n = effective_sample_size(w)
    p = float(np.average(x, weights=w))
    z = _normal_quantile(1 - (1 - level) / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if p == 0 else max(0.0, centre - half)
    high = 1.0 if p == 1 else min(1.0, centre + half)
    return Estimate(p, low, high, int(x.size), level)


def weighted_mean_ci(
    values: Sequence[float] | np.ndarray,
    weights: Sequence[float] | np.ndarray,
    *,
    level: float = 0.95,
) -> Estimate:
    """A weighted mean with a normal interval at Kish's effective sample size (the weighted
    variance pooled over all units, for the same reason as :func:`weighted_proportion_ci`).

    The interval is ``nan`` ("too few") below two effective units or when every value is the
    same (no spread to estimate it from); ``n`` is the number of units.
    """
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if v.shape != w.shape or v.ndim != 1:
        raise ValueError("weighted_mean_ci: one weight per unit")
    if not np.isfinite(v).all():
        raise ValueError("weighted_mean_ci: values must be finite")
    if v.size == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, level)
    mean = float(np.average(v, weights=w))
    n = effective_sample_size(w)
    variance = float(np.average((v - mean) ** 2, weights=w))
    if n < 2 or variance == 0:
        return Estimate(mean, math.nan, math.nan, int(v.size), level)
    half = _normal_quantile(1 - (1 - level) / 2) * math.sqrt(variance / (n - 1))
    return Estimate(mean, mean - half, mean + half, int(v.size), level)


def _normal_quantile(p: float) -> float:
    return NormalDist().inv_cdf(p)


def contingency(
    first: Sequence[bool] | np.ndarray, second: Sequence[bool] | np.ndarray
) -> np.ndarray:
    """The 2×2 table ``[[a, b], [c, d]]``: rows first True/False, columns second True/False."""
    x = np.asarray(first, dtype=bool)
    y = np.asarray(second, dtype=bool)
    if x.shape != y.shape:
        raise ValueError("contingency: both variables need one value per unit")
    return np.array(
        [[np.sum(x & y), np.sum(x & ~y)], [np.sum(~x & y), np.sum(~x & ~y)]], dtype=np.int64
    )


def phi_coefficient(table: np.ndarray) -> float:
    """φ = (ad − bc) / √((a+b)(c+d)(a+c)(b+d)); ``nan`` when a margin is empty."""
    (a, b), (c, d) = np.asarray(table, dtype=np.float64)
    denominator = math.sqrt((a + b) * (c + d) * (a + c) * (b + d))
    return (a * d - b * c) / denominator if denominator else math.nan


def odds_ratio(table: np.ndarray, *, correction: float = 0.5) -> float:
    """(a·d)/(b·c), with ``correction`` added to every cell when one is zero (Haldane)."""
    (a, b), (c, d) = np.asarray(table, dtype=np.float64)
    if correction and min(a, b, c, d) == 0:
        a, b, c, d = a + correction, b + correction, c + correction, d + correction
    return (a * d) / (b * c) if b * c else math.inf


def odds_ratio_ci(table: np.ndarray, *, level: float = 0.95) -> Estimate:
    """The odds ratio with Woolf's log-normal interval (Haldane-corrected cells)."""
    (a, b), (c, d) = np.asarray(table, dtype=np.float64) + 0.5 * (np.min(table) == 0)
    n = int(np.sum(table))
    value = odds_ratio(table)
    if min(a, b, c, d) == 0:
        return Estimate(value, math.nan, math.nan, n, level)
    z = _normal_quantile(1 - (1 - level) / 2)
    se = math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    log_or = math.log(a * d / (b * c))
    return Estimate(value, math.exp(log_or - z * se), math.exp(log_or + z * se), n, level)


def phi_ci(
    first: Sequence[bool] | np.ndarray,
    second: Sequence[bool] | np.ndarray,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """φ of two paired boolean variables with a percentile-bootstrap interval over units."""
    x = np.asarray(first, dtype=bool)
    y = np.asarray(second, dtype=bool)
    if x.shape != y.shape:
        raise ValueError("phi_ci: both variables need one value per unit")
    return bootstrap(
        lambda index: phi_coefficient(contingency(x[index], y[index])),
        x.size,
        resamples=resamples,
        level=level,
        seed=seed,
    )


def mean_difference_ci(
    values: Sequence[float] | np.ndarray,
    in_first: Sequence[bool] | np.ndarray,
    in_second: Sequence[bool] | np.ndarray,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """mean(values of the first group) − mean(values of the second), bootstrapped jointly.

    The groups may overlap (a subset and its superset, e.g. the paper's selection and the
    unfiltered set): units of their union are resampled, and each resample's difference is
    taken between the resampled members of each group, so shared units move together.
    Units in neither group are ignored; values of units outside both may be ``nan``.
    """
    v = np.asarray(values, dtype=np.float64)
    a = np.asarray(in_first, dtype=bool)
    b = np.asarray(in_second, dtype=bool)
    if not (v.shape == a.shape == b.shape) or v.ndim != 1:
        raise ValueError("mean_difference_ci: one value and two memberships per unit")
    union = a | b
    v, a, b = v[union], a[union], b[union]
    if not np.isfinite(v).all():
        raise ValueError("mean_difference_ci: values of group members must be finite")

    def statistic(index: np.ndarray) -> float:
        first, second = a[index], b[index]
        if not first.any() or not second.any():
            return math.nan
        return float(v[index][first].mean() - v[index][second].mean())

    return bootstrap(statistic, v.size, resamples=resamples, level=level, seed=seed)


def auroc(labels: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve (ties count one half); ``nan`` with a single class."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    _check_scores(y, s)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = _average_ranks(s)
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def average_precision(
    labels: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray
) -> float:
    """Average precision, Σ (Rₖ − Rₖ₋₁) Pₖ over score thresholds (scikit-learn's definition)."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    _check_scores(y, s)
    positives = int(y.sum())
    if positives == 0:
        return math.nan
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # One point per distinct threshold: the last index of each run of tied scores.
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], s_sorted.size - 1]
    true_positives = np.cumsum(y_sorted)[last]
    predicted = last + 1
    precision = true_positives / predicted
    recall = true_positives / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def fpr_at_tpr(
    labels: Sequence[bool] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    tpr: float = 0.95,
) -> float:
    """The false-positive rate at the highest threshold that flags ``tpr`` of the anomalies."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    _check_scores(y, s)
    positives, negatives = s[y], s[~y]
    if positives.size == 0 or negatives.size == 0:
        return math.nan
    # The threshold is the score of the k-th highest anomaly, k = ceil(tpr · positives).
    k = max(1, math.ceil(tpr * positives.size - 1e-12))
    threshold = np.sort(positives)[::-1][k - 1]
    return float(np.mean(negatives >= threshold))


def detection_metrics(
    labels: Sequence[bool] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Estimate]:
    """AUROC, AP and FPR@95%TPR with bootstrap intervals, resampling within each class."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    _check_scores(y, s)
    positive_index, negative_index = np.nonzero(y)[0], np.nonzero(~y)[0]
    rng = np.random.default_rng(seed)
    metrics = {"auroc": auroc, "ap": average_precision, "fpr95": fpr_at_tpr}
    samples: dict[str, list[float]] = {name: [] for name in metrics}
    if positive_index.size and negative_index.size:
        for _ in range(resamples):
            index = np.concatenate(
                [
                    rng.choice(positive_index, positive_index.size),
                    rng.choice(negative_index, negative_index.size),
                ]
            )
            for name, metric in metrics.items():
                samples[name].append(metric(y[index], s[index]))
    alpha = (1 - level) / 2
    results = {}
    for name, metric in metrics.items():
        values = np.asarray(samples[name])
        values = values[np.isfinite(values)]
        low, high = np.quantile(values, [alpha, 1 - alpha]) if values.size else (math.nan, math.nan)
        results[name] = Estimate(metric(y, s), float(low), float(high), int(y.size), level)
    return results


def _check_scores(labels: np.ndarray, scores: np.ndarray) -> None:
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError("labels and scores need one value per example")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(values.size, dtype=np.float64)
    boundaries = np.r_[0, np.nonzero(np.diff(sorted_values))[0] + 1, values.size]
    for start, end in zip(boundaries[:-1], boundaries[1:], strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2
    return ranks
