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
