"""Training objectives: small functions of model-coordinate tensors, vectorised with autograd.

:func:`elbo` and :func:`iwae_bound` (VAE), with the decoder likelihoods' pieces
(:func:`gaussian_log_prob`, :func:`bernoulli_log_prob`, :func:`cb_log_norm`,
:func:`cb_log_prob`, :func:`cb_mean`, :func:`cb_inverse_cdf`) and :func:`mixture_log_prob` for a
Gaussian-mixture prior; :func:`implicit_sm_loss`, :func:`sliced_sm_loss`, :func:`dsm_loss`
and :func:`confinement_penalty` (unconditional score networks);
:func:`ncsn_loss` with :func:`empirical_target` (noise-conditional networks). They take the
model through the small protocols below, so they know nothing of gensamp's model classes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from .._validate import as_int

__all__ = [
    "bernoulli_log_prob",
    "cb_inverse_cdf",
    "cb_log_norm",
    "cb_log_prob",
    "cb_mean",
    "confinement_penalty",
    "dsm_loss",
    "elbo",
    "empirical_target",
    "gaussian_log_prob",
    "implicit_sm_loss",
    "iwae_bound",
    "mixture_log_prob",
    "ncsn_loss",
    "sliced_sm_loss",
]

_LOG_2PI = math.log(2 * math.pi)

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
#: log p(z) [n] of a latent prior at z [n, k]
PriorLogProb = Callable[[torch.Tensor], torch.Tensor]


class EncoderDecoder(Protocol):
    """What the VAE bounds need: q(z|u) as a (mean, log-variance) pair and log p(u|z)."""

    def encode(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...
    def log_px(self, u: torch.Tensor, z: torch.Tensor) -> torch.Tensor: ...


class NoiseConditional(Protocol):
    """What :func:`ncsn_loss` needs: the training levels and s(u, sigma)."""

    sigmas: torch.Tensor

    def __call__(self, u: torch.Tensor, sigma: Any) -> torch.Tensor: ...


def _gauss_logpdf(u: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(u; mu, diag exp(logvar)) summed over the last axis."""
    return -0.5 * (((u - mu) ** 2) * torch.exp(-logvar) + logvar + _LOG_2PI).sum(-1)


def gaussian_log_prob(u: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """log N(u; mu, diag exp(logvar)) [n] for decoder outputs out = [mu | logvar] [n, 2d]."""
    d = u.shape[-1]
    return _gauss_logpdf(u, out[..., :d], out[..., d:])


def bernoulli_log_prob(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """sum_i x_i log lambda_i + (1 - x_i) log(1 - lambda_i) [n], lambda = sigmoid(logits): the
    Bernoulli log-likelihood, and for targets x in [0, 1] (pixel intensities) the negative
    binary cross-entropy (not a normalised density of continuous x)."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


# Below |l| = 0.1 log C uses its series: the next term, ~3.4e-4 l^6, is below 4e-10 there,
# while the closed form loses digits to the cancellation of log|l| and log(1 - e^-|l|).
_CB_SERIES_BELOW = 0.1


def cb_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C(lambda), elementwise, of the continuous Bernoulli (Loaiza-Ganem & Cunningham 2019)
    with lambda = sigmoid(logits): C(lambda) = 2 atanh(1 - 2 lambda) / (1 - 2 lambda), which is
    l / tanh(l / 2) in the logit l. Evaluated as log|l| + log1p(e^-|l|) - log(-expm1(-|l|))
    (no overflow for any l) and, near lambda = 1/2 (|l| < 0.1), as its Taylor series
    log 2 + l^2 / 12 - 7 l^4 / 1440, where C -> 2."""
    a = logits.abs()
    near = a < _CB_SERIES_BELOW
    safe = torch.where(near, torch.ones_like(a), a)  # keeps the unused branch's gradient finite
    far = torch.log(safe) + torch.log1p(torch.exp(-safe)) - torch.log(-torch.expm1(-safe))
    l2 = logits * logits
    series = math.log(2.0) + l2 / 12.0 - 7.0 * l2 * l2 / 1440.0
    return torch.where(near, series, far)


def cb_log_prob(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Continuous Bernoulli log-density [n] of x in [0, 1]^d: the Bernoulli term plus the log
    normalising constants."""
    return bernoulli_log_prob(x, logits) + cb_log_norm(logits).sum(-1)


def cb_mean(logits: torch.Tensor) -> torch.Tensor:
    """The continuous Bernoulli's mean, lambda / (2 lambda - 1) + 1 / (2 atanh(1 - 2 lambda)) =
    1/2 + (coth(l/2) - 2/l) / 2, in float64 (the series y/3 - y^3/45 + 2 y^5/945 - y^7/4725
    of coth y - 1/y for |y| < 0.5, y = l/2, where the closed form cancels)."""
    y = 0.5 * logits.double()
    near = y.abs() < 0.5
    safe = torch.where(near, torch.ones_like(y), y)
    y2 = y * y
    series = y * (1.0 / 3.0 + y2 * (-1.0 / 45.0 + y2 * (2.0 / 945.0 - y2 / 4725.0)))
    return 0.5 + 0.5 * torch.where(near, series, 1.0 / torch.tanh(safe) - 1.0 / safe)


def cb_inverse_cdf(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """x ~ continuous Bernoulli from uniforms u by the inverse CDF, in float64:
    log(1 + u (2 lambda - 1) / (1 - lambda)) / log(lambda / (1 - lambda)) = log1p(u expm1(l)) / l,
    for l > 0 as 1 + log(u + (1 - u) e^-l) / l (no overflow); x = u + u (1 - u) l / 2 for
    |l| < 1e-6 (lambda = 1/2, where the quotient is 0 / 0). Clamped to [0, 1]."""
    l = logits.double()
    u = u.double()
    near = l.abs() < 1e-6
    safe = torch.where(near, torch.ones_like(l), l)
    pos = 1.0 + torch.log(u + (1.0 - u) * torch.exp(-safe.clamp(min=0.0))) / safe
    neg = torch.log1p(u * torch.expm1(safe.clamp(max=0.0))) / safe
    x = torch.where(near, u + 0.5 * u * (1.0 - u) * l, torch.where(l > 0, pos, neg))
    return x.clamp(0.0, 1.0)


def mixture_log_prob(
    z: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, chol: torch.Tensor
) -> torch.Tensor:
    """log sum_c w_c N(z; mu_c, L_c L_c^T) [n] for z [n, k], weights [K], means [K, k] and
    lower-triangular Cholesky factors chol [K, k, k]."""
    diff = (z[None, :, :] - means[:, None, :]).transpose(1, 2)  # [K, k, n]
    white = torch.linalg.solve_triangular(chol, diff, upper=False)  # L^-1 (z - mu)
    log_det = torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(-1)  # log |L| = log|S| / 2
    k = z.shape[1]
    comp = -0.5 * (white**2).sum(1) - log_det[:, None] - 0.5 * k * _LOG_2PI  # [K, n]
    return torch.logsumexp(comp + torch.log(weights)[:, None], dim=0)


def _standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z**2 + _LOG_2PI).sum(-1)


def elbo(
    model: EncoderDecoder,
    u: torch.Tensor,
    *,
    beta: float = 1.0,
    generator: torch.Generator | None = None,
    prior: PriorLogProb | None = None,
) -> torch.Tensor:
    """Per-example (beta-)ELBO [n] in model coordinates:
    E_q[log p(u|z)] - beta KL(q(z|u) || p(z)), one reparameterised draw z = mu + sigma e.
    The KL is in closed form for the prior N(0, I) (``prior`` None); for another prior
    (``prior``: its log-density) it is the one-draw estimate log q(z|u) - log p(z) at the same
    z. beta = 1 gives the usual lower bound on log p(u)."""
    mu_z, lv_z = model.encode(u)
    e = torch.randn(mu_z.shape, generator=generator, device=mu_z.device, dtype=mu_z.dtype)
    z = mu_z + torch.exp(0.5 * lv_z) * e
    rec = model.log_px(u, z)
    if prior is None:
        kl = 0.5 * (mu_z**2 + torch.exp(lv_z) - lv_z - 1.0).sum(-1)
    else:
        kl = -0.5 * (e**2 + lv_z + _LOG_2PI).sum(-1) - prior(z)
    return rec - beta * kl


def iwae_bound(
    model: EncoderDecoder,
    u: torch.Tensor,
    *,
    k: int = 100,
    generator: torch.Generator | None = None,
    chunk: int = 4096,
    prior: PriorLogProb | None = None,
) -> torch.Tensor:
    """Importance-weighted bound on log p(u) [n] (Burda, Grosse & Salakhutdinov 2016):
    log (1/k) sum_j p(u|z_j) p(z_j) / q(z_j|u), z_j ~ q(z|u). k = 1 is the ELBO; the bound is
    non-decreasing in k (in expectation) and tends to log p(u). ``prior``: log p(z) (default
    N(0, I))."""
    k = as_int(k, "k", 1)
    out = []
    for i in range(0, u.shape[0], max(1, chunk // k)):
        ub = u[i : i + max(1, chunk // k)]
        mu_z, lv_z = model.encode(ub)
        e = torch.randn((k, *mu_z.shape), generator=generator, device=ub.device, dtype=ub.dtype)
        z = mu_z + torch.exp(0.5 * lv_z) * e  # [k, n, latent]
        flat = z.reshape(-1, z.shape[-1])
        log_px = model.log_px(ub.repeat(k, 1), flat).reshape(k, -1)
        log_pz = (prior or _standard_normal_log_prob)(flat).reshape(k, -1)
        log_qz = -0.5 * (e**2 + lv_z + _LOG_2PI).sum(-1)
        out.append(torch.logsumexp(log_px + log_pz - log_qz, dim=0) - math.log(k))
    return torch.cat(out)


def implicit_sm_loss(
    score_fn: ScoreFn, u: torch.Tensor, *, create_graph: bool = True
) -> torch.Tensor:
    """Hyvarinen's implicit score matching, E[tr(ds/du) + 1/2 ||s||^2], with the exact
    Jacobian trace: one backward pass per dimension, each vectorised over the batch (cost
    grows with d; use :func:`sliced_sm_loss` beyond d ~ 10)."""
    u = u.detach().requires_grad_(True)
    s = score_fn(u)
    tr = torch.zeros(u.shape[0], device=u.device, dtype=s.dtype)
    for i in range(u.shape[1]):
        # rows are independent, so the gradient of the column sum is the per-row derivative
        # (the graph is kept for the next dimension even when no higher-order graph is built)
        g = torch.autograd.grad(
            s[:, i].sum(),
            u,
            create_graph=create_graph,
            retain_graph=create_graph or i + 1 < u.shape[1],
        )[0]
        tr = tr + g[:, i]
    return (tr + 0.5 * (s**2).sum(1)).mean()


def sliced_sm_loss(
    score_fn: ScoreFn,
    u: torch.Tensor,
    *,
    n_projections: int = 1,
    generator: torch.Generator | None = None,
    create_graph: bool = True,
) -> torch.Tensor:
    """Sliced score matching, variance-reduced form (Song, Garg, Shi & Ermon 2019):
    E[v^T (ds/du) v + 1/2 ||s||^2] with v ~ N(0, I); one backward pass for all
    ``n_projections`` projections (the batch is replicated)."""
    m = int(n_projections)
    u = u.detach().repeat(m, 1).requires_grad_(True)
    v = torch.randn(u.shape, generator=generator, device=u.device, dtype=u.dtype)
    s = score_fn(u)
    g = torch.autograd.grad((s * v).sum(), u, create_graph=create_graph)[0]
    return ((g * v).sum(1) + 0.5 * (s**2).sum(1)).mean()


def confinement_penalty(
    score_fn: ScoreFn,
    n: int,
    radius: float,
    *,
    dim: int,
    generator: torch.Generator | None = None,
    device: Any = "cpu",
    pull: float = 0.1,
    reach: float = 30.0,
) -> torch.Tensor:
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


def dsm_loss(
    score_fn: ScoreFn, u: torch.Tensor, sigma: float, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Denoising score matching at one noise level (Vincent 2011), weighted by sigma^2:
    1/2 E ||sigma s(u + sigma z) + z||^2. Its minimiser is the score of the data convolved
    with N(0, sigma^2 I); the weight only rescales the loss to O(1)."""
    z = torch.randn(u.shape, generator=generator, device=u.device, dtype=u.dtype)
    s = score_fn(u + sigma * z)
    return 0.5 * ((sigma * s + z) ** 2).sum(1).mean()


def empirical_target(
    noisy: torch.Tensor, sigma: torch.Tensor, reference: torch.Tensor
) -> torch.Tensor:
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


def ncsn_loss(
    model: NoiseConditional,
    u: torch.Tensor,
    sigmas: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
    continuous: bool = False,
    reference: torch.Tensor | None = None,
    spread: float = 1.0,
    spread_cap: float = 1.0,
) -> torch.Tensor:
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
