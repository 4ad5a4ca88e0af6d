"""Detectors on synthetic features: planted anomalies are found, noise is not, the
statistics equal direct formulas, fitted detectors survive a save/load round trip, and bad
input is one clear error."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from leelalab.anomaly.detectors import Detector, RunningMoments, detector_names, make_detector
from leelalab.anomaly.errors import AnomalyError
from leelalab.anomaly.features import FeatureStore, FeatureView, write_features
from leelalab.runs.experiment import SettingsError
from leelalab.stats import detection_metrics

HOOK = "blocks.0.hook_resid_post"
D = 6


def _store(tmp_path, activations: np.ndarray, **extra) -> FeatureStore:
    path = write_features(tmp_path / "features.h5", {HOOK: activations}, **extra)
    return FeatureStore(path)


def _planted(n_trusted=300, n_pool=200, n_test=200, shift=1.5, seed=0, planted=True):
    """Correlated Gaussian square vectors; anomalies shifted along a few directions on a
    quarter of their squares (so the per-square mean still sees them)."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(D, D))
    n = n_trusted + n_pool + n_test
    x = rng.normal(size=(n, 64, D)) @ mixing
    labels = np.zeros(n, dtype=bool)
    for start, size in ((n_trusted, n_pool), (n_trusted + n_pool, n_test)):
        anomalous = start + np.arange(size // 2)
        labels[anomalous] = True
        if planted:
            x[anomalous, :16, :2] += shift * np.abs(mixing).sum()
    splits = (
        np.arange(n_trusted),
        np.arange(n_trusted, n_trusted + n_pool),
        np.arange(n_trusted + n_pool, n),
    )
    return x.astype(np.float32), labels, splits


ACTIVATION_DETECTORS = [
    "mahalanobis",
    "relative-mahalanobis",
    "que",
    "spectral",
    "isolation-forest",
    "lof",
    "probe",
]


@pytest.mark.parametrize("name", ACTIVATION_DETECTORS)
def test_planted_shift_is_found(tmp_path, name) -> None:
    x, labels, (trusted, pool, test) = _planted()
    store = _store(tmp_path, x)
    detector = make_detector(name)
    detector.fit(FeatureView(store, trusted), FeatureView(store, pool, labels=labels[pool]))
    scores = detector.score(FeatureView(store, test))[HOOK]
    assert detection_metrics(labels[test], scores, resamples=200)["auroc"].value > 0.95


@pytest.mark.parametrize("name", ACTIVATION_DETECTORS)
def test_pure_noise_is_not_found(tmp_path, name) -> None:
    x, labels, (trusted, pool, test) = _planted(planted=False, seed=3, n_test=400)
    store = _store(tmp_path, x)
    detector = make_detector(name)
    detector.fit(FeatureView(store, trusted), FeatureView(store, pool, labels=labels[pool]))
    scores = detector.score(FeatureView(store, test))[HOOK]
    # A 99% interval: a 95% one would miss 0.5 in one run in twenty by construction.
    auroc = detection_metrics(labels[test], scores, resamples=500, level=0.99)["auroc"]
    assert auroc.covers(0.5), auroc


def test_running_moments_equal_numpy() -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(size=(1000, 5)) * [1, 2, 3, 4, 5] + 7
    moments = RunningMoments(5)
    for block in np.array_split(data, [3, 100, 101, 640]):
        moments.update(block)
    np.testing.assert_allclose(moments.mean, data.mean(0), rtol=1e-12)
    np.testing.assert_allclose(moments.covariance, np.cov(data.T), rtol=1e-10)


def test_mahalanobis_and_relative_equal_direct_formula(tmp_path) -> None:
    x, _, (trusted, _, test) = _planted(n_trusted=50, n_pool=2, n_test=10)
    store = _store(tmp_path, x)
    tokens = x[trusted].reshape(-1, D).astype(np.float64)
    mean, covariance = tokens.mean(0), np.cov(tokens.T)
    precision = np.linalg.inv(covariance)
    for name in ("mahalanobis", "relative-mahalanobis"):
        detector = make_detector(name).fit(FeatureView(store, trusted))
        scores = detector.score(FeatureView(store, test))[HOOK]
        expected = []
        for position in x[test].astype(np.float64):
            delta = position - mean
            distance = np.einsum("si,ij,sj->s", delta, precision, delta)
            if name == "relative-mahalanobis":
                distance -= (delta**2 / np.diag(covariance)).sum(1)
            expected.append(distance.mean() / D)
        np.testing.assert_allclose(scores, expected, rtol=1e-8)


def test_que_equals_direct_formula(tmp_path) -> None:
    x, _, (trusted, pool, test) = _planted(n_trusted=50, n_pool=30, n_test=10)
    store = _store(tmp_path, x)
    detector = make_detector("que", alpha=4.0)
    detector.fit(FeatureView(store, trusted), FeatureView(store, pool))
    scores = detector.score(FeatureView(store, test))[HOOK]
    tokens = x[trusted].reshape(-1, D).astype(np.float64)
    mean = tokens.mean(0)
    # Whitening by the inverse square root of the trusted covariance (any W with
    # Wᵀ Σ W = I gives the same score up to rotation, which the formula is invariant to).
    whitening = scipy.linalg.sqrtm(np.linalg.inv(np.cov(tokens.T))).real
    pool_tokens = (x[pool].reshape(-1, D) - mean) @ whitening
    centred = pool_tokens - pool_tokens.mean(0)
    batch = centred.T @ centred
    entropy = scipy.linalg.expm(4.0 * batch / np.linalg.norm(batch, 2))
    expected = [
        np.einsum("si,ij,sj->s", (p - mean) @ whitening, entropy, (p - mean) @ whitening).mean()
        for p in x[test].astype(np.float64)
    ]
    np.testing.assert_allclose(scores, expected, rtol=1e-7)


@pytest.mark.parametrize(
    "name", ["mahalanobis", "que", "spectral", "isolation-forest", "lof", "probe"]
)
def test_save_and_load_give_the_same_scores(tmp_path, name) -> None:
    x, labels, (trusted, pool, test) = _planted(n_trusted=60, n_pool=40, n_test=20)
    store = _store(tmp_path, x)
    detector = make_detector(name).fit(
        FeatureView(store, trusted), FeatureView(store, pool, labels=labels[pool])
    )
    detector.save(tmp_path / "saved")
    assert not list((tmp_path / "saved").glob("*.pkl"))
    loaded = Detector.load(tmp_path / "saved")
    view = FeatureView(store, test)
    np.testing.assert_allclose(loaded.score(view)[HOOK], detector.score(view)[HOOK], rtol=1e-12)
    assert loaded.calibration == detector.calibration


def test_aggregation_standardises_layers(tmp_path) -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(120, 64, 3)).astype(np.float32)
    path = write_features(tmp_path / "f.h5", {"a": x, "b": 10 * x + 3})
    store = FeatureStore(path)
    detector = make_detector("mahalanobis").fit(FeatureView(store, np.arange(100)))
    scores = detector.score(FeatureView(store, np.arange(100, 120)))
    assert set(scores) == {"a", "b"}
    # Mahalanobis is affine invariant, so both layers give the same scores, and so do the
    # standardised mean and max.
    np.testing.assert_allclose(scores["a"], scores["b"], rtol=1e-6)
    mean, top = detector.aggregate(scores, "mean"), detector.aggregate(scores, "max")
    np.testing.assert_allclose(mean, top, rtol=1e-6)
    with pytest.raises(AnomalyError, match="mean' or 'max"):
        detector.aggregate(scores, "median")  # type: ignore[arg-type]


def test_lens_and_distillation_detectors_read_their_arrays(tmp_path) -> None:
    rng = np.random.default_rng(2)
    n = 200
    labels = np.arange(n) % 2 == 1
    lens = rng.exponential(size=(n, 2)).astype(np.float32)
    lens[labels, 1] += 3
    activations = {h: rng.normal(size=(n, 64, 2)).astype(np.float32) for h in ("h0", "h1")}
    path = write_features(tmp_path / "f.h5", activations, lens_kl=lens, lens_hooks=["h0", "h1"])
    store = FeatureStore(path)
    kl = rng.exponential(size=n) + 2 * labels
    references = {"weak": {"kl": kl, "dq": rng.random(n)}}
    trusted = FeatureView(store, np.flatnonzero(~labels)[:50], references=references)
    test = FeatureView(store, np.arange(100, 200), labels=labels[100:], references=references)
    lens_detector = make_detector("logit-lens").fit(trusted)
    scores = lens_detector.score(test)
    np.testing.assert_array_equal(scores["h1"], lens[100:, 1])  # the stored values, read back
    assert detection_metrics(labels[100:], scores["h1"])["auroc"].value > 0.95
    weak = make_detector("weak-kl").fit(trusted)
    np.testing.assert_array_equal(weak.score(test)["output"], kl[100:])
    with pytest.raises(AnomalyError, match="student"):
        make_detector("student-kl").fit(trusted)


def test_bad_input_is_one_clear_error(tmp_path) -> None:
    x, labels, (trusted, pool, _) = _planted(n_trusted=40, n_pool=10, n_test=10)
    store = _store(tmp_path, x)
    with pytest.raises(AnomalyError, match="unknown detector 'mahalanobi'.*mahalanobis"):
        make_detector("mahalanobi")
    with pytest.raises(AnomalyError, match="unknown layer"):
        make_detector("mahalanobis", layers=["blocks.9.hook_resid_post"]).fit(
            FeatureView(store, trusted)
        )
    # Two positions give 128 square vectors: too few for a trustworthy 6x6 covariance? No:
    # one position (64 vectors) of dimension 40 is.
    wide = np.random.default_rng(0).normal(size=(3, 64, 40)).astype(np.float32)
    wide_store = FeatureStore(write_features(tmp_path / "wide.h5", {HOOK: wide}))
    with pytest.raises(AnomalyError, match="too few trusted samples.*shrinkage"):
        make_detector("mahalanobis").fit(FeatureView(wide_store, np.arange(1)))
    shrunk = make_detector("mahalanobis", shrinkage=0.2).fit(FeatureView(wide_store, np.arange(1)))
    assert np.isfinite(shrunk.score(FeatureView(wide_store, np.arange(1, 3)))[HOOK]).all()
    with pytest.raises(AnomalyError, match="pool"):
        make_detector("que").fit(FeatureView(store, trusted))
    with pytest.raises(AnomalyError, match="labels"):
        make_detector("probe").fit(FeatureView(store, trusted), FeatureView(store, pool))
    with pytest.raises(AnomalyError, match="fit the detector"):
        make_detector("mahalanobis").score(FeatureView(store, trusted))


def test_every_registered_detector_is_documented() -> None:
    from leelalab.anomaly.detectors import detector_class

    for name in detector_names():
        assert detector_class(name).description, name


def test_max_over_squares_finds_an_anomaly_on_one_square(tmp_path) -> None:
    """A shift on a single square is diluted 1:64 by the mean over squares, not by the max."""
    rng = np.random.default_rng(9)
    x = rng.normal(size=(500, 64, D)).astype(np.float32)
    labels = np.zeros(500, dtype=bool)
    labels[400::2] = True
    x[labels, 12, 0] += 6.0
    store = _store(tmp_path, x)
    trusted, test = FeatureView(store, np.arange(300)), FeatureView(store, np.arange(400, 500))
    mean = make_detector("mahalanobis").fit(trusted).score(test)[HOOK]
    top = make_detector("mahalanobis", squares="max").fit(trusted).score(test)[HOOK]
    top_auroc = detection_metrics(labels[400:], top)["auroc"].value
    assert top_auroc > 0.95
    assert detection_metrics(labels[400:], mean)["auroc"].value < top_auroc
    # An unknown reduction is refused when the detector is made, before any fit.
    with pytest.raises(SettingsError, match="--squares must be one of mean, max"):
        make_detector("mahalanobis", squares="median")
    with pytest.raises(AnomalyError, match="unknown setting"):
        make_detector("mahalanobis", squars="max")


def test_detectors_take_their_settings_from_a_run_by_field_name() -> None:
    from leelalab.anomaly.detectors import detector_class
    from leelalab.anomaly.settings import RunSettings

    run = RunSettings(shrinkage=0.25, squares="max", seed=7)
    assert detector_class("que").settings_from(run).shrinkage == 0.25
    assert detector_class("que").settings_from(run).squares == "max"
    assert detector_class("isolation-forest").settings_from(run).seed == 7
    assert detector_class("lof").settings_from(run).max_samples == 5_000
    probe = detector_class("probe").settings_from(run)
    assert not hasattr(probe, "seed") and not hasattr(probe, "squares")
