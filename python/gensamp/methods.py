"""The samplers :func:`gensamp.sample` chooses between, and how a budget becomes a schedule.

A budget is ``steps`` score evaluations per chain. Every method runs on a grid of noise levels
sigma_0 > ... > sigma_{N-1} (model coordinates) from ``sigma_max`` to ``sigma_min`` and,
except ``ald``, ends at sigma = 0 with a step that leaves no noise:

========  ==========================================================  ==================
method    update (engine: cpp/include/gensamp/sampler.hpp)           evaluations
========  ==========================================================  ==================
ald       annealed Langevin (Song & Ermon 2019), L levels x T steps,  L*T (+1 denoise)
          L, T and eps from :func:`ald_budget`, then the Tweedie step
pc        predictor-corrector (Song et al. 2021): per level one        2N
          Langevin corrector step, its size from each chain's own
          signal-to-noise ratio ``snr``, then reverse diffusion
cas       consistent annealed sampling (Jolicoeur-Martineau et al.    N
          2021): u + kappa_i sigma_i^2 s + beta_i z, beta_i making the
          noise left exactly sigma_{i+1}, kappa_i from ``refresh``
euler     probability-flow ODE du/dsigma = -sigma s, Euler            N
heun      the same ODE, Heun (Karras et al. 2022, Algorithm 1)        2N - 1
edm       EDM's stochastic Heun sampler (Karras et al. 2022,          2N - 1
          Algorithm 2), churn ``churn``
========  ==========================================================  ==================

The ODE methods and ``edm`` use EDM's grid (rho = 7, :func:`edm_sigmas`); ``pc`` and ``cas``
a geometric one, as in their papers. Methods other than ``ald`` query sigma between the levels
a network was trained on: they need an NCSN trained with ``continuous=True`` (the default of
:func:`gensamp.train_ncsn`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _core
from ._validate import as_choice, as_int, as_pos_float

__all__ = ["METHODS", "DEFAULT_METHOD", "DEFAULT_STEPS", "ald_budget", "edm_sigmas", "schedule"]

METHODS = ("ald", "pc", "cas", "euler", "heun", "edm")
# What gensamp.sample uses for a model that stores no method of its own (a GaussianMixture, an
# NCSN saved before methods existed); bench/samplers.py measured the choice (README: Samplers).
DEFAULT_METHOD = "cas"
DEFAULT_STEPS = 100
# Settings the budget does not decide.
PC_SNR = 0.16  # score_sde's value for VE models
# 0: the ODE's Euler step, 1: the VE ancestral step (sampler.hpp). Tried on one trained
# seed-mixture NCSN (5 draws): 0.5 beat 1 at 50 and 70 evaluations (W1 0.106 vs 0.124, 0.092 vs
# 0.098), 1 beat 0.5 at 100 (0.078 vs 0.091); with exact scores 0.5 did better at 100 (0.070,
# bench/samplers.py, against 0.080 for 1 in an earlier run). 0.5 at 100 meets the targets.
CAS_REFRESH = 0.5
# EDM's S_churn for N of a few tens (their VE setting: 30 at N = 256); 5-80 measured alike on
# a trained seed-mixture NCSN at 49 and 99 evaluations.
EDM_CHURN = 10.0
RHO = 7.0
MAX_STEPS = 1_000_000  # per sample, for every method but ald (whose levels repeat)


def _prop3_variance(beta: float, gamma: float, T: int) -> float:
    """NCSNv2 Proposition 3: s_T^2 / sigma_i^2 after T steps at level i from N(0, sigma_{i-1}^2)
    on a Gaussian N(0, sigma_i^2), with beta = eps'/sigma_L^2 in NCSNv2's update
    x + eps' s + sqrt(2 eps') z."""
    k = 2.0 * beta / (1.0 - (1.0 - beta) ** 2)
    return (1.0 - beta) ** (2 * T) * (gamma**2 - k) + k


def _ncsnv2_eps(gamma: float, T: int, sigma_min: float, tol: float = 0.1) -> float:
    """Step size from NCSNv2 technique 3 (Proposition 3), converted to gensamp's update.

    NCSNv2 picks the beta making s_T^2 closest to 1. We take the *largest* beta with
    |s_T^2 - 1| <= ``tol`` (falling back to the closest when none qualifies): in low
    dimensions the mode weights, not the per-level variance that Proposition 3 tracks, are
    what equilibrates slowest: with the exact mixture score, sigma_L = 0.01, gamma ~ 2 and
    T = 50-400, the closest-to-1 step left the seed mixture's left-mode weight at 0.278-0.291
    (truth 0.25; W1 0.42-0.64), while the largest step within 10% gave 0.250-0.252.
    gensamp's update
    x + a/2 s + sqrt(a) z is NCSNv2's chain with a = 2 eps', so eps = 2 beta sigma_L^2
    (about 0.36 sigma_L^2 for T >= ~50).
    """
    betas = np.geomspace(1e-6, 0.999, 4000)
    v = np.array([abs(_prop3_variance(float(b), gamma, T) - 1.0) for b in betas])
    ok = np.flatnonzero(v <= tol)
    b = float(betas[ok[-1]] if ok.size else betas[np.argmin(v)])
    return 2.0 * b * sigma_min**2


def edm_sigmas(sigma_max: float, sigma_min: float, N: int, rho: float = RHO) -> list[float]:
    """EDM's noise levels (Karras et al. 2022, eq. 5): N levels from sigma_max down to
    sigma_min, evenly spaced in sigma^(1/rho) (dense near sigma_min for rho > 1)."""
    if N == 1:
        return [float(sigma_max)]
    i = np.arange(N) / (N - 1)
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    s = (a + i * (b - a)) ** rho
    s[0], s[-1] = sigma_max, sigma_min
    return [float(v) for v in s]


def _geometric(sigma_max: float, sigma_min: float, N: int) -> list[float]:
    if N == 1:
        return [float(sigma_max)]
    return [float(v) for v in np.geomspace(sigma_max, sigma_min, N)]


def ald_budget(steps: int, sigma_max: float, sigma_min: float) -> dict[str, Any]:
    """Annealed Langevin's (L, T, eps) for ``steps`` evaluations per chain, the last of which
    is the final Tweedie step: L = round(2 sqrt(steps - 1)) geometric levels, at least 2 and
    at most 24, T = (steps - 1) // L steps per level and the NCSNv2 technique-3 step for their
    ratio (as :func:`gensamp.schedules.ncsn_defaults`). Fitted to a sweep over L with exact
    scores on the seed mixture (bench/samplers.py, ``ald_sweep``, 3 seeds): the best L grew
    like ~2 sqrt(steps) up to 100 evaluations (8 at 20, 16 at 50, 16-24 at 100); from 300 on,
    W1 was flat for L between 6 and 48, so the levels stop at 24 and the budget goes to T.
    Fewer levels leave the modes unmixed (levels too far apart); more leave too few steps per
    level to equilibrate. The final Tweedie step lowered W1 by 0.8-4% at 10-1,000 evaluations
    and was within noise at 3,000."""
    if steps < 3:
        raise ValueError(
            f"method 'ald' needs steps >= 3 (2 levels + the denoising step), got {steps}"
        )
    L = min(max(2, round(2 * math.sqrt(steps - 1))), 24, steps - 1)
    T = (steps - 1) // L
    sig = _geometric(sigma_max, sigma_min, L)
    return {"sigmas": sig, "T": T, "eps": _ncsnv2_eps(sig[0] / sig[1], T, sigma_min)}


def min_steps(method: str) -> int:
    """The smallest budget ``method`` can run: ald two levels and its denoising step, pc one
    (corrector, predictor) pair, the others one level."""
    return {"ald": 3, "pc": 2}.get(method, 1)


def schedule(
    method: str, steps: int, sigma_max: float, sigma_min: float
) -> tuple[Any, bool, dict[str, Any]]:
    """The engine schedule for ``method`` at ``steps`` evaluations per chain: (schedule,
    denoise, settings); settings describe the schedule for ``info``."""
    method = as_choice(method, "method", METHODS)
    # Every method but ald holds one level per evaluation or two: a bound far above any useful
    # budget that keeps a mistyped one from building gigabytes of schedule before any check.
    steps = as_int(steps, "steps", min_steps(method), 2**31 - 1 if method == "ald" else MAX_STEPS)
    sigma_max = as_pos_float(sigma_max, "sigma_max", f32=True)
    sigma_min = as_pos_float(sigma_min, "sigma_min", f32=True)
    if not sigma_min < sigma_max:
        raise ValueError(f"sigma_min ({sigma_min:.3g}) must be < sigma_max ({sigma_max:.3g})")
    if method == "ald":
        b = ald_budget(steps, sigma_max, sigma_min)
        sched = _core.annealed_schedule(b["sigmas"], b["eps"], b["T"])
        return sched, True, {"levels": len(b["sigmas"]), "T": b["T"], "eps": b["eps"]}
    if method == "pc":
        N = steps // 2
        sched = _core.pc_schedule(_geometric(sigma_max, sigma_min, N), PC_SNR, 1)
        return sched, False, {"levels": N, "snr": PC_SNR}
    if method == "cas":
        sched = _core.cas_schedule(_geometric(sigma_max, sigma_min, steps), CAS_REFRESH)
        return sched, False, {"levels": steps, "refresh": CAS_REFRESH}
    if method == "euler":
        sched = _core.ode_schedule(edm_sigmas(sigma_max, sigma_min, steps), False)
        return sched, False, {"levels": steps, "rho": RHO}
    N = (steps + 1) // 2
    churn = EDM_CHURN if method == "edm" else 0.0
    sched = _core.ode_schedule(edm_sigmas(sigma_max, sigma_min, N), True, churn)
    out: dict[str, Any] = {"levels": N, "rho": RHO}
    if churn:
        out["churn"] = churn
    return sched, False, out
