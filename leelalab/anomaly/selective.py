"""Selective answering: coverage–risk curves of "answer with M unless a detector flags".

Positions are answered in order of increasing anomaly score; at coverage ``c`` the
``c · n`` least anomalous are answered with M's move and the rest abstained on (or, for
the *fallback* policy, answered with the small model m's move). Risk is the rate of harmful
answers among the answered positions (selective risk); the fallback policy answers
everything, so its risk is over all positions. The baselines are "always M" and "always m"
(coverage 1), and the *oracle*, which abstains exactly on M's harmful answers first.
"""

from __future__ import annotations

import numpy as np

from leelalab.stats import Estimate, bootstrap


def answer_order(scores: np.ndarray) -> np.ndarray:
    """Positions from least to most anomalous (ties keep their order)."""
    return np.argsort(np.asarray(scores, dtype=np.float64), kind="stable")


def coverage_risk(scores: np.ndarray, harm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(coverage, selective risk)`` after answering 1, 2, ..., n positions."""
    order = answer_order(scores)
    harmful = np.asarray(harm, dtype=np.float64)[order]
    answered = np.arange(1, harmful.size + 1)
    return answered / harmful.size, np.cumsum(harmful) / answered


def risk_at_coverage(scores: np.ndarray, harm: np.ndarray, coverage: float) -> float:
    """Selective risk when the ``round(coverage · n)`` least anomalous are answered."""
    order = answer_order(scores)
    count = max(1, int(round(coverage * len(order))))
    return float(np.asarray(harm, dtype=np.float64)[order[:count]].mean())


def fallback_risk(
    scores: np.ndarray, harm: np.ndarray, fallback_harm: np.ndarray, coverage: float
) -> float:
    """Risk over all positions when the least anomalous ``coverage`` are answered by M and
    the rest by the fallback model."""
    order = answer_order(scores)
    count = int(round(coverage * len(order)))
    harm = np.asarray(harm, dtype=np.float64)
    fallback = np.asarray(fallback_harm, dtype=np.float64)
    return float((harm[order[:count]].sum() + fallback[order[count:]].sum()) / len(order))


def oracle_risk(harm: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """The lowest selective risk any abstention rule reaches at each coverage."""
    harm = np.asarray(harm, dtype=bool)
    n = harm.size
    answered = np.maximum(1, np.round(np.asarray(coverage) * n))
    return np.maximum(0.0, harm.sum() - (n - answered)) / answered


def risk_estimate(
    scores: np.ndarray,
    harm: np.ndarray,
    coverage: float,
    *,
    fallback_harm: np.ndarray | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> Estimate:
    """Risk at ``coverage`` (selective, or with a fallback model) with a bootstrap interval
    over positions."""
    scores = np.asarray(scores, dtype=np.float64)
    harm = np.asarray(harm, dtype=np.float64)

    def statistic(index: np.ndarray) -> float:
        if fallback_harm is None:
            return risk_at_coverage(scores[index], harm[index], coverage)
        return fallback_risk(scores[index], harm[index], fallback_harm[index], coverage)

    return bootstrap(statistic, scores.size, resamples=resamples, seed=seed)


def thin(values: np.ndarray, points: int = 201) -> list[float]:
    """At most ``points`` evenly spaced entries of a curve (first and last kept)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size <= points:
        return values.tolist()
    index = np.unique(np.round(np.linspace(0, values.size - 1, points)).astype(int))
    return values[index].tolist()


__all__ = [
    "answer_order",
    "coverage_risk",
    "fallback_risk",
    "oracle_risk",
    "risk_at_coverage",
    "risk_estimate",
    "thin",
]
