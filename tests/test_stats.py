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


def test_stratified_bootstrap_keeps_stratum_sizes_and_a_single_stratum_is_plain() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=40)
    labels = np.array([0] * 10 + [1] * 30)
    # The share of stratum 0 is fixed in every stratified resample: a zero-width interval.
    share = stats.bootstrap(lambda i: float(np.mean(labels[i] == 0)), 40, strata=labels)
    assert share.low == share.high == 0.25
    plain = stats.bootstrap(lambda i: float(values[i].mean()), 40, seed=5)
    one = stats.bootstrap(lambda i: float(values[i].mean()), 40, seed=5, strata=np.zeros(40))
    assert (plain.low, plain.high) == (one.low, one.high)
    with pytest.raises(ValueError, match="one label per unit"):
        stats.bootstrap(lambda i: 0.0, 40, strata=[0, 1])


def test_stratified_bootstrap_of_a_weighted_mean_covers_the_population_mean() -> None:
    # Two strata of a population (sizes 900 and 100, means 0.2 and 0.8), sampled 30 + 30:
    # the reweighted mean estimates 0.26; its stratified interval should cover ~95%.
    rng = np.random.default_rng(2)
    truth = 0.9 * 0.2 + 0.1 * 0.8
    covered, draws = 0, 100
    labels = np.array([0] * 30 + [1] * 30)
    weights = np.where(labels == 0, 900 / 30, 100 / 30)
    for seed in range(draws):
        values = np.concatenate([rng.random(30) < 0.2, rng.random(30) < 0.8]).astype(float)
        estimate = stats.bootstrap(
            lambda i, v=values: float(np.average(v[i], weights=weights[i])),
            60,
            strata=labels,
            resamples=200,
            seed=seed,
        )
        covered += estimate.covers(truth)
    assert 0.86 <= covered / draws <= 1.0


def test_phi_interval_is_centred_on_the_formula_and_covers_the_truth() -> None:
    rng = np.random.default_rng(4)
    # x, y fair coins, y a copy of x with probability 0.8 (else independent): φ = 0.8
    # (cov = 0.8 · 0.25, both variances 0.25).
    covered, draws = 0, 100
    for seed in range(draws):
        x = rng.random(200) < 0.5
        copy = rng.random(200) < 0.8
        y = np.where(copy, x, rng.random(200) < 0.5)
        estimate = stats.phi_ci(x, y, resamples=200, seed=seed)
        assert estimate.value == pytest.approx(stats.phi_coefficient(stats.contingency(x, y)))
        covered += estimate.covers(0.8)
    assert 0.86 <= covered / draws <= 1.0


def test_mean_difference_of_overlapping_groups() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0, 10.0, np.nan])
    subset = np.array([True, True, False, False, False, False])
    superset = np.array([True, True, True, True, True, False])
    estimate = stats.mean_difference_ci(values, subset, superset, resamples=200)
    assert estimate.value == pytest.approx(1.5 - 4.0)
    assert estimate.n == 5  # the union; the nan unit outside both is ignored
    # A subset against its superset: the joint bootstrap's interval covers the true
    # difference about 95% of the time.
    rng = np.random.default_rng(6)
    covered, draws = 0, 100
    for seed in range(draws):
        inner = rng.normal(1.0, 1.0, 40)
        outer = rng.normal(0.0, 1.0, 160)
        values = np.concatenate([inner, outer])
        a = np.r_[np.ones(40, bool), np.zeros(160, bool)]
        b = np.ones(200, bool)
        estimate = stats.mean_difference_ci(values, a, b, resamples=200, seed=seed)
        covered += estimate.covers(1.0 - 0.2)  # superset mean = 0.2 · 1 + 0.8 · 0
    assert 0.86 <= covered / draws <= 1.0


def test_effective_sample_size_of_a_stratified_sample() -> None:
    assert stats.effective_sample_size(np.full(40, 3.5)) == pytest.approx(40)
    # Strata of populations 900 and 100 sampled 2 + 2: 1 / Σ W_h² / n_h = 1 / (0.81/2 + 0.01/2).
    weights = np.array([450.0, 450.0, 50.0, 50.0])
    assert stats.effective_sample_size(weights) == pytest.approx(1 / (0.81 / 2 + 0.01 / 2))
    with pytest.raises(ValueError, match="positive"):
        stats.effective_sample_size([1.0, 0.0])


def test_weighted_proportion_with_equal_weights_is_wilson() -> None:
    successes = np.array([True] * 7 + [False] * 13)
    weighted = stats.weighted_proportion_ci(successes, np.full(20, 2.0))
    plain = stats.proportion_ci(7, 20)
    assert (weighted.value, weighted.low, weighted.high) == pytest.approx(
        (plain.value, plain.low, plain.high)
    )
    # 0 of 10: the published Wilson upper bound 0.2775; still an interval with width.
    none = stats.weighted_proportion_ci(np.zeros(10, bool), np.ones(10))
    assert none.low == 0.0 and none.high == pytest.approx(0.2775, abs=1e-4)
    assert stats.weighted_proportion_ci(np.ones(1, bool), np.ones(1)).low < 1.0


def test_weighted_mean_interval_and_too_few() -> None:
    # Equal weights: mean ± z · s / √n with the sample standard deviation (ddof 1).
    estimate = stats.weighted_mean_ci([0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0])
    half = 1.959963984540054 * math.sqrt((1 / 3) / 4)
    assert (estimate.low, estimate.high) == pytest.approx((0.5 - half, 0.5 + half))
    same = stats.weighted_mean_ci(np.zeros(30), np.ones(30))
    assert same.value == 0.0 and math.isnan(same.low) and math.isnan(same.high)
    assert math.isnan(stats.weighted_mean_ci([0.0, 1.0], [100.0, 1.0]).low)  # n_eff < 2
    with pytest.raises(ValueError, match="finite"):
        stats.weighted_mean_ci([math.nan, 1.0], [1.0, 1.0])
