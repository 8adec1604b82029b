"""Training in PyTorch: objectives and one call per method.

Objectives (small functions on model-coordinate tensors, vectorised with autograd):
:func:`elbo`, :func:`iwae_bound`, :func:`implicit_sm_loss`, :func:`sliced_sm_loss`,
:func:`dsm_loss`, :func:`ncsn_loss`.

Training calls: :func:`train_vae`, :func:`train_score` (``method="exact" | "sliced" |
"denoising"``) and :func:`train_ncsn`. Each takes data [N, d] (numpy, torch, or a .npy/.csv
path; 1-D means d = 1), standardises it internally (the normalisation travels inside the
exported Weights), holds out a validation split (its loss is recorded every epoch; with
``patience`` it drives early stopping), trains with Adam on minibatches, and returns the fitted
model with its loss history in ``model.history``. Every model exports with
``gensamp.export(model)``, sampler defaults included.

Reproducibility: every random draw (initialisation, split, minibatch order, noise) comes from
generators seeded by ``seed``; the global torch RNG is left untouched. On the CPU the same
seed and thread count give bit-identical models. Training runs on the CPU by default;
``device="cuda"`` uses a GPU when one is available (ValueError otherwise). The fitted model is
returned on the CPU.
"""

from __future__ import annotations

import copy
import math
import numbers
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._arrays import as_pos_float
from .datasets import as_array
from .models import ACTIVATIONS, NCSN, VAE, ScoreNet

__all__ = [
    "History",
    "dsm_loss",
    "elbo",
    "confinement_penalty",
    "empirical_target",
    "implicit_sm_loss",
    "iwae_bound",
    "langevin_defaults",
    "ncsn_defaults",
    "ncsn_loss",
    "sliced_sm_loss",
    "train_ncsn",
    "train_score",
    "train_vae",
]

_LOG_2PI = math.log(2 * math.pi)
EXACT_MAX_DIM = 64  # beyond this the d backward passes of the exact trace are the wrong tool


# ---- objectives -------------------------------------------------------------------------------


def _gauss_logpdf(u: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(u; mu, diag exp(logvar)) summed over the last axis."""
    return -0.5 * (((u - mu) ** 2) * torch.exp(-logvar) + logvar + _LOG_2PI).sum(-1)


def elbo(model: VAE, u: torch.Tensor, *, beta: float = 1.0,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-example (beta-)ELBO [n] in model coordinates:
    E_q[log p(u|z)] - beta KL(q(z|u) || N(0, I)), one reparameterised draw z = mu + sigma e,
    KL in closed form. beta = 1 gives the usual lower bound on log p(u)."""
    mu_z, lv_z = model.encode(u)
    e = torch.randn(mu_z.shape, generator=generator, device=mu_z.device, dtype=mu_z.dtype)
    z = mu_z + torch.exp(0.5 * lv_z) * e
    mu_x, lv_x = model.decode(z)
    rec = _gauss_logpdf(u, mu_x, lv_x)
    kl = 0.5 * (mu_z**2 + torch.exp(lv_z) - lv_z - 1.0).sum(-1)
    return rec - beta * kl


def iwae_bound(model: VAE, u: torch.Tensor, *, k: int = 100,
               generator: torch.Generator | None = None, chunk: int = 4096) -> torch.Tensor:
    """Importance-weighted bound on log p(u) [n] (Burda, Grosse & Salakhutdinov 2016):
    log (1/k) sum_j p(u|z_j) p(z_j) / q(z_j|u), z_j ~ q(z|u). k = 1 is the ELBO; the bound is
    non-decreasing in k (in expectation) and tends to log p(u)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    out = []
    for i in range(0, u.shape[0], max(1, chunk // k)):
        ub = u[i : i + max(1, chunk // k)]
        mu_z, lv_z = model.encode(ub)
        e = torch.randn((k, *mu_z.shape), generator=generator, device=ub.device, dtype=ub.dtype)
        z = mu_z + torch.exp(0.5 * lv_z) * e  # [k, n, latent]
        mu_x, lv_x = model.decode(z.reshape(-1, z.shape[-1]))
        log_px = _gauss_logpdf(ub.repeat(k, 1), mu_x, lv_x).reshape(k, -1)
        log_pz = -0.5 * (z**2 + _LOG_2PI).sum(-1)
        log_qz = -0.5 * (e**2 + lv_z + _LOG_2PI).sum(-1)
        out.append(torch.logsumexp(log_px + log_pz - log_qz, dim=0) - math.log(k))
    return torch.cat(out)


def implicit_sm_loss(score_fn: Callable[[torch.Tensor], torch.Tensor], u: torch.Tensor,
                     *, create_graph: bool = True) -> torch.Tensor:
    """Hyvarinen's implicit score matching, E[tr(ds/du) + 1/2 ||s||^2], with the exact
    Jacobian trace: one backward pass per dimension, each vectorised over the batch (cost
    grows with d; use :func:`sliced_sm_loss` beyond d ~ 10)."""
    u = u.detach().requires_grad_(True)
    s = score_fn(u)
    tr = torch.zeros(u.shape[0], device=u.device, dtype=s.dtype)
    for i in range(u.shape[1]):
        # rows are independent, so the gradient of the column sum is the per-row derivative
        # (the graph is kept for the next dimension even when no higher-order graph is built)
        g = torch.autograd.grad(s[:, i].sum(), u, create_graph=create_graph,
                                retain_graph=create_graph or i + 1 < u.shape[1])[0]
        tr = tr + g[:, i]
    return (tr + 0.5 * (s**2).sum(1)).mean()


def sliced_sm_loss(score_fn: Callable[[torch.Tensor], torch.Tensor], u: torch.Tensor, *,
                   n_projections: int = 1, generator: torch.Generator | None = None,
                   create_graph: bool = True) -> torch.Tensor:
    """Sliced score matching, variance-reduced form (Song, Garg, Shi & Ermon 2019):
    E[v^T (ds/du) v + 1/2 ||s||^2] with v ~ N(0, I); one backward pass for all
    ``n_projections`` projections (the batch is replicated)."""
    m = int(n_projections)
    u = u.detach().repeat(m, 1).requires_grad_(True)
    v = torch.randn(u.shape, generator=generator, device=u.device, dtype=u.dtype)
    s = score_fn(u)
    g = torch.autograd.grad((s * v).sum(), u, create_graph=create_graph)[0]
    return ((g * v).sum(1) + 0.5 * (s**2).sum(1)).mean()


def confinement_penalty(score_fn: Callable[[torch.Tensor], torch.Tensor], n: int,
                        radius: float, *, dim: int, generator: torch.Generator | None = None,
                        device: Any = "cpu", pull: float = 0.1, reach: float = 30.0) -> torch.Tensor:
    """E[relu(<s(v), v>/|v|^2 + pull)^2] over points v beyond the data: uniform in direction,
    |v| log-uniform in [radius, reach * radius].

    Score matching only constrains s where there are data; a network extrapolates linearly
    there, and on the seed mixture exact score matching learned an outward score beyond
    x ~ 15 (3 data stds), so plain-Langevin chains started there ran off to 1e21. This asks
    the score, beyond the largest data norm ``radius``, to pull inward at least ``pull`` per
    unit distance (a tenth of a unit Gaussian's pull, in standardised coordinates): chains
    return geometrically from anywhere. Inside the data it is zero; it only constrains the
    region that the data leave free (it would slightly firm up heavy tails out there)."""
    v = torch.randn((n, dim), generator=generator, device=device)
    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
    r = radius * reach ** torch.rand((n, 1), generator=generator, device=device)
    v = v * r
    radial = (score_fn(v) * v).sum(1) / r[:, 0] ** 2
    return (torch.relu(radial + pull) ** 2).mean()


def dsm_loss(score_fn: Callable[[torch.Tensor], torch.Tensor], u: torch.Tensor, sigma: float,
             *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Denoising score matching at one noise level (Vincent 2011), weighted by sigma^2:
    1/2 E ||sigma s(u + sigma z) + z||^2. Its minimiser is the score of the data convolved
    with N(0, sigma^2 I); the weight only rescales the loss to O(1)."""
    z = torch.randn(u.shape, generator=generator, device=u.device, dtype=u.dtype)
    s = score_fn(u + sigma * z)
    return 0.5 * ((sigma * s + z) ** 2).sum(1).mean()


def empirical_target(noisy: torch.Tensor, sigma: torch.Tensor,
                     reference: torch.Tensor) -> torch.Tensor:
    """sigma * E[score | noisy point] under the empirical distribution of ``reference``:
    sum_j w_j (x_j - noisy) / sigma with w_j proportional to N(noisy; x_j, sigma^2 I).

    This is the exact minimiser of denoising score matching at each noisy point when
    ``reference`` is the whole training set, so regressing on it has the same optimum as the
    usual target -z while removing the target's noise (Xu et al. 2023, "Stable Target Field
    for Reduced Variance Score Estimation in Diffusion Models", with the whole data set as
    the reference batch). ``sigma`` is [n, 1].
    """
    d2 = torch.cdist(noisy, reference) ** 2  # [n, N]
    w = torch.softmax(-d2 / (2.0 * sigma**2), dim=1)
    return (w @ reference - noisy) / sigma


def ncsn_loss(model: NCSN, u: torch.Tensor, sigmas: torch.Tensor | None = None, *,
              generator: torch.Generator | None = None, continuous: bool = False,
              reference: torch.Tensor | None = None, spread: float = 1.0,
              spread_cap: float = 1.0) -> torch.Tensor:
    """NCSN objective (Song & Ermon 2019, eq. 5-6): a noise level per example,
    lambda(sigma) = sigma^2, so 1/2 E ||sigma s(u~, sigma) - t||^2 with u~ = u + sigma z.

    ``continuous=False`` draws sigma uniformly from the levels ``sigmas`` (default: the
    model's); ``continuous=True`` draws log sigma uniformly between the smallest and largest
    level, so every level of a sampling schedule in that range is trained on.
    Target t: -z (classic denoising score matching) or, with ``reference`` (the training
    set, model coordinates), the noise-free :func:`empirical_target`; the minimiser is the
    same. Only with that exact target may the inputs be drawn more widely than the noise
    level they are scored at: ``spread`` > 1 perturbs half the batch with spread * sigma,
    so the thin regions between separated modes, which chains cross at small sigma, are
    trained on too (the target there is still the exact one for noise level sigma). The
    widened noise is capped at ``spread_cap`` (standardised units, where the data scale is
    1). The cap is a trade-off, measured on seed 0 with the default network:

    * a smaller cap keeps the widened points off far regions where the exact targets are
      large (distance / sigma) and their squared errors pull capacity from the modes. On the
      seed mixture a cap of 0.3 put the narrow mode's mean 0.013 from the training data's
      instead of 0.033 (its conditional W1 to the truth 0.058 instead of 0.114);
    * but the widening at sigma of 0.1-1 is what trains the gap that decides mode weights in
      2D. On the 2D mixture (2,000 points, 150 epochs, three training seeds) a cap of 1 gave
      (-5,-5) weights 0.201-0.214 (data 0.209), a cap of 0.5 gave 0.132-0.156 and 0.3 gave
      0.112-0.129. Over five seeds of the 1D mixture, the mean W1 moved by 0.003 at most
      between caps of 0.3, 0.5 and 1: within the noise. The default is therefore 1.
    """
    sig = (model.sigmas if sigmas is None else sigmas).to(u.device)
    n = u.shape[0]
    if continuous:
        lo, hi = torch.log(sig.min()), torch.log(sig.max())
        r = torch.rand(n, generator=generator, device=u.device, dtype=u.dtype)
        s_col = torch.exp(lo + (hi - lo) * r)[:, None]
    else:
        idx = torch.randint(0, sig.shape[0], (n,), generator=generator, device=u.device)
        s_col = sig[idx][:, None].to(u.dtype)
    z = torch.randn(u.shape, generator=generator, device=u.device, dtype=u.dtype)
    if spread != 1.0:
        if reference is None:
            raise ValueError("spread != 1 needs reference: the -z target is only valid at spread 1")
        wide = torch.rand((n, 1), generator=generator, device=u.device) < 0.5
        wider = torch.maximum(s_col, torch.clamp(spread * s_col, max=spread_cap))
        noisy = u + torch.where(wide, wider, s_col) * z
    else:
        noisy = u + s_col * z
    s = model(noisy, s_col[:, 0])
    target = -z if reference is None else empirical_target(noisy, s_col, reference)
    return 0.5 * ((s_col * s - target) ** 2).sum(1).mean()


# ---- sampler defaults -------------------------------------------------------------------------


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _max_pairwise_distance(u: np.ndarray, exact_below: int = 4096) -> float:
    """Largest distance between two points. Exact for small sets; otherwise the largest
    distance from a candidate set (the points farthest from the mean and the extremes of each
    coordinate, where a diameter's end points lie) to all points."""
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
        sq = np.sum(c * c, axis=1)[:, None] + uu[None] - 2.0 * c @ u.T
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


def ncsn_defaults(u: Any, *, sigma_min: float = 0.03, T: int = 150, max_ratio: float = 1.3,
                  sigma_max: float | None = None, n_levels: int | None = None) -> dict[str, Any]:
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
    T = _int(T, "T", 1)
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
        L = _int(n_levels, "n_levels", 2)
    sigmas = np.geomspace(s1, sigma_min, L)
    gamma = float(sigmas[0] / sigmas[1])
    return {"sigmas": sigmas.tolist(), "eps": _ncsnv2_eps(gamma, T, sigma_min), "T": T,
            "gamma": gamma}


def langevin_defaults(model: ScoreNet, u: Any, *, step_fraction: float = 0.1,
                      relax: float = 20.0, max_points: int = 2000) -> dict[str, Any]:
    """Plain-Langevin settings for an unconditional score network, from its curvature on
    the data: kappa(u) = -tr(ds/du)/d (1/variance of the local Gaussian fit), computed exactly
    on up to ``max_points`` points. eps = step_fraction / kappa_95 (kappa's 95th percentile:
    the stiffest common region decides stability); T = relax / (eps * kappa_50 / 2), enough
    e-folds of relaxation in a typical region, clipped to [100, 20000]. Model coordinates."""
    ua = torch.as_tensor(as_array(u, "u")[:max_points], dtype=torch.float32)
    was = model.training
    model.eval()
    try:
        x = ua.to(model.device).requires_grad_(True)
        s = model(x)
        tr = torch.zeros(x.shape[0], device=x.device)
        for i in range(x.shape[1]):
            tr = tr + torch.autograd.grad(s[:, i].sum(), x, retain_graph=True)[0][:, i]
        kappa = (-tr / x.shape[1]).detach().cpu().double().numpy()
    finally:
        model.train(was)
    k95 = float(np.quantile(kappa, 0.95))
    k50 = float(np.quantile(kappa, 0.5))
    if not (math.isfinite(k95) and k95 > 0):
        k95 = 1.0  # no confining curvature anywhere: the unit scale of standardised data
    k50 = k50 if math.isfinite(k50) and k50 > 1e-3 * k95 else 1e-3 * k95
    eps = step_fraction / k95
    T = int(np.clip(math.ceil(relax / (eps * k50 / 2.0)), 100, 20000))
    return {"eps": eps, "T": T}


# ---- input checks -------------------------------------------------------------------------------


def _int(v: Any, name: str, lo: int) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {v!r}")
    if int(v) < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")
    return int(v)


def _device(device: Any) -> torch.device:
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"invalid device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available in this torch build/machine")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:i]', got {device!r}")
    return dev


def _activation(a: Any) -> str:
    if not isinstance(a, str) or a not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {a!r}")
    return a


# ---- data preparation -------------------------------------------------------------------------


@dataclass
class _Prepared:
    train: torch.Tensor  # model coordinates, float32
    val: torch.Tensor | None
    shift: np.ndarray | None
    scale: np.ndarray | None


def _prepare(data: Any, normalize: str, val_fraction: Any, split_seed: int,
             device: torch.device) -> _Prepared:
    x = as_array(data, "data")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real) or not (
        0 <= float(val_fraction) < 1
    ):
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    n_val = int(round(float(val_fraction) * x.shape[0]))
    if val_fraction > 0 and (n_val < 1 or x.shape[0] - n_val < 2):
        raise ValueError(
            f"{x.shape[0]} points are too few for a validation split of {val_fraction}; "
            "pass more data or val_fraction=0 (no early stopping)"
        )
    perm = np.random.default_rng(split_seed).permutation(x.shape[0])
    xv, xt = x[perm[:n_val]], x[perm[n_val:]]
    if normalize not in ("standard", "isotropic", "none"):
        raise ValueError(f"normalize must be 'standard', 'isotropic' or 'none', got {normalize!r}")
    shift = scale = None
    if normalize != "none":
        shift = xt.mean(0)
        std = xt.std(0)
        if np.any(std <= 1e-12 * np.maximum(1.0, np.abs(shift))):
            cols = np.flatnonzero(std <= 1e-12 * np.maximum(1.0, np.abs(shift))).tolist()
            raise ValueError(f"data column(s) {cols} are constant: nothing to learn there")
        # Isotropic: one scale for every axis (the root mean variance), so isotropic noise in
        # model coordinates stays isotropic in data space.
        scale = std if normalize == "standard" else np.full_like(std, math.sqrt(np.mean(std**2)))
    def conv(a: np.ndarray) -> torch.Tensor:
        if shift is not None:
            a = (a - shift) / scale
        return torch.as_tensor(a.astype(np.float32), device=device)

    return _Prepared(conv(xt), conv(xv) if n_val else None, shift, scale)


# ---- the training loop ------------------------------------------------------------------------


@dataclass
class History:
    """What a training run did: per-epoch mean training loss and held-out loss (model
    coordinates; the losses are the objective being minimised, e.g. -ELBO), the epoch with
    the lowest held-out loss (``best_epoch``), the epoch whose weights were returned
    (``kept_epoch``: the best one under early stopping, else the last), whether early
    stopping ended the run, and wall-clock seconds."""

    method: str
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    kept_epoch: int = -1
    stopped_early: bool = False
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def summary(self) -> dict[str, Any]:
        """JSON-ready digest stored in the exported weights' ``info``."""
        best_val = self.val_loss[self.best_epoch] if self.val_loss and self.best_epoch >= 0 else None
        return {
            "method": self.method,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "kept_epoch": self.kept_epoch,
            "stopped_early": self.stopped_early,
            "final_train_loss": self.train_loss[-1] if self.train_loss else None,
            "best_val_loss": best_val,
            "seconds": round(self.seconds, 3),
            "settings": self.settings,
        }


def _show_progress(progress: Any) -> bool:
    if progress is None:
        try:
            return bool(sys.stderr.isatty())
        except (AttributeError, ValueError):
            return False
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be True, False or None (auto: on for a terminal), got {progress!r}")
    return bool(progress)


def _fit(*args: Any, threads: int | None, **kwargs: Any) -> History:
    """:func:`_fit_loop` with torch's intra-op thread count set to ``threads`` meanwhile."""
    if threads is None:
        return _fit_loop(*args, **kwargs)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _fit_loop(*args, **kwargs)
    finally:
        torch.set_num_threads(before)


def _fit_loop(model: torch.nn.Module, data: _Prepared, loss: Callable[..., torch.Tensor],
              val_loss: Callable[..., torch.Tensor], *, method: str, epochs: int,
              batch_size: int, lr: float, seeds: Sequence[int], progress: Any,
              patience: int | None, ema: float | None, warmup_epochs: int,
              settings: dict[str, Any], val_needs_grad: bool) -> History:
    """Adam on shuffled minibatches with cosine learning-rate decay; after each epoch the
    held-out loss (with the same noise draws every epoch, so epochs compare fairly) picks the
    best weights, and ``patience`` epochs without improvement stop the run. With ``ema`` the
    evaluated and returned weights are the exponential moving average."""
    from tqdm import tqdm

    dev = data.train.device
    n = data.train.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    total = epochs * steps_per_epoch
    # Decay to 5% of lr: late small steps polish the fit that sampling quality depends on.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, total) / total))
    )
    g_perm = torch.Generator().manual_seed(int(seeds[0]))
    g_noise = torch.Generator(device=dev).manual_seed(int(seeds[1]))
    val_seed = int(seeds[2])
    avg = copy.deepcopy(model) if ema else model
    if ema:
        for p in avg.parameters():
            p.requires_grad_(False)
    hist = History(method=method, settings=settings)
    best, best_state, bad = math.inf, None, 0
    t0 = time.perf_counter()
    step = 0
    bar = tqdm(range(epochs), desc=method, disable=not _show_progress(progress), leave=False,
               file=sys.stderr)
    for epoch in bar:
        model.train()
        perm = torch.randperm(n, generator=g_perm).to(dev)
        tot = 0.0
        for i in range(0, n, batch_size):
            batch = data.train[perm[i : i + batch_size]]
            frac = (epoch + i / n) / warmup_epochs if warmup_epochs else 1.0
            value = loss(model, batch, g_noise, min(1.0, frac))
            if not torch.isfinite(value):
                raise FloatingPointError(
                    f"{method}: the training loss became {value.item()} at epoch {epoch}; "
                    "lower lr or check the data for extreme outliers"
                )
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
            sched.step()
            step += 1
            if ema:
                # Bias-corrected warm-up (TensorFlow's num_updates rule), so a short run's
                # average is not dominated by the random initialisation.
                decay = min(ema, (1.0 + step) / (10.0 + step))
                with torch.no_grad():
                    for pa, pm in zip(avg.parameters(), model.parameters()):
                        pa.mul_(decay).add_(pm.detach(), alpha=1.0 - decay)
            tot += float(value.detach()) * batch.shape[0]
        hist.train_loss.append(tot / n)
        if data.val is None:
            bar.set_postfix(loss=f"{hist.train_loss[-1]:.4g}")
            continue
        avg.eval()
        g_val = torch.Generator(device=dev).manual_seed(val_seed)
        vtot = 0.0
        with torch.set_grad_enabled(val_needs_grad):
            for i in range(0, data.val.shape[0], 4096):
                vb = data.val[i : i + 4096]
                vtot += float(val_loss(avg, vb, g_val).detach()) * vb.shape[0]
        v = vtot / data.val.shape[0]
        hist.val_loss.append(v)
        bar.set_postfix(loss=f"{hist.train_loss[-1]:.4g}", val=f"{v:.4g}")
        if epoch + 1 < warmup_epochs:
            continue  # the objective itself still changes during warm-up: nothing to compare
        if hist.best_epoch < 0 or v < best - 1e-6 * abs(best):
            best, bad, hist.best_epoch = v, 0, epoch
            if patience is not None:
                best_state = copy.deepcopy(avg.state_dict())
        else:
            bad += 1
            if patience is not None and bad >= patience:
                hist.stopped_early = True
                break
    bar.close()
    if patience is not None and best_state is not None:
        model.load_state_dict(best_state)
        hist.kept_epoch = hist.best_epoch
    else:
        if ema:
            model.load_state_dict(avg.state_dict())
        hist.kept_epoch = len(hist.train_loss) - 1
    hist.seconds = time.perf_counter() - t0
    model.eval()
    return hist


def _seeds(seed: Any) -> list[int]:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return [int(s) for s in np.random.SeedSequence(int(seed)).generate_state(5, dtype=np.uint32)]


def _common(epochs: Any, batch_size: Any, lr: Any, patience: Any, seed: Any, device: Any,
            activation: Any, threads: Any
            ) -> tuple[int, int, float, int | None, list[int], torch.device, str]:
    if threads is not None:
        _int(threads, "threads", 1)
    epochs = _int(epochs, "epochs", 1)
    batch_size = _int(batch_size, "batch_size", 1)
    lr = as_pos_float(lr, "lr")
    if patience is not None:
        patience = _int(patience, "patience", 1)
    return epochs, batch_size, lr, patience, _seeds(seed), _device(device), _activation(activation)


def _build(seed: int, ctor: Callable[[], torch.nn.Module], device: torch.device) -> Any:
    # Initialise from our own seed without disturbing the caller's global torch RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ctor().to(device)


def _finish(model: Any, hist: History, info: dict[str, Any]) -> Any:
    model.history = hist
    model.info.update(info)
    return model.cpu()


# ---- public training calls --------------------------------------------------------------------


def train_vae(data: Any, *, latent_dim: int = 2, hidden: Sequence[int] = (128, 128),
              activation: str = "silu", beta: float = 1.0, warmup_epochs: int = 0,
              epochs: int = 400, batch_size: int = 128, lr: float = 3e-3,
              val_fraction: float = 0.1, patience: int | None = None,
              normalize: str = "standard",
              seed: int = 0, device: Any = "cpu", progress: bool | None = None,
              threads: int | None = None) -> VAE:
    """Fit a Gaussian VAE with a learned-variance decoder by maximising the ELBO.

    Parameters
    ----------
    data : array [N, d] (numpy / torch / nested list; [N] for d = 1) or a .npy/.csv path.
    latent_dim, hidden, activation : architecture (encoder and decoder MLPs).
    beta : weight of the KL term (beta-VAE; 1 = the ELBO).
    warmup_epochs : KL warm-up, beta ramps linearly from 0 over this many epochs (0 = off);
        early stopping starts once it is over.
    epochs, batch_size, lr : Adam on minibatches, cosine decay of lr to 5%.
    val_fraction : held-out share (0 = none); its -ELBO (beta = 1, the same noise draws
        every epoch) is recorded in ``history.val_loss``.
    patience : early stopping: this many epochs without improvement of the held-out loss
        stop training and the best epoch's weights are kept. Off (None) by default here: on
        the seed mixture the held-out ELBO flattened (and stopped runs at ~100 epochs) while
        sample quality kept improving (W1 0.48 -> 0.23 by 400 epochs).
    normalize : "standard" (per-axis mean/std), "isotropic" (one scale) or "none".
    seed, device, progress : see the module docstring.
    threads : torch intra-op threads while training (restored afterwards); None leaves
        torch's setting. Small MLPs usually train fastest with 1.

    Returns the fitted :class:`~gensamp.models.VAE` (``.history``); export with
    ``gensamp.export(model)`` and sample with ``gensamp.vae_sample``.
    """
    epochs, batch_size, lr, patience, seeds, dev, activation = _common(
        epochs, batch_size, lr, patience, seed, device, activation, threads)
    beta = as_pos_float(beta, "beta")
    warmup_epochs = _int(warmup_epochs, "warmup_epochs", 0)
    latent_dim = _int(latent_dim, "latent_dim", 1)
    prep = _prepare(data, normalize, val_fraction, seeds[3], dev)
    d = prep.train.shape[1]
    model = _build(seeds[4], lambda: VAE(d, latent_dim, hidden, activation,
                                         shift=prep.shift, scale=prep.scale), dev)
    settings = {"latent_dim": latent_dim, "hidden": list(model.hidden), "activation": activation,
                "beta": beta, "warmup_epochs": warmup_epochs, "epochs": epochs,
                "batch_size": batch_size, "lr": lr, "seed": int(seed), "normalize": normalize,
                "n_train": int(prep.train.shape[0])}

    def loss(m: VAE, u: torch.Tensor, g: torch.Generator, warm: float) -> torch.Tensor:
        return -elbo(m, u, beta=beta * warm, generator=g).mean()

    def vloss(m: VAE, u: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return -elbo(m, u, beta=1.0, generator=g).mean()

    hist = _fit(model, prep, loss, vloss, method="vae", epochs=epochs, batch_size=batch_size,
                lr=lr, seeds=seeds, progress=progress, patience=patience, ema=None,
                warmup_epochs=warmup_epochs, settings=settings, val_needs_grad=False, threads=threads)
    return _finish(model, hist, {})


def train_score(data: Any, method: str = "exact", *, sigma: float | None = None,
                n_projections: int = 1, hidden: Sequence[int] = (128, 128),
                activation: str = "silu", epochs: int = 200, batch_size: int = 128,
                lr: float = 1e-3, val_fraction: float = 0.1, patience: int | None = 30,
                normalize: str = "standard", seed: int = 0, device: Any = "cpu",
                progress: bool | None = None, threads: int | None = None,
                confine: float = 1.0) -> ScoreNet:
    """Fit an unconditional score network s(x) ~ grad log p(x).

    method : "exact" -- implicit score matching with the full Jacobian trace (one backward
        pass per dimension, vectorised over the batch; d <= 64 accepted, best for d <= ~10);
        "sliced" -- sliced score matching with ``n_projections`` Gaussian projections per
        point (any d); "denoising" -- denoising score matching at the single noise level
        ``sigma`` (model coordinates, i.e. in units of the data's std; default 0.1): it learns
        the score of the data convolved with N(0, sigma^2).
    Other parameters as in :func:`train_vae` (``activation`` should be smooth: score
    matching differentiates the network's Jacobian). Early stopping is on by default
    (``patience=30``): the exact and sliced held-out losses are the objective itself.
    confine : weight of :func:`confinement_penalty` added to the training loss (not to the
        held-out loss): beyond the largest data norm the score must not point outward
        (0 disables it; without it plain-Langevin chains started in the tails can run off).

    The plain-Langevin settings from :func:`langevin_defaults` are stored as the sampler
    defaults (``weights.sampler["eps"]``, ``["T"]``). Plain Langevin recovers the shape of
    each mode but not, in general, the weights of well-separated modes: use
    :func:`train_ncsn` for those.
    """
    if method not in ("exact", "sliced", "denoising"):
        raise ValueError(f"method must be 'exact', 'sliced' or 'denoising', got {method!r}")
    epochs, batch_size, lr, patience, seeds, dev, activation = _common(
        epochs, batch_size, lr, patience, seed, device, activation, threads)
    n_projections = _int(n_projections, "n_projections", 1)
    confine = as_pos_float(confine, "confine", allow_zero=True)
    if method == "denoising":
        sigma = 0.1 if sigma is None else as_pos_float(sigma, "sigma")
    elif sigma is not None:
        raise ValueError(f"sigma applies to method='denoising' only, not {method!r}")
    prep = _prepare(data, normalize, val_fraction, seeds[3], dev)
    d = prep.train.shape[1]
    if method == "exact" and d > EXACT_MAX_DIM:
        raise ValueError(f"method='exact' takes one backward pass per dimension; d={d} > "
                         f"{EXACT_MAX_DIM}: use method='sliced'")
    model = _build(seeds[4], lambda: ScoreNet(d, hidden, activation,
                                              shift=prep.shift, scale=prep.scale), dev)
    settings = {"method": method, "hidden": list(model.hidden), "activation": activation,
                "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": int(seed),
                "normalize": normalize, "n_train": int(prep.train.shape[0])}
    if method == "sliced":
        settings["n_projections"] = n_projections
    if method == "denoising":
        settings["sigma"] = sigma
    settings["confine"] = confine
    radius = float(prep.train.norm(dim=1).max())

    def objective(m: ScoreNet, u: torch.Tensor, g: torch.Generator,
                  create_graph: bool = True) -> torch.Tensor:
        if method == "exact":
            return implicit_sm_loss(m, u, create_graph=create_graph)
        if method == "sliced":
            return sliced_sm_loss(m, u, n_projections=n_projections, generator=g,
                                  create_graph=create_graph)
        return dsm_loss(m, u, sigma, generator=g)

    def loss(m: ScoreNet, u: torch.Tensor, g: torch.Generator, warm: float = 1.0) -> torch.Tensor:
        value = objective(m, u, g)
        if confine > 0:
            value = value + confine * confinement_penalty(m, u.shape[0], radius, dim=d,
                                                          generator=g, device=u.device)
        return value

    def vloss(m: ScoreNet, u: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return objective(m, u, g, create_graph=False)

    hist = _fit(model, prep, loss, vloss, method=f"score/{method}", epochs=epochs,
                batch_size=batch_size, lr=lr, seeds=seeds, progress=progress,
                patience=patience, ema=None, warmup_epochs=0, settings=settings,
                val_needs_grad=method != "denoising", threads=threads)
    model.sampler_defaults = langevin_defaults(model, prep.train.cpu().numpy())
    return _finish(model, hist, {"dsm_sigma": sigma} if method == "denoising" else {})


def train_ncsn(data: Any, *, sigmas: Sequence[float] | None = None, sigma_min: float = 0.03,
               sigma_max: float | None = None, n_levels: int | None = None, T: int = 150,
               eps: float | None = None, sigma_input: str = "log_sigma",
               divide_by_sigma: bool = True, continuous: bool = True,
               target: str = "empirical", spread: float = 3.0, spread_cap: float = 1.0,
               reference_size: int = 8192,
               ema: float | None = 0.999, hidden: Sequence[int] = (64, 64, 64),
               activation: str = "silu", epochs: int = 300, batch_size: int = 128,
               lr: float = 3e-3, val_fraction: float = 0.1, patience: int | None = None,
               normalize: str = "isotropic", seed: int = 0, device: Any = "cpu",
               progress: bool | None = None, threads: int | None = None) -> NCSN:
    """Fit a noise-conditional score network (NCSN; Song & Ermon 2019, "Generative Modeling
    by Estimating Gradients of the Data Distribution", with the defaults of Song & Ermon 2020,
    "Improved Techniques for Training Score-Based Generative Models", arXiv:2006.09011).

    Noise schedule and sampler defaults come from :func:`ncsn_defaults` (NCSNv2 techniques
    1-3: sigma_1 = largest pairwise data distance, geometric ratio and L from technique 2,
    the step size from technique 3's Proposition 3 for ``T`` steps per level), all in model
    coordinates; ``sigmas`` (decreasing), ``sigma_min``, ``sigma_max``, ``n_levels`` and
    ``eps`` override them. The network is s(u, sigma) = net(cat[u, log sigma]) / sigma by
    default (``sigma_input`` "log_sigma" | "sigma" | "none", ``divide_by_sigma``).

    Objective :func:`ncsn_loss`, lambda(sigma) = sigma^2, one sigma per example:

    * ``continuous=True`` (default) draws log sigma uniformly over [sigma_L, sigma_1] rather
      than from the L levels only (as in later score-based models): on the seed mixture
      this made the learned scores between the modes markedly more stable;
    * ``target="empirical"`` (default) regresses on the exact conditional expectation of
      the denoising target over the training set (:func:`empirical_target`; at most
      ``reference_size`` reference points per step, plus the batch itself, when the set is
      larger), which has the same minimiser as the classic target -z (``target="noisy"``)
      without its variance, the dominant error at small sigma;
    * ``spread`` (with the empirical target only): half of each batch is perturbed with
      max(sigma, min(spread * sigma, spread_cap)) but scored at sigma, so the empty gaps
      between separated modes are trained on at small sigma too. Without it, chains leaked across those gaps late in
      annealing and mode weights drifted by 1-5 points. The widened noise is at most
      ``spread_cap`` (standardised units; see :func:`ncsn_loss`).

    ``ema`` is the decay of the exponential moving average of the weights that is evaluated
    and returned (NCSNv2: 0.999; None disables it). ``normalize`` defaults to "isotropic"
    (one scale for all axes) so isotropic noise stays isotropic in data space. Early stopping
    (``patience``, off by default) compares the classic denoising loss on the held-out split
    with the same noise draws every epoch. Other parameters as in :func:`train_vae`.

    Sample with ``gensamp.annealed_langevin(gensamp.export(model), n=...)``: the stored
    defaults are used.
    """
    epochs, batch_size, lr, patience, seeds, dev, activation = _common(
        epochs, batch_size, lr, patience, seed, device, activation, threads)
    if ema is not None:
        ema = float(as_pos_float(ema, "ema"))
        if ema >= 1:
            raise ValueError(f"ema must be in (0, 1) or None, got {ema}")
    if target not in ("empirical", "noisy"):
        raise ValueError(f"target must be 'empirical' or 'noisy', got {target!r}")
    spread = as_pos_float(spread, "spread")
    if spread < 1:
        raise ValueError(f"spread must be >= 1, got {spread}")
    spread_cap = as_pos_float(spread_cap, "spread_cap")
    if target == "noisy" and spread != 1:
        spread = 1.0  # the -z target is only valid for inputs drawn at the scored noise level
    reference_size = _int(reference_size, "reference_size", 1)
    if not isinstance(continuous, (bool, np.bool_)):
        raise TypeError("continuous must be a bool")
    T = _int(T, "T", 1)
    prep = _prepare(data, normalize, val_fraction, seeds[3], dev)
    d = prep.train.shape[1]
    u_np = prep.train.cpu().double().numpy()
    if sigmas is not None:
        s = np.asarray(sigmas, dtype=np.float64).reshape(-1)
        if s.size < 2 or not np.all(np.isfinite(s)) or np.any(s <= 0) or np.any(np.diff(s) >= 0):
            raise ValueError("sigmas must be at least 2 finite values > 0, strictly decreasing")
        defaults = {"sigmas": s.tolist(), "T": T,
                    "eps": _ncsnv2_eps(float(s[0] / s[1]), T, float(s[-1]))}
    else:
        defaults = ncsn_defaults(u_np, sigma_min=sigma_min, T=T, sigma_max=sigma_max,
                                 n_levels=n_levels)
    if eps is not None:
        defaults["eps"] = as_pos_float(eps, "eps")
    model = _build(seeds[4], lambda: NCSN(
        d, defaults["sigmas"], hidden, activation, sigma_input=sigma_input,
        divide_by_sigma=divide_by_sigma, shift=prep.shift, scale=prep.scale,
        eps=defaults["eps"], T=T), dev)
    settings = {"hidden": list(model.hidden), "activation": activation, "epochs": epochs,
                "batch_size": batch_size, "lr": lr, "seed": int(seed), "ema": ema,
                "normalize": normalize, "n_train": int(prep.train.shape[0]),
                "n_levels": len(defaults["sigmas"]), "continuous": bool(continuous),
                "target": target, "spread": spread, "spread_cap": spread_cap}
    full_ref = target == "empirical" and prep.train.shape[0] <= reference_size
    g_ref = torch.Generator(device=dev).manual_seed(seeds[2] + 1)

    def loss(m: NCSN, u: torch.Tensor, g: torch.Generator, warm: float = 1.0) -> torch.Tensor:
        ref = None
        if target == "empirical":
            if full_ref:
                ref = prep.train
            else:  # a random reference batch plus the batch's own points (STF)
                pick = torch.randint(0, prep.train.shape[0], (reference_size,),
                                     generator=g_ref, device=dev)
                ref = torch.cat([prep.train[pick], u])
        return ncsn_loss(m, u, generator=g, continuous=continuous, reference=ref, spread=spread,
                         spread_cap=spread_cap)

    def vloss(m: NCSN, u: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        # Several noise draws per held-out point: one draw leaves the comparison between
        # epochs dominated by the draws rather than the model.
        return ncsn_loss(m, u.repeat(8, 1), generator=g, continuous=continuous)

    hist = _fit(model, prep, loss, vloss, method="ncsn", epochs=epochs, batch_size=batch_size,
                lr=lr, seeds=seeds, progress=progress, patience=patience, ema=ema,
                warmup_epochs=0, settings=settings, val_needs_grad=False, threads=threads)
    return _finish(model, hist, {"schedule": "NCSNv2 (Song & Ermon 2020)"})
