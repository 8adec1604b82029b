"""Arguments shared by the engine and the numpy reference: which model a ``weights``
argument names, the default chain count, the stored sampler defaults, and everything
log_prob decides before it integrates (its sigma grid, trace estimator and prior)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validate import as_bool, as_int, as_pos_float
from .mixture import GaussianMixture
from .weights import Weights, load

DEFAULT_N = 1000


def as_model(weights: Any) -> Weights | GaussianMixture:
    """The model a sampler's ``weights`` argument names: Weights, a GaussianMixture, or a path
    to a weights file (loaded)."""
    if isinstance(weights, (Weights, GaussianMixture)):
        return weights
    if isinstance(weights, (str, os.PathLike)):
        return load(weights)
    hint = ""
    if hasattr(weights, "parameters"):
        hint = " (a torch module: export it first with gensamp.export(model))"
    raise TypeError(
        f"weights must be gensamp.Weights, a path to a weights file or a GaussianMixture, "
        f"got {type(weights).__name__}{hint}"
    )


def with_defaults(
    stored: Mapping[str, Any], given: dict[str, Any], kind: str, example: str
) -> list[Any]:
    """The given values, with those left as None taken from the model's stored sampler
    defaults; ValueError naming every one that is neither given nor stored."""
    missing = [k for k, v in given.items() if v is None and k not in stored]
    if missing:
        raise ValueError(
            f"{', '.join(missing)} not given and the model stores no {kind}default "
            f"for it; pass e.g. {example}"
        )
    return [stored[k] if v is None else v for k, v in given.items()]


# ---- log_prob -------------------------------------------------------------------------------

#: RK4 steps by default: on the seed mixture, the 2D toy and eight_gaussians (exact scores,
#: 10^4 points each) 24 steps gave a mean error of 0.0013-0.0040 nats, 32 steps 0.0003-0.0014.
DEFAULT_STEPS = 32
MAX_STEPS = 1 << 20  # four evaluations a step, each with its own 32-bit noise-stream step
#: The grid's exponent: sigma_i^(1/rho) evenly spaced, dense near sigma_min as in Karras et al.
#: (2022), "Elucidating the design space of diffusion-based generative models". 5 was the best
#: or close of {3, 5, 7, 10} on the toys above and on mixtures with components 100x narrower
#: than their spread.
ODE_RHO = 5.0
#: Up to this dimension a network's trace is exact (d tangent passes per evaluation).
EXACT_MAX_DIM = 16
MAX_PROBES = 1024
#: A mixture's default sigma_max, in units of its rms standard deviation sqrt(tr C / d): there
#: the prior's mean error was 3e-5, 1.2e-4 and 2e-6 nats on the three toys above.
MIXTURE_SIGMA_MAX = 20.0


@dataclass(frozen=True)
class DensityPlan:
    """What log_prob integrates, in the model's coordinates: the grid sigma_0 < ... < sigma_N,
    the trace estimator (probes 0: exact), and the prior N(mean, cov + sigma_N^2 I) at sigma_N;
    ``log_scale`` = sum_i log scale_i, the map from the model's coordinates to data space."""

    grid: list[float]
    probes: int
    seed: int
    mean: np.ndarray
    cov: np.ndarray
    shift: np.ndarray
    scale: np.ndarray
    log_scale: float

    @property
    def steps(self) -> int:
        return len(self.grid) - 1

    def prior_log_prob(self, u: np.ndarray) -> np.ndarray:
        """log N(u; mean, cov + sigma_N^2 I) for rows u [n, d] (float64)."""
        d = self.mean.size
        chol = np.linalg.cholesky(self.cov + self.grid[-1] ** 2 * np.eye(d))
        z = np.linalg.solve(chol, (u - self.mean).T)
        return (
            -0.5 * np.sum(z * z, axis=0)
            - np.sum(np.log(np.diag(chol)))
            - 0.5 * d * math.log(2 * math.pi)
        )


def density_model(model: Any) -> Weights | GaussianMixture:
    """The model log_prob's ``model`` names, if it has a score at every noise level."""
    m = as_model(model)
    if isinstance(m, Weights):
        if m.role == "vae_decoder":
            raise ValueError(
                "log_prob needs a score model; a VAE decoder has no score (its density is a "
                "latent-variable integral the probability-flow ODE does not compute)"
            )
        if not (m.conditioned or m.divide_by_sigma):
            raise ValueError(
                "log_prob needs a noise-conditional score s(u, sigma) at every sigma from "
                "sigma_min to sigma_max; this network takes no noise level (sigma_input='none'). "
                "Train one with gensamp.train_ncsn"
            )
        if m.graph is not None:
            raise ValueError(
                "log_prob needs the divergence of the score, which the engine differentiates "
                "for plain MLPs (format 1) and mixtures; this network is a graph (format 2), "
                "whose divergence is not implemented yet"
            )
    return m


def ode_grid(sigma_min: float, sigma_max: float, steps: int) -> list[float]:
    """sigma_0 = sigma_min < ... < sigma_N = sigma_max, sigma_i^(1/rho) evenly spaced."""
    a, b = sigma_min ** (1 / ODE_RHO), sigma_max ** (1 / ODE_RHO)
    grid = (a + np.arange(steps + 1) / steps * (b - a)) ** ODE_RHO
    grid[0], grid[-1] = sigma_min, sigma_max
    if np.any(np.diff(grid) <= 0):
        raise ValueError(
            f"{steps} steps from sigma_min={sigma_min:.6g} to sigma_max={sigma_max:.6g} are "
            "too many to tell apart in float64; use fewer steps"
        )
    return [float(v) for v in grid]


def density_plan(
    model: Weights | GaussianMixture,
    steps: Any,
    sigma_min: Any,
    sigma_max: Any,
    exact: Any,
    probes: Any,
    seed: Any,
) -> DensityPlan:
    """log_prob's arguments besides the points, checked, defaults filled in."""
    d = model.dim
    steps = DEFAULT_STEPS if steps is None else as_int(steps, "steps", 1, MAX_STEPS)
    seed = as_int(seed, "seed", 0, 2**64 - 1)
    probes = as_int(probes, "probes", 1, MAX_PROBES)
    if isinstance(model, GaussianMixture):
        # the analytic trace costs what the score costs, at any d
        exact = True if exact is None else as_bool(exact, "exact")
        mean, cov = model.moments()
        rms = math.sqrt(float(np.trace(cov)) / d)
        lo = 0.0 if sigma_min is None else sigma_min
        lo = as_pos_float(lo, "sigma_min", allow_zero=True, f32=True)
        hi = MIXTURE_SIGMA_MAX * rms if sigma_max is None else sigma_max
        shift, scale = np.zeros(d), np.ones(d)
    else:
        exact = d <= EXACT_MAX_DIM if exact is None else as_bool(exact, "exact")
        stored = model.sampler.get("sigmas")
        lo, hi = sigma_min, sigma_max
        if stored is not None:
            lo = stored[-1] if lo is None else lo
            hi = stored[0] if hi is None else hi
        if lo is None or hi is None:
            raise ValueError(
                "this network stores no noise levels: pass sigma_min and sigma_max (its "
                "training range, in its coordinates)"
            )
        lo = as_pos_float(lo, "sigma_min", f32=True)
        # A network's coordinates are the standardised data's (its normalisation): mean 0,
        # covariance I as far as the prior is concerned.
        mean, cov = np.zeros(d), np.eye(d)
        shift = np.zeros(d) if model.shift is None else model.shift.astype(np.float64)
        scale = np.ones(d) if model.scale is None else model.scale.astype(np.float64)
    hi = as_pos_float(hi, "sigma_max", f32=True)
    if not hi > lo:
        raise ValueError(f"sigma_max ({hi:.6g}) must be > sigma_min ({lo:.6g})")
    return DensityPlan(
        grid=ode_grid(lo, hi, steps),
        probes=0 if exact else probes,
        seed=seed,
        mean=mean,
        cov=cov,
        shift=shift,
        scale=scale,
        log_scale=float(np.sum(np.log(scale))),
    )
