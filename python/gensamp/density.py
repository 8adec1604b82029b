"""Log-densities under a score model, by the probability-flow ODE (C++ engine).

The math
--------
A score model gives s(u, sigma) = grad_u log p_sigma(u), p_sigma = p_data * N(0, sigma^2 I), in
its coordinates u = (x - shift) / scale. The variance-exploding process with sigma as time
has the probability-flow ODE du/dsigma = -sigma s(u, sigma) (Song et al. 2021, "Score-Based
Generative Modeling through Stochastic Differential Equations"): it carries p_{sigma_min} to
p_{sigma_max}. By the instantaneous change of variables (Chen et al. 2018, "Neural Ordinary
Differential Equations"), d/dsigma log p_sigma(u(sigma)) = sigma tr grad_u s(u(sigma), sigma),
so for a point u_0 at sigma_min::

    log p_{sigma_min}(u_0) = log p_{sigma_max}(u(sigma_max))
                             - int_{sigma_min}^{sigma_max} sigma tr grad_u s(u(sigma), sigma) dsigma

and log p_x(x) = log p_u(u) - sum_i log scale_i. The engine integrates u and the trace term
together with classic fourth-order Runge-Kutta on sigma_0 = sigma_min < ... < sigma_N =
sigma_max, sigma_i^(1/5) evenly spaced (dense near sigma_min, as in Karras et al. 2022), in
double (the model itself runs in float32).

The trace: exact for a :class:`GaussianMixture` (analytic: tr grad s = sum_k r_k (|g_k|^2 -
tr P_k) - |s|^2, g_k = -P_k (u - mu_k), P_k = (Sigma_k + sigma^2 I)^-1, r_k the posterior
weights) and for a network of dimension d <= 16 (forward-mode differentiation: d tangents
through every layer). Beyond d = 16 a network's trace is Hutchinson's estimate
(1/probes) sum_p v_p^T (grad s) v_p with Rademacher v_p, fresh at every evaluation, drawn from
the engine's counter-based noise stream (seed, row, evaluation): unbiased, so log p is
unbiased up to the integration error, and reproducible for a seed whatever the threads and
tiling.

The prior and its error
-----------------------
p_{sigma_max} is replaced by N(m, C + sigma_max^2 I) with (m, C) the data's mean and covariance
in model coordinates: a GaussianMixture's exact moments; (0, I) for a network, whose
normalisation standardises the data (train_ncsn's isotropic normalisation gives the data
mean 0 and average variance 1; the per-axis variances and correlations are what remains of
C - I). The error is the difference between p_data * N(0, sigma_max^2 I) and that Gaussian:
O(|C - I| / sigma_max^2) from mismatched second moments (none for a mixture) plus
O((s / sigma_max)^3) from the third cumulant, s the data's rms standard deviation. Measured
with exact moments, mean |log p_{sigma_max} - log N| over 20,000 points: 1.7e-3 / 7e-3 nats at
sigma_max = 5 s on the seed mixture / 2D toy, 2.2e-4 / 9.5e-4 at 10 s, 2.8e-5 / 1.2e-4 at 20 s
(a mixture's default). A network's default sigma_max is its largest stored noise level
(train_ncsn's: the data's largest pairwise distance, a few s).

What is computed
----------------
For a GaussianMixture, sigma_min defaults to 0: log p of the mixture itself. A network has no
score at sigma = 0; its default sigma_min is its smallest stored noise level, so the result
is log p of p_data * N(0, sigma_min^2 I) (in model coordinates; sigma_min * scale in data
space). Both can be chosen (``sigma_min``, ``sigma_max``).

Cost: 4 * steps evaluations per point (one less when sigma_min = 0), each a score plus, for a
network, d tangent passes (exact) or ``probes`` of them (Hutchinson) through every layer: an
exact evaluation costs about d + 1 forward passes. With exact mixture scores, steps=32 gave a
mean error of 0.0003-0.0014 nats on the seed mixture, the 2D toy and eight_gaussians.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from . import _core
from ._inputs import density_model, density_plan
from ._resources import check_engine_memory, check_memory, check_run_memory, resolve_threads
from ._validate import as_int, as_points

__all__ = ["DensityWarning", "log_prob"]

_HINT = "evaluate fewer points at a time"


class DensityWarning(RuntimeWarning):
    """Some log-densities are not finite (the model's score overflowed float32 along their
    trajectories). ``indices`` lists their rows, which hold NaN."""

    def __init__(self, indices: np.ndarray, n: int) -> None:
        self.indices = np.asarray(indices)
        self.count = int(self.indices.size)
        more = " ..." if self.count > 10 else ""
        rows = ", ".join(str(int(i)) for i in self.indices[:10]) + more
        super().__init__(
            f"{self.count} of {n} log-densities are not finite (rows {rows}): the score "
            "overflowed float32 along their trajectories; check the model and the points"
        )


def log_prob(
    model: Any,
    x: Any,
    *,
    steps: int | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    exact: bool | None = None,
    probes: int = 1,
    seed: int = 0,
    threads: int | None = None,
    tile: int | None = None,
) -> np.ndarray:
    """Log-density of each point of ``x`` under a score model, in data space.

    Integrates the probability-flow ODE from sigma_min to sigma_max with the score's
    divergence (the module docstring has the math, the prior at sigma_max and its error).

    Parameters
    ----------
    model : GaussianMixture, Weights or a path to a weights file
        A noise-conditional score network (role "ncsn", or any network with a sigma input or
        divide_by_sigma) or a mixture. A VAE decoder, or a network that takes no noise
        level, is refused (ValueError).
    x : [n, d] points in data space ([n] for d = 1; an array, tensor, list or .npy/.csv path).
    steps : RK4 steps (default 32): 4 * steps score evaluations per point.
    sigma_min : where the ODE starts; the result is log p of p_data * N(0, sigma_min^2 I).
        Default 0 for a mixture (its exact density), the smallest stored noise level for a
        network, which has no score at 0.
    sigma_max : where the prior N(m, C + sigma_max^2 I) replaces p_sigma_max. Default 20
        rms standard deviations for a mixture, the largest stored noise level for a network.
        Both sigmas are in the model's coordinates, like the stored ones.
    exact : the exact trace (True) or Hutchinson's estimate (False). Default: exact for a
        mixture and for a network with d <= 16.
    probes : Rademacher directions per evaluation of Hutchinson's estimate (default 1;
        ignored when exact). Fresh ones at every evaluation, so the trace noise averages over
        the 4 * steps evaluations.
    seed : int in [0, 2^64), the directions' noise stream.
    threads : int, default $GENSAMP_NUM_THREADS or all cores.
    tile : points per work unit (advanced; results do not depend on it, nor on threads).

    Returns float64 [n] log-densities (nats). Rows whose computation went non-finite are NaN,
    with a :class:`DensityWarning` listing them.
    """
    m = density_model(model)
    plan = density_plan(m, steps, sigma_min, sigma_max, exact, probes, seed)
    x = as_points(x, m.dim, "x")
    threads = resolve_threads(threads)
    tile = as_int(64 if tile is None else tile, "tile", 1, 1 << 16)
    n, d = x.shape
    outputs = 8 * n * (3 * d + 2)  # u and the engine's copy of it, the trace integral, log p
    what = f"{n} points x d={d} (float64)"
    check_memory(outputs, what, _HINT)
    check_engine_memory(m)
    engine = m._engine()
    options = _core.RunOptions(seed=plan.seed, threads=threads, tile=tile)
    parts = _core.log_density_ode_bytes(engine, len(plan.grid), plan.probes, n, options)
    check_run_memory(outputs, parts, what, 2 * len(plan.grid) - 1, _HINT)
    u = (x - plan.shift) / plan.scale
    u_end, integral, bad = _core.log_density_ode(engine, plan.grid, u, plan.probes, options)
    with np.errstate(invalid="ignore", over="ignore"):
        out = plan.prior_log_prob(np.nan_to_num(u_end)) - integral - plan.log_scale
    out[bad] = np.nan
    nonfinite = np.flatnonzero(~np.isfinite(out))
    if nonfinite.size:
        out[nonfinite] = np.nan
        warnings.warn(DensityWarning(nonfinite, n), stacklevel=2)
    return out
