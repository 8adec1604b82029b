"""Sampler schedules: the noise levels, step size and step count an NCSN stores as its
defaults, from the NCSNv2 rules (Song & Ermon 2020). Pure numpy: choosing a schedule never
needs torch. All quantities are in model coordinates (standardised data).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._validate import as_array, as_int, as_pos_float, as_sigmas
from .methods import _ncsnv2_eps

__all__ = ["ncsn_defaults", "schedule_for_sigmas"]


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _max_pairwise_distance(u: np.ndarray, exact_below: int = 4096, block: int = 4096) -> float:
    """Largest distance between two points. Exact for small sets; otherwise the largest
    distance from a candidate set (the 512 points farthest from the mean and the extremes of
    each coordinate, where a diameter's end points lie) to all points. Distances are taken in
    blocks of at most 512 x ``block`` pairs, so the working memory beyond the data is bounded
    (~50 MB) however many points there are."""
    n = u.shape[0]
    cand = np.arange(n)
    if n > exact_below:
        far = np.argsort(np.sum((u - u.mean(0)) ** 2, axis=1))[-512:]
        ext = np.concatenate([np.argmin(u, axis=0), np.argmax(u, axis=0)])
        cand = np.unique(np.concatenate([far, ext]))
    best = 0.0
    uu = np.sum(u * u, axis=1)
    for i in range(0, cand.size, 512):
        c = u[cand[i : i + 512]]
        cc = np.sum(c * c, axis=1)[:, None]
        for j in range(0, n, block):
            sq = cc + uu[None, j : j + block] - 2.0 * c @ u[j : j + block].T
            best = max(best, float(np.max(sq)))
    return math.sqrt(max(best, 0.0))


def _ncsnv2_ratio(d: int, max_ratio: float) -> float:
    """NCSNv2 technique 2: gamma = sigma_{i-1}/sigma_i with
    Phi(sqrt(2d)(gamma-1) + 3 gamma) - Phi(sqrt(2d)(gamma-1) - 3 gamma) = 1/2. For d <= 4 the
    left side stays above 1/2 for every gamma (the constraint never binds), so gamma is
    capped at max_ratio; the cap also applies to larger solutions."""
    c = math.sqrt(2.0 * d)

    def f(g: float) -> float:
        return _phi(c * (g - 1) + 3 * g) - _phi(c * (g - 1) - 3 * g) - 0.5

    if f(max_ratio) > 0:
        return max_ratio
    lo, hi = 1.0, max_ratio
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
    return 0.5 * (lo + hi)


def ncsn_defaults(
    u: Any,
    *,
    sigma_min: float = 0.03,
    T: int = 150,
    max_ratio: float = 1.3,
    sigma_max: float | None = None,
    n_levels: int | None = None,
) -> dict[str, Any]:
    """Noise schedule and sampler settings for an NCSN on data ``u`` (model coordinates),
    following Song & Ermon (2020), "Improved Techniques for Training Score-Based Generative
    Models" (NCSNv2), arXiv:2006.09011, adapted where low dimension breaks its assumptions:

    * technique 1: sigma_1 = the largest pairwise distance of the data (``sigma_max``
      overrides);
    * technique 2: geometric sigmas with ratio gamma solving
      Phi(sqrt(2d)(gamma-1) + 3 gamma) - Phi(sqrt(2d)(gamma-1) - 3 gamma) = 1/2, capped at
      ``max_ratio``. In d <= 4 no gamma solves it (low-dimensional noise norms do not
      concentrate, so consecutive levels always overlap) and the cap decides: with the exact
      score, at about the same number of steps, gamma = 1.3 / T = 150 recovered the mode
      weights of the seed 1D mixture (0.2503, truth 0.25) and the 2D mixture (0.2020, truth
      0.2) better than gamma = 2 / T = 400 (0.2517 and 0.2113; 10^5 chains each).
      L = 1 + ceil(log(sigma_1/sigma_L) / log gamma) levels (``n_levels`` overrides);
    * technique 3: ``T`` steps per level, and the step size from their Proposition 3
      (:func:`_ncsnv2_eps`): the largest step whose predicted per-level variance is within
      10% of the target, rather than the closest one, which in low dimension left the mode
      weights unequilibrated; converted to gensamp's update x + a/2 s + sqrt(a) z
      (a = 2 x NCSNv2's step), this is eps = 0.36 sigma_L^2 for T >= ~50.

    ``sigma_min`` (sigma_L) defaults to 0.03 of the data's scale (standardised units): the
    noise it leaves adds 0.09% of the data variance, and the smallest levels are where a
    network's absolute error, divided by sigma, hurts most. Returns ``{"sigmas": [...],
    "eps": float, "T": int, "gamma": float}`` in model coordinates.
    """
    ua = as_array(u, "u")
    sigma_min = as_pos_float(sigma_min, "sigma_min")
    T = as_int(T, "T", 1)
    max_ratio = as_pos_float(max_ratio, "max_ratio")
    if max_ratio <= 1:
        raise ValueError(f"max_ratio must be > 1, got {max_ratio}")
    s1 = _max_pairwise_distance(ua) if sigma_max is None else as_pos_float(sigma_max, "sigma_max")
    if s1 <= sigma_min:
        raise ValueError(f"sigma_max {s1:.3g} must exceed sigma_min {sigma_min:.3g}")
    if n_levels is None:
        gamma = _ncsnv2_ratio(ua.shape[1], max_ratio)
        L = 1 + math.ceil(math.log(s1 / sigma_min) / math.log(gamma) - 1e-9)
    else:
        L = as_int(n_levels, "n_levels", 2)
    sigmas = np.geomspace(s1, sigma_min, L)
    gamma = float(sigmas[0] / sigmas[1])
    return {
        "sigmas": sigmas.tolist(),
        "eps": _ncsnv2_eps(gamma, T, sigma_min),
        "T": T,
        "gamma": gamma,
    }


def schedule_for_sigmas(sigmas: Any, T: int) -> dict[str, Any]:
    """Defaults for a given noise schedule: the sigmas as they are, ``T`` steps per level and
    the NCSNv2 technique-3 step size for their first ratio (see :func:`ncsn_defaults`)."""
    s = as_sigmas(sigmas, min_levels=2)
    T = as_int(T, "T", 1)
    return {"sigmas": s, "T": T, "eps": _ncsnv2_eps(s[0] / s[1], T, s[-1])}
