"""Statistics against direct formulas, scikit-learn, and simulated coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from leelalab import stats


def test_detection_metrics_equal_scikit_learn_on_random_data() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(5, 300))
        labels = rng.random(n) < rng.uniform(0.1, 0.9)
        if labels.all() or not labels.any():
            continue
        # Rounded scores make ties common, which is where implementations differ.
        scores = np.round(rng.normal(size=n) + labels * rng.uniform(0, 2), trial % 3)
        assert stats.auroc(labels, scores) == pytest.approx(
            metrics.roc_auc_score(labels, scores), abs=1e-12
        )
        assert stats.average_precision(labels, scores) == pytest.approx(
            metrics.average_precision_score(labels, scores), abs=1e-12
        )
        fpr, tpr, _ = metrics.roc_curve(labels, scores)
        assert stats.fpr_at_tpr(labels, scores) == pytest.approx(fpr[np.argmax(tpr >= 0.95)])


def test_phi_and_odds_ratio_equal_their_formulas() -> None:
    first = [True] * 30 + [False] * 20
    second = [True] * 25 + [False] * 5 + [True] * 8 + [False] * 12
    table = stats.contingency(first, second)
    assert table.tolist() == [[25, 5], [8, 12]]
    a, b, c, d = 25, 5, 8, 12
    assert stats.phi_coefficient(table) == pytest.approx(
        (a * d - b * c) / math.sqrt((a + b) * (c + d) * (a + c) * (b + d))
    )
    assert stats.odds_ratio(table) == pytest.approx(a * d / (b * c))
    ci = stats.odds_ratio_ci(table)
    se = math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    assert ci.low == pytest.approx(math.exp(math.log(a * d / (b * c)) - 1.959963984540054 * se))
    # φ of a 2×2 table equals Pearson's correlation of the two indicator variables.
    assert stats.phi_coefficient(table) == pytest.approx(np.corrcoef(first, second)[0, 1])


def test_odds_ratio_with_an_empty_cell_uses_haldane_correction() -> None:
    table = np.array([[10, 0], [3, 7]])
    assert stats.odds_ratio(table) == pytest.approx(10.5 * 7.5 / (0.5 * 3.5))
    assert math.isnan(stats.phi_coefficient(np.array([[5, 5], [0, 0]])))


def test_wilson_interval_matches_the_closed_form() -> None:
    estimate = stats.proportion_ci(7, 20)
    z, p, n = 1.959963984540054, 0.35, 20
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (estimate.low, estimate.high) == pytest.approx((centre - half, centre + half))
    assert stats.proportion_ci(0, 10).low == 0.0


def test_bootstrap_mean_interval_covers_the_true_mean_about_95_percent() -> None:
    rng = np.random.default_rng(1)
    covered = 0
    draws = 300
    for seed in range(draws):
        sample = rng.exponential(1.0, size=60)
        covered += stats.mean_ci(sample, resamples=400, seed=seed).covers(1.0)
    # A percentile bootstrap of a skewed mean at n = 60 under-covers slightly; 95% ± 3.5%.
    assert 0.895 <= covered / draws <= 0.985


def test_auroc_interval_covers_the_true_auroc_about_95_percent() -> None:
    # Normal scores shifted by d: true AUROC = Φ(d / √2).
    from statistics import NormalDist

    shift = 1.0
    truth = NormalDist().cdf(shift / math.sqrt(2))
    rng = np.random.default_rng(2)
    covered, draws = 0, 150
    for seed in range(draws):
        labels = np.r_[np.ones(80, bool), np.zeros(80, bool)]
        scores = rng.normal(size=160) + shift * labels
        estimate = stats.detection_metrics(labels, scores, resamples=300, seed=seed)["auroc"]
        covered += estimate.covers(truth)
    assert 0.88 <= covered / draws <= 0.99


def test_pure_noise_gives_an_auroc_interval_around_one_half() -> None:
    rng = np.random.default_rng(3)
    labels = rng.random(400) < 0.5
    estimate = stats.detection_metrics(labels, rng.normal(size=400), seed=0)["auroc"]
    assert estimate.covers(0.5)


def test_bad_scores_are_errors() -> None:
    with pytest.raises(ValueError, match="finite"):
        stats.auroc([True, False], [0.1, float("nan")])
    with pytest.raises(ValueError, match="one value"):
        stats.auroc([True, False, True], [0.1, 0.2])
    assert math.isnan(stats.auroc([True, True], [0.1, 0.2]))
