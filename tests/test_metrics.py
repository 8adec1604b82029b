"""gensamp.metrics against scipy and brute force, plus their error handling."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st
import torch
from gensamp import GaussianMixture
from gensamp import metrics as M
from hypothesis import given, settings
from hypothesis import strategies as hs
from hypothesis.extra.numpy import arrays

finite = hs.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)
samples = arrays(np.float64, hs.integers(1, 40), elements=finite)


def _scipy_ks(x, y):
    """scipy's KS statistic; its p-value code warns on degenerate samples (n = 1, ties), which
    says nothing about the statistic we compare, so warnings are silenced for this call only."""
    import warnings

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return st.ks_2samp(x, y).statistic


@given(samples, samples)
@settings(max_examples=60, deadline=None)
def test_1d_distances_match_scipy(x, y):
    assert M.wasserstein_1d(x, y) == pytest.approx(
        st.wasserstein_distance(x, y), rel=1e-9, abs=1e-9
    )
    assert M.ks_statistic(x, y) == pytest.approx(_scipy_ks(x, y), abs=1e-12)
    assert M.energy_distance(x, y) == pytest.approx(st.energy_distance(x, y), rel=1e-7, abs=1e-7)


def test_1d_distances_with_ties_and_sizes():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 300).astype(float)
    y = rng.normal(2, 1, 1000).round(1)
    assert M.wasserstein_1d(x, y) == pytest.approx(st.wasserstein_distance(x, y), rel=1e-12)
    assert M.ks_statistic(x, y) == pytest.approx(_scipy_ks(x, y), abs=1e-12)
    assert M.energy_distance(x[:, None], y[:, None]) == pytest.approx(
        st.energy_distance(x, y), rel=1e-10
    )


def test_wasserstein_properties():
    rng = np.random.default_rng(1)
    x = rng.normal(size=500)
    assert M.wasserstein_1d(x, x) == 0.0
    assert M.wasserstein_1d(x, x + 2.5) == pytest.approx(2.5, rel=1e-12)
    assert M.wasserstein_1d(torch.tensor(x), x[::-1]) == 0.0  # order and type do not matter
    assert M.ks_statistic(x, x + 100) == 1.0


def _energy_brute(x, y):
    def md(a, b):
        return np.mean(np.linalg.norm(a[:, None] - b[None], axis=2))

    return np.sqrt(2 * md(x, y) - md(x, x) - md(y, y))


def test_energy_distance_multivariate():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(150, 3)), rng.normal(0.5, 1.2, size=(90, 3))
    e = M.energy_distance(x, y, chunk=7)
    assert e == pytest.approx(_energy_brute(x, y), rel=1e-9)
    assert M.energy_distance(x, y, chunk=1000) == pytest.approx(e, rel=1e-12)
    Q = np.linalg.qr(rng.normal(size=(3, 3)))[0]  # rotation invariance
    assert M.energy_distance(x @ Q, y @ Q) == pytest.approx(e, rel=1e-9)
    assert M.energy_distance(x, x) == pytest.approx(0.0, abs=1e-6)


@pytest.fixture
def mix():
    return GaussianMixture([0.2, 0.8], [[-5, -5], [5, 5]], stds=[1.0, 1.0])


def test_mode_weights_and_far(mix):
    x = mix.sample(20_000, seed=0)
    w = M.mode_weights(x, mix)
    np.testing.assert_allclose(w, [0.2, 0.8], atol=0.012)
    assert M.mode_weight_error(x, mix) == pytest.approx(np.max(np.abs(w - [0.2, 0.8])))
    assert M.far_from_modes(x, mix) < 1e-3
    between = np.zeros((100, 2))  # 7 std from both modes
    assert M.far_from_modes(between, mix) == 1.0
    assert M.far_from_modes(between, mix, n_std=8.0) == 0.0
    half = np.concatenate([x[:100], between])
    assert M.far_from_modes(half, mix) == pytest.approx(0.5, abs=0.01)


def test_mode_weights_full_covariance():
    m = GaussianMixture([1, 1], [[0, 0], [6, 0]], covs=[[[1, 0.5], [0.5, 1]], [[2, 0], [0, 0.5]]])
    x = m.sample(10_000, seed=1)
    np.testing.assert_allclose(M.mode_weights(x, m), [0.5, 0.5], atol=0.02)
    assert M.far_from_modes(x, m) < 1e-3


def test_score_error(mix):
    x = mix.sample(2000, seed=3)
    assert M.score_error(mix, mix, x) == 0.0
    shifted = GaussianMixture([0.2, 0.8], [[-5, -5], [5.5, 5]], stds=[1.0, 1.0])
    # a shift of 0.5 in one coordinate of the heavy mode: error 0.25 on ~80% of points
    assert M.score_error(shifted, mix, x) == pytest.approx(0.25 * 0.8, abs=0.03)
    rel = M.score_error(shifted, mix, x, relative=True)
    assert rel == pytest.approx(
        M.score_error(shifted, mix, x) / np.mean(np.sum(mix.score(x) ** 2, 1))
    )
    # callables and noise levels: the score of N(0, (1 + s^2) I) mixture components
    err = M.score_error(lambda p, s: mix.score(p, s), mix, x, sigma=0.7)
    assert err == 0.0
    assert M.score_error(lambda p: torch.tensor(mix.score(p)), mix, x) == pytest.approx(
        0.0, abs=1e-12
    )


def test_metric_errors(mix):
    with pytest.raises(ValueError, match="1-D samples"):
        M.wasserstein_1d(np.zeros((5, 2)), np.zeros(5))
    with pytest.raises(ValueError, match="NaN or Inf"):
        M.ks_statistic([1.0, np.nan], [1.0])
    with pytest.raises(ValueError, match="empty"):
        M.wasserstein_1d([], [1.0])
    with pytest.raises(TypeError, match="real numbers"):
        M.energy_distance(["a"], ["b"])
    with pytest.raises(ValueError, match="d=2 columns"):
        M.energy_distance(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="chunk"):
        M.energy_distance(np.zeros((3, 2)), np.zeros((3, 2)), chunk=0)
    with pytest.raises(TypeError, match="GaussianMixture"):
        M.mode_weights(np.zeros((3, 2)), "mixture")
    with pytest.raises(ValueError, match="d=2"):
        M.mode_weights(np.zeros((3, 3)), mix)
    with pytest.raises(ValueError, match="n_std"):
        M.far_from_modes(np.zeros((3, 2)), mix, n_std=-1)
    with pytest.raises(TypeError, match=r"\.score"):
        M.score_error(3, mix, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="shape"):
        M.score_error(lambda p: np.zeros((3, 1)), mix, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="sigma"):
        M.score_error(mix, mix, np.zeros((3, 2)), sigma=0)
    with pytest.raises(ValueError, match="NaN or Inf scores"):
        M.score_error(lambda p: np.full((3, 2), np.nan), mix, np.zeros((3, 2)))


# ---- data without a known density: MMD, nearest-neighbour ratio, classifier, baseline ----


def _gauss_mmd2(h, s1, s2, delta):
    """Population RBF-MMD^2 between N(0, s1^2) and N(delta, s2^2) in 1D: E exp(-Z^2 / (2 h^2))
    for Z ~ N(m, v) is h / sqrt(h^2 + v) * exp(-m^2 / (2 (h^2 + v)))."""

    def ek(m, v):
        return h / np.sqrt(h * h + v) * np.exp(-(m**2) / (2 * (h * h + v)))

    return ek(0, 2 * s1**2) + ek(0, 2 * s2**2) - 2 * ek(delta, s1**2 + s2**2)


def _mmd_brute(x, y, h):
    def k(a, b):
        return np.exp(-np.sum((a[:, None] - b[None]) ** 2, axis=2) / (2 * h * h))

    n, m = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return (
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * k(x, y).mean()
    )


def test_rbf_bandwidth_is_the_median_pair_distance():
    assert M.rbf_bandwidth([[0.0], [1.0], [3.0]]) == 2.0  # pairs 1, 3, 2
    # an even number of pairs (1, 3, 7, 2, 6, 4): the mean of the middle distances 3 and 4
    assert M.rbf_bandwidth([0.0, 1.0, 3.0, 7.0]) == 3.5
    assert M.rbf_bandwidth([[0.0, 0.0], [3.0, 4.0]]) == 5.0
    # 3,000 points: the seeded 2,000-point subsample. For X, X' ~ N(0, I_2), |X - X'| is
    # Rayleigh with scale sqrt(2), median sqrt(2) * sqrt(2 ln 2).
    y = np.random.default_rng(0).normal(size=(3000, 2))
    h = M.rbf_bandwidth(y)
    assert h == pytest.approx(np.sqrt(2) * np.sqrt(2 * np.log(2)), rel=0.03)
    assert M.rbf_bandwidth(y) == h  # reproducible
    with pytest.raises(ValueError, match="median distance.*is 0"):
        M.rbf_bandwidth([[1.0, 2.0]] * 4 + [[0.0, 0.0]])
    with pytest.raises(ValueError, match="at least 2 rows"):
        M.rbf_bandwidth([[1.0, 2.0]])


def test_mmd_hand_case_and_brute_force():
    # x = {0, 1}, y = {0, 2}: the pair terms give e^{-a} + e^{-4a} - (1 + e^{-4a} + 2e^{-a})/2
    # with a = 1 / (2 h^2), i.e. (e^{-4a} - 1) / 2.
    for h in (1.0, 2.0):
        got = M.mmd_rbf([[0.0], [1.0]], [[0.0], [2.0]], bandwidth=h)
        assert got == pytest.approx((np.exp(-2 / h**2) - 1) / 2, rel=1e-12)
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(37, 5)), rng.normal(0.3, 1.1, size=(23, 5))
    ref = _mmd_brute(x, y, 1.7)
    assert M.mmd_rbf(x, y, bandwidth=1.7, chunk=4) == pytest.approx(ref, rel=1e-10)
    assert M.mmd_rbf(x, y, bandwidth=1.7) == pytest.approx(ref, rel=1e-10)
    # the default bandwidth is the reference set's median heuristic, not the samples'
    assert M.mmd_rbf(x, y) == pytest.approx(_mmd_brute(x, y, M.rbf_bandwidth(y)), rel=1e-10)
    assert M.mmd_rbf(x, y) != pytest.approx(_mmd_brute(x, y, M.rbf_bandwidth(x)), rel=1e-6)
    # rotating and scaling both sets together changes nothing: the bandwidth scales along
    Q = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    assert M.mmd_rbf(3 * x @ Q, 3 * y @ Q) == pytest.approx(M.mmd_rbf(x, y), rel=1e-9)


def test_mmd_identical_and_shifted_sets():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(500, 3))
    same = M.mmd_rbf(x, x, bandwidth=2.0)
    # x against itself: the off-diagonal mean S/(n(n-1)) twice, minus twice the full mean
    # (S + n)/n^2 whose diagonal holds n ones: 2 (S/(n-1) - n) / n^2 exactly, negative.
    k = np.exp(-np.sum((x[:, None] - x[None]) ** 2, axis=2) / 8.0)
    off = k.sum() - np.trace(k)
    assert same == pytest.approx(2 * (off / 499 - 500) / 500**2, rel=1e-9)
    assert -0.01 < same < 0

    def pop(shift):
        # N(0, I_3) against N(shift, I_3): E exp(-|Z|^2 / (2 h^2)) for Z ~ N(m, v I_d) is
        # (h^2 / (h^2 + v))^(d/2) exp(-|m|^2 / (2 (h^2 + v))), with h = 2, v = 2, d = 3.
        return 2 * (4 / 6) ** 1.5 * (1 - np.exp(-3 * shift**2 / 12))

    y = rng.normal(size=(500, 3))
    for shift in (0.0, 0.3, 1.0):
        assert M.mmd_rbf(x + shift, y, bandwidth=2.0) == pytest.approx(pop(shift), abs=0.008)
    assert M.mmd_rbf(x + 1.0, y) > M.mmd_rbf(x + 0.5, y) > M.mmd_rbf(x, y)


def test_mmd_is_unbiased_against_the_closed_form():
    rng = np.random.default_rng(6)
    # Large samples: the estimate sits on the population value.
    x, y = rng.normal(size=3000), rng.normal(1.0, 1.5, size=3000)
    pop = _gauss_mmd2(1.0, 1.0, 1.5, 1.0)
    assert M.mmd_rbf(x, y, bandwidth=1.0) == pytest.approx(pop, abs=0.01)
    # Tiny samples, many repetitions: the mean is the population value (0 for one
    # distribution, 0.177 for a shift of 1) where the biased V-statistic would add
    # (2 - 2/sqrt(3)) / 10 = 0.085.
    for delta in (0.0, 1.0):
        est = [
            M.mmd_rbf(rng.normal(size=10), rng.normal(delta, 1.0, size=10), bandwidth=1.0)
            for _ in range(400)
        ]
        assert np.mean(est) == pytest.approx(_gauss_mmd2(1.0, 1.0, 1.0, delta), abs=0.025)


def test_nearest_neighbour_ratio_constructed():
    g = np.arange(10.0)
    train = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)  # unit grid: 100 points
    step = np.array([1.0, 0.0])
    test = train + 0.3 * step  # every test point 0.3 from its train point
    r = M.nearest_neighbour_ratio(train.copy(), train, test)
    assert (r.ratio, r.near_copies, r.sample_median) == (0.0, 1.0, 0.0)  # exact copies
    assert r.test_median == pytest.approx(0.3)
    # half the samples 0.1 from a train point (near copies: < 0.15), half 0.45 away
    samples = np.concatenate([train[:50] + 0.1 * step, train[50:] - 0.45 * step])
    r = M.nearest_neighbour_ratio(samples, train, test, chunk=7)
    assert r.near_copies == 0.5
    assert r.sample_median == pytest.approx((0.1 + 0.45) / 2)
    assert r.ratio == pytest.approx(0.275 / 0.3)
    r = M.nearest_neighbour_ratio(train + 0.6 * step[::-1] + 0.3, train, test)
    assert r.near_copies == 0.0 and r.ratio > 1  # off the grid points
    with pytest.raises(ValueError, match="no scale"):
        M.nearest_neighbour_ratio(samples, train, np.concatenate([train, test[:10]]))
    with pytest.raises(ValueError, match="d=2 columns"):
        M.nearest_neighbour_ratio(samples, train, np.zeros((3, 3)))


class _SignClassifier:
    """Class 1 where x_0 > 0, with probability 0.8 (0.6 where |x_0| < 1); a judge whose every
    number can be worked out by hand."""

    classes_ = np.array([0, 1])

    def predict_proba(self, x):
        p1 = np.where(x[:, 0] > 0, 0.8, 0.2)
        p1 = np.where(np.abs(x[:, 0]) < 1, np.where(x[:, 0] > 0, 0.6, 0.4), p1)
        return np.stack([1 - p1, p1], axis=1)


def test_classifier_report_constructed():
    samples = np.array([[2.0], [0.5], [-3.0], [5.0]])  # classes 1, 1, 0, 1
    test = np.array([[-2.0], [2.0]])
    r = M.classifier_report(
        samples, _SignClassifier(), train_labels=[0, 0, 0, 1], test=test, test_labels=[0, 0]
    )
    assert r.classes == (0, 1)
    assert r.class_shares == (0.25, 0.75)
    assert r.train_shares == (0.75, 0.25)
    assert r.max_share_deviation == 0.5
    assert r.test_max_share_deviation == 0.25  # test assigned (0.5, 0.5)
    assert r.confidence == pytest.approx((0.8 + 0.6 + 0.8 + 0.8) / 4)
    assert r.test_confidence == pytest.approx(0.8)
    assert r.test_accuracy == 0.5
    r2 = M.classifier_report(samples, _SignClassifier(), train_labels=[0, 1], test=test)
    assert r2.test_accuracy is None and r2.max_share_deviation == 0.25


def test_classifier_errors():
    clf = _SignClassifier()
    x = np.zeros((3, 1))
    with pytest.raises(TypeError, match="predict_proba"):
        M.classifier_report(x, object(), train_labels=[0, 1], test=x)
    with pytest.raises(ValueError, match="does not know: \\[7\\]"):
        M.classifier_report(x, clf, train_labels=[0, 7], test=x)
    with pytest.raises(TypeError, match="integers or strings"):
        M.classifier_report(x, clf, train_labels=[0.0, 1.0], test=x)
    with pytest.raises(ValueError, match="shape \\(3,\\)"):
        M.classifier_report(x, clf, train_labels=[0, 1], test=x, test_labels=[0, 1])
    with pytest.raises(ValueError, match="non-empty"):
        M.classifier_report(x, clf, train_labels=[], test=x)

    class Wrong(_SignClassifier):
        def predict_proba(self, x):
            return np.zeros((len(x), 3))

    with pytest.raises(ValueError, match="one column per entry"):
        M.classifier_report(x, Wrong(), train_labels=[0, 1], test=x)
    with pytest.raises(ValueError, match="at least 2 distinct classes"):
        M.fit_classifier(np.eye(3), [1, 1, 1])
    with pytest.raises(ValueError, match="shape \\(3,\\)"):
        M.fit_classifier(np.eye(3), [0, 1])


def test_fit_classifier_separates_labelled_blobs():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
    labels = np.array(["a"] * 100 + ["b"] * 100)  # string class names work too
    clf = M.fit_classifier(x, labels, seed=0)
    assert list(clf.classes_) == ["a", "b"]
    r = M.classifier_report(x, clf, train_labels=labels, test=x, test_labels=labels)
    assert r.test_accuracy == 1.0 and r.confidence > 0.95


def test_gmm_baseline_draws_from_the_fitted_mixture():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(8)
    blobs = np.concatenate([rng.normal(-10, 1, (300, 2)), rng.normal(10, 1, (100, 2))])
    s = M.gmm_baseline(blobs, 4000, n_components=2, seed=3, reg_covar=1e-6)
    assert s.shape == (4000, 2) and s.dtype == np.float64
    right = s[:, 0] > 0
    assert right.mean() == pytest.approx(0.25, abs=0.02)  # the blobs' weights
    assert right[:1000].mean() == pytest.approx(0.25, abs=0.04)  # shuffled, not grouped
    # the fitted component is the blob's own mean and covariance (separated blobs)
    blob = blobs[blobs[:, 0] > 0]
    assert s[right].mean(axis=0) == pytest.approx(blob.mean(axis=0), abs=0.1)
    assert s[right].std(axis=0) == pytest.approx(blob.std(axis=0), rel=0.08)
    again = M.gmm_baseline(blobs, 4000, n_components=2, seed=3, reg_covar=1e-6)
    np.testing.assert_array_equal(s, again)
    other = M.gmm_baseline(blobs, 4000, n_components=2, seed=4, reg_covar=1e-6)
    assert not np.array_equal(s, other)
    # reg_covar adds to the fitted variances
    wide = M.gmm_baseline(blobs, 4000, n_components=2, seed=3, reg_covar=3.0)
    assert wide[wide[:, 0] > 0].std(axis=0) == pytest.approx(
        np.sqrt(blob.var(axis=0) + 3.0), rel=0.08
    )
    with pytest.raises(ValueError, match="exceeds the 400 train points"):
        M.gmm_baseline(blobs, 10, n_components=401)
    with pytest.raises(ValueError, match="reg_covar"):
        M.gmm_baseline(blobs, 10, reg_covar=0.0)
    with pytest.raises(ValueError, match="n must be"):
        M.gmm_baseline(blobs, 0)


def test_report_collects_every_metric_next_to_its_floor():
    import json

    pytest.importorskip("sklearn")
    rng = np.random.default_rng(9)
    train, test = rng.normal(size=(300, 3)), rng.normal(size=(100, 3))
    samples = rng.normal(0.5, 1.0, size=(200, 3))
    r = M.report(samples, train, test)
    h = M.rbf_bandwidth(test)
    nn = M.nearest_neighbour_ratio(samples, train, test)
    assert r["bandwidth"] == h
    assert r["energy_distance"] == M.energy_distance(samples, test)
    assert r["energy_distance_floor"] == M.energy_distance(train, test)
    assert r["mmd"] == M.mmd_rbf(samples, test, bandwidth=h)
    assert r["mmd_floor"] == M.mmd_rbf(train, test, bandwidth=h)
    assert (r["nn_ratio"], r["near_copies"]) == (nn.ratio, nn.near_copies)
    assert r["nn_ratio"] > 1 and r["mmd"] > r["mmd_floor"]  # the shifted samples
    assert (r["n_samples"], r["n_train"], r["n_test"]) == (200, 300, 100)
    assert "confidence" not in r
    yt, ys = (train[:, 0] > 0).astype(int), (test[:, 0] > 0).astype(int)
    r = M.report(samples, train, test, train_labels=yt, test_labels=ys)
    assert r["test_accuracy"] > 0.9 and r["classes"] == [0, 1]
    assert r["class_shares"][1] > r["train_shares"][1]  # the samples lean to x_0 > 0
    json.dumps(r)  # plain numbers only
    r2 = M.report(samples, train, test, train_labels=yt, classifier=_SignClassifier())
    assert (
        r2["confidence"]
        == M.classifier_report(samples, _SignClassifier(), train_labels=yt, test=test).confidence
    )
    with pytest.raises(ValueError, match="needs train_labels"):
        M.report(samples, train, test, classifier=_SignClassifier())
    with pytest.raises(ValueError, match="needs train_labels"):
        M.report(samples, train, test, test_labels=ys)
    with pytest.raises(ValueError, match="d=3 columns"):
        M.report(samples, train[:, :2], test)


def test_image_metric_errors():
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="at least 2 rows for the unbiased"):
        M.mmd_rbf(x[:1], x, bandwidth=1.0)
    with pytest.raises(ValueError, match="bandwidth"):
        M.mmd_rbf(x, x, bandwidth=-1.0)
    with pytest.raises(TypeError, match="bandwidth"):
        M.mmd_rbf(x, x, bandwidth="wide")
    with pytest.raises(ValueError, match="d=2 columns"):
        M.mmd_rbf(x, np.zeros((3, 3)), bandwidth=1.0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        M.mmd_rbf([[np.nan, 0.0], [0.0, 0.0]], x, bandwidth=1.0)
    with pytest.raises(ValueError, match="chunk"):
        M.nearest_neighbour_ratio(x, x + 1, x, chunk=0)
