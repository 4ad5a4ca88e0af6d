"""Coverage–risk arithmetic against brute force."""

from __future__ import annotations

import numpy as np

from leelalab.anomaly.selective import (
    coverage_risk,
    fallback_risk,
    oracle_risk,
    risk_at_coverage,
    risk_estimate,
)


def test_curves_equal_brute_force() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=50)
    harm = rng.random(50) < 0.3
    coverage, risk = coverage_risk(scores, harm)
    for k in (1, 7, 25, 50):
        answered = np.argsort(scores)[:k]
        assert coverage[k - 1] == k / 50
        assert risk[k - 1] == harm[answered].mean()
        assert risk_at_coverage(scores, harm, k / 50) == harm[answered].mean()
    assert risk[-1] == harm.mean()


def test_a_perfect_detector_reaches_the_oracle_and_fallback_mixes_models() -> None:
    harm = np.array([0, 0, 1, 0, 1, 0, 0, 0, 0, 1], dtype=bool)
    perfect = harm.astype(float)
    grid = np.array([0.5, 0.7, 0.8, 1.0])
    np.testing.assert_allclose(
        [risk_at_coverage(perfect, harm, c) for c in grid], oracle_risk(harm, grid), rtol=1e-12
    )
    assert oracle_risk(harm, np.array([0.7]))[0] == 0.0
    fallback = np.zeros(10, dtype=bool)
    fallback[[0, 2]] = True
    # The 7 least anomalous go to M (no harm there); m answers the 3 flagged ones and is
    # harmful on one of them (position 2); its harm at position 0 does not count.
    assert fallback_risk(perfect, harm, fallback, 0.7) == 0.1
    assert fallback_risk(perfect, harm, fallback, 1.0) == harm.mean()
    assert fallback_risk(perfect, harm, fallback, 0.0) == fallback.mean()
    estimate = risk_estimate(perfect, harm, 0.7, resamples=200)
    assert estimate.value == 0.0 and estimate.low <= estimate.high
