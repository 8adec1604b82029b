"""Sample-quality metrics: exact 1D Wasserstein-1 and KS, energy distance in any d, mixture
mode weights, the fraction of samples far from every mode, and score error against a known
true score.

Distances between samples are computed exactly on the empirical distributions (no binning,
no subsampling), in float64. 1D results match ``scipy.stats.wasserstein_distance``,
``scipy.stats.ks_2samp(...).statistic`` and ``scipy.stats.energy_distance``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ._validate import _from_torch, as_array, as_int, as_pos_float
from .mixture import GaussianMixture

__all__ = [
    "energy_distance",
    "far_from_modes",
    "ks_statistic",
    "mode_weight_error",
    "mode_weights",
    "score_error",
    "wasserstein_1d",
]


def _samples(a: Any, name: str, d: int | None = None) -> np.ndarray:
    """Samples as float64 [n, d]: datasets.as_array's conversion and checks, plus the width."""
    arr = as_array(a, name, min_rows=1)
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"{name} must have d={d} columns, got {arr.shape[1]}")
    return arr


def _one_d(a: Any, name: str) -> np.ndarray:
    arr = _samples(a, name)
    if arr.shape[1] != 1:
        raise ValueError(f"{name} must be 1-D samples ([n] or [n, 1]), got shape {arr.shape}")
    return np.sort(arr[:, 0])


def _cdfs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both empirical CDFs on the merged sorted support, and the gaps between its points."""
    allv = np.sort(np.concatenate([x, y]))
    fx = np.searchsorted(x, allv[:-1], side="right") / x.size
    fy = np.searchsorted(y, allv[:-1], side="right") / y.size
    return fx, fy, np.diff(allv)


def wasserstein_1d(x: Any, y: Any) -> float:
    """Exact Wasserstein-1 distance between two 1-D empirical distributions,
    W1 = integral |F_x(t) - F_y(t)| dt (sample sizes may differ)."""
    x, y = _one_d(x, "x"), _one_d(y, "y")
    fx, fy, gaps = _cdfs(x, y)
    return float(np.sum(np.abs(fx - fy) * gaps))


def ks_statistic(x: Any, y: Any) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup_t |F_x(t) - F_y(t)| (1-D)."""
    x, y = _one_d(x, "x"), _one_d(y, "y")
    allv = np.concatenate([x, y])
    fx = np.searchsorted(x, allv, side="right") / x.size
    fy = np.searchsorted(y, allv, side="right") / y.size
    return float(np.max(np.abs(fx - fy)))


def _mean_dist(a: np.ndarray, b: np.ndarray, chunk: int) -> float:
    """Mean Euclidean distance over all pairs (a_i, b_j), computed in row chunks to bound
    memory at about chunk * len(b) doubles."""
    total = 0.0
    bb = np.sum(b * b, axis=1)
    for i in range(0, a.shape[0], chunk):
        ai = a[i : i + chunk]
        # Expanding |a-b|^2 is one matrix product; clip the small negatives its rounding makes.
        sq = np.sum(ai * ai, axis=1)[:, None] + bb[None, :] - 2.0 * ai @ b.T
        total += float(np.sum(np.sqrt(np.maximum(sq, 0.0))))
    return total / (a.shape[0] * b.shape[0])


def energy_distance(x: Any, y: Any, *, chunk: int = 1024) -> float:
    """Energy distance sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|) between two empirical distributions
    in any dimension (Euclidean norm; V-statistics, i.e. scipy's convention in 1D).

    1-D input uses the exact CDF form sqrt(2 * integral (F_x - F_y)^2), O(n log n). In d > 1
    all pairs are visited (O(n m d) time, chunked memory): subsample very large sets first.
    """
    xa = _samples(x, "x")
    ya = _samples(y, "y", xa.shape[1])
    chunk = as_int(chunk, "chunk", 1)
    if xa.shape[1] == 1:
        fx, fy, gaps = _cdfs(np.sort(xa[:, 0]), np.sort(ya[:, 0]))
        return float(math.sqrt(2.0 * np.sum((fx - fy) ** 2 * gaps)))
    e2 = 2.0 * _mean_dist(xa, ya, chunk) - _mean_dist(xa, xa, chunk) - _mean_dist(ya, ya, chunk)
    return float(math.sqrt(max(e2, 0.0)))


def _mixture(m: Any) -> GaussianMixture:
    if not isinstance(m, GaussianMixture):
        raise TypeError(f"mixture must be a gensamp.GaussianMixture, got {type(m).__name__}")
    return m


def mode_weights(x: Any, mixture: GaussianMixture) -> np.ndarray:
    """Fraction of samples [K] assigned to each mixture component (highest responsibility,
    :meth:`GaussianMixture.component_of`); compare with ``mixture.weights``."""
    mix = _mixture(mixture)
    xa = _samples(x, "x", mix.dim)
    k = mix.component_of(xa)
    return np.bincount(k, minlength=mix.n_components) / xa.shape[0]


def mode_weight_error(x: Any, mixture: GaussianMixture) -> float:
    """max_k |recovered weight_k - true weight_k| (see :func:`mode_weights`)."""
    mix = _mixture(mixture)
    return float(np.max(np.abs(mode_weights(x, mix) - mix.weights)))


def far_from_modes(x: Any, mixture: GaussianMixture, n_std: float = 4.0) -> float:
    """Fraction of samples whose Mahalanobis distance to *every* component exceeds ``n_std``
    (spurious samples between or beyond the modes; about 1e-4 for exact samples in 1D/2D at
    the default 4)."""
    mix = _mixture(mixture)
    xa = _samples(x, "x", mix.dim)
    n_std = as_pos_float(n_std, "n_std")
    P = np.linalg.inv(mix.covariances)  # [K, d, d]
    diff = xa[:, None, :] - mix.means[None]  # [n, K, d]
    m2 = np.einsum("nki,kij,nkj->nk", diff, P, diff)
    return float(np.mean(np.all(m2 > float(n_std) ** 2, axis=1)))


def _score_of(model: Any, x: np.ndarray, sigma: float | None, name: str) -> np.ndarray:
    d = x.shape[1]
    if hasattr(model, "score") and callable(model.score):
        s = model.score(x) if sigma is None else model.score(x, sigma)
    elif callable(model):
        s = model(x) if sigma is None else model(x, sigma)
    else:
        raise TypeError(
            f"{name} must have a .score(x[, sigma]) method (Weights, GaussianMixture, gensamp "
            f"models) or be a callable x -> score, got {type(model).__name__}"
        )
    s = np.asarray(_from_torch(s), dtype=np.float64)
    if s.ndim == 1 and d == 1:
        s = s[:, None]
    if s.shape != x.shape:
        raise ValueError(f"{name} returned a score of shape {s.shape}, expected {x.shape}")
    return s


def score_error(
    model: Any, truth: Any, x: Any, *, sigma: float | None = None, relative: bool = False
) -> float:
    """Mean squared score error E_x ||s_model(x) - s_true(x)||^2 over the points x (data space).

    ``model`` and ``truth`` are anything with ``.score(x)`` / ``.score(x, sigma)`` returning
    [n, d] data-space scores (:class:`~gensamp.Weights`, :class:`~gensamp.GaussianMixture`,
    gensamp models) or a callable ``f(x[, sigma])``. ``sigma`` compares the noise-conditional
    scores at that level (the truth then is the mixture convolved with N(0, sigma^2 I)).
    ``relative=True`` divides by E||s_true(x)||^2.
    """
    xa = _samples(x, "x")
    if sigma is not None:
        if (
            isinstance(sigma, bool)
            or not isinstance(sigma, numbers.Real)
            or not (math.isfinite(sigma) and sigma > 0)
        ):
            raise ValueError(f"sigma must be finite and > 0, got {sigma!r}")
        sigma = float(sigma)
    s_model = _score_of(model, xa, sigma, "model")
    s_true = _score_of(truth, xa, sigma, "truth")
    if not np.all(np.isfinite(s_model)):
        raise ValueError("model returned NaN or Inf scores")
    err = float(np.mean(np.sum((s_model - s_true) ** 2, axis=1)))
    if relative:
        norm = float(np.mean(np.sum(s_true**2, axis=1)))
        if norm == 0:
            raise ValueError("the true score is zero on all points: relative error undefined")
        err /= norm
    return err
