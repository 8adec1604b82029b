"""The training calls: :func:`train_vae`, :func:`train_score` and :func:`train_ncsn`.

Each takes data [N, d] (numpy, torch, or a .npy/.csv path; 1-D means d = 1), standardises it
internally (the normalisation travels inside the exported Weights), holds out a validation
split (its loss is recorded every epoch; with ``patience`` it drives early stopping), trains
with Adam on minibatches (:mod:`gensamp.learn.fit`) and returns the fitted model with its loss
history in ``model.history``. Every model exports with ``gensamp.export(model)``, sampler
defaults included.

The options every call shares (epochs, batch_size, lr, val_fraction, patience, normalize,
seed, device, progress, threads) are the fields of :class:`~gensamp.learn.fit.FitConfig`:
pass them as keyword arguments, or as ``fit=FitConfig(...)``.

Ctrl-C while training stops the run gracefully and raises :class:`TrainingInterrupted`
(a KeyboardInterrupt) whose ``.model`` is the model trained so far, finished as a completed
call would return it (export it with ``gensamp.export(exc.model)``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .. import activations as _acts
from .._validate import as_array, as_bool, as_choice, as_int, as_pos_float, import_sklearn
from ..schedules import ncsn_defaults, schedule_for_sigmas
from ..weights import LIKELIHOODS
from . import objectives as O
from .fit import FitConfig, History, Objective, Prepared, TrainingInterrupted, build, prepare
from .fit import fit as fit_model
from .models import NCSN, VAE, VARIANCES, ScoreNet

__all__ = [
    "FitConfig",
    "History",
    "TrainingInterrupted",
    "langevin_defaults",
    "train_ncsn",
    "train_score",
    "train_vae",
]

EXACT_MAX_DIM = 64  # beyond this the d backward passes of the exact trace are the wrong tool

VAE_FIT = FitConfig(epochs=400, lr=3e-3)
# A variance shared by all coordinates needs them in one unit: one scale, not one per axis.
VAE_SHARED_FIT = dataclasses.replace(VAE_FIT, normalize="isotropic")
#: train_vae's architecture and mixture size for the Gaussian likelihood
VAE_DEFAULTS: dict[str, Any] = {"latent_dim": 2, "hidden": (128, 128), "prior_components": 10}
#: ... and for the Bernoulli likelihoods (images), with their fit options (values in [0, 1],
#: no normalisation); measured on the digits' validation split, see train_vae
IMAGE_VAE: dict[str, Any] = {"latent_dim": 12, "hidden": (256, 256), "prior_components": 40}
IMAGE_VAE_FIT = FitConfig(epochs=500, lr=1e-3, normalize="none")
SCORE_FIT = FitConfig(epochs=200, lr=1e-3, patience=30)
NCSN_FIT = FitConfig(epochs=300, lr=3e-3, normalize="isotropic")


def _config(
    caller: str, default: FitConfig, given: FitConfig | None, options: dict[str, Any]
) -> FitConfig:
    if given is not None and not isinstance(given, FitConfig):
        raise TypeError(f"fit must be a gensamp.FitConfig, got {type(given).__name__}")
    return (given or default).with_options(caller, options)


def _finish(model: Any, hist: History, info: dict[str, Any]) -> Any:
    model.history = hist
    model.info.update(info)
    model = model.cpu()
    if hist.interrupted:
        raise TrainingInterrupted(model)
    return model


def langevin_defaults(
    model: ScoreNet,
    u: Any,
    *,
    step_fraction: float = 0.1,
    relax: float = 20.0,
    max_points: int = 2000,
) -> dict[str, Any]:
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


# ---- VAE --------------------------------------------------------------------------------------


def train_vae(
    data: Any,
    *,
    latent_dim: int | None = None,
    hidden: Sequence[int] | None = None,
    activation: str = "silu",
    beta: float = 1.0,
    warmup_epochs: int = 0,
    likelihood: str = "gaussian",
    variance: str = "conditional",
    prior: str = "normal",
    prior_components: int | None = None,
    fit: FitConfig | None = None,
    **options: Any,
) -> VAE:
    """Fit a VAE by maximising the ELBO (prior N(0, I) while training).

    Parameters
    ----------
    data : array [N, d] (numpy / torch / nested list; [N] for d = 1) or a .npy/.csv path.
    latent_dim, hidden, activation : architecture (encoder and decoder MLPs). Defaults: latent
        2 and hidden (128, 128) for the Gaussian likelihood; for the Bernoulli likelihoods
        (images) :data:`IMAGE_VAE` (latent 12, hidden (256, 256)).
    beta : weight of the KL term (beta-VAE; 1 = the ELBO).
    warmup_epochs : KL warm-up, beta ramps linearly from 0 over this many epochs (0 = off);
        early stopping starts once it is over.
    likelihood : {"gaussian", "bernoulli", "continuous_bernoulli"}
        The decoder's p(x|z): a Gaussian with a learned variance (any data), or for data in
        [0, 1] such as pixel intensities a Bernoulli (the loss is the binary cross-entropy
        with the continuous targets) or the continuous Bernoulli (its normalised density;
        what images want: on the 8x8 digits its samples came far closer to held-out images
        than the Bernoulli's). The two Bernoulli likelihoods need every value in [0, 1] and
        model it as it is: ``normalize`` must be "none", their default.
    variance : {"conditional", "shared"}
        The Gaussian decoder's variance: an output of the network for every z and coordinate,
        or one number for all of them, kept at its maximum-likelihood value, the mean squared
        reconstruction error (Rybkin et al. 2021's calibrated decoder; see
        :meth:`~gensamp.learn.models.VAE.log_px`). For images "shared" is the one to use: on
        the 8x8 digits its samples reached the held-out images' floor (ED^2 0.0067-0.0072 vs
        0.0065 on the validation split, continuous Bernoulli 0.010-0.019), and a conditional
        variance gave blurry means (0.05) because it lets the decoder call detail noise. It
        brings isotropic normalisation (one scale for every coordinate, so that the variance
        means the same everywhere) unless ``normalize`` says otherwise.
    prior : {"normal", "mixture"}
        The latent prior the model is sampled from: N(0, I), or a Gaussian mixture of
        ``prior_components`` full-covariance components fitted after training to the
        encoder means of the training split (ex-post density estimation, Ghosh et al. 2020;
        scikit-learn, the ``images`` extra, seeded from ``seed``). See
        :meth:`~gensamp.learn.models.VAE.fit_prior`.
    prior_components : int >= 1, at most the number of training points; default 10
        (Gaussian) or 40 (Bernoulli likelihoods), or the number of training points if fewer.
    fit, **options : the shared training options (:class:`FitConfig`). Gaussian: 400 epochs,
        lr 3e-3, no early stopping: on the seed mixture the held-out ELBO flattened (and
        stopped runs at ~100 epochs) while sample quality kept improving (W1 0.48 -> 0.23 by
        400 epochs). Bernoulli likelihoods: :data:`IMAGE_VAE_FIT`, 500 epochs at lr 1e-3 and
        no normalisation. The held-out loss is the -ELBO with beta = 1.

    Returns the fitted :class:`~gensamp.learn.models.VAE` (``.history``); export with
    ``gensamp.export(model)`` (likelihood and prior included) and sample with
    ``gensamp.vae_sample``.

    Notes
    -----
    The image defaults were chosen on the digits' validation split (trained on its 1,200
    "fit" images, 10,000 samples with the mixture prior, 3 seeds): at 500 epochs the
    continuous Bernoulli's samples had a squared energy distance of 0.017 to the 200
    validation images (the training images themselves: 0.012) and classifier confidence
    0.86. Longer training sharpens the decoder but moves the samples away (0.020 at 800
    epochs; 0.024 at 1,500 with latent 8) for no gain in confidence. A Bernoulli decoder's
    draws are binary (0.13); even its means (``noise=False``) scored 0.05.
    """
    likelihood = as_choice(likelihood, "likelihood", LIKELIHOODS)
    variance = as_choice(variance, "variance", VARIANCES)
    prior = as_choice(prior, "prior", ("normal", "mixture"))
    defaults = VAE_DEFAULTS if likelihood == "gaussian" else IMAGE_VAE
    latent_dim = defaults["latent_dim"] if latent_dim is None else latent_dim
    hidden = defaults["hidden"] if hidden is None else hidden
    default_components = prior_components is None
    if default_components:
        prior_components = defaults["prior_components"]
    prior_components = as_int(prior_components, "prior_components", 1)
    if prior == "mixture":  # before training: a missing extra should not cost a training run
        import_sklearn("sklearn.mixture", "train_vae(prior='mixture')")
    image = likelihood != "gaussian"
    default_fit = VAE_SHARED_FIT if variance == "shared" else VAE_FIT
    cfg = _config("train_vae", IMAGE_VAE_FIT if image else default_fit, fit, options)
    if image and cfg.normalize != "none":
        raise ValueError(
            f"likelihood={likelihood!r} models values in [0, 1] as they are: normalize must be "
            f"'none', got {cfg.normalize!r}"
        )
    activation = _acts.check(activation, hidden_only=True)
    beta = as_pos_float(beta, "beta")
    warmup_epochs = as_int(warmup_epochs, "warmup_epochs", 0)
    latent_dim = as_int(latent_dim, "latent_dim", 1)
    prep = prepare(data, cfg)
    if image:
        for part in (prep.train, prep.val):
            if part is not None and not bool(((part >= 0) & (part <= 1)).all()):
                raise ValueError(
                    f"likelihood={likelihood!r} needs data in [0, 1] (e.g. pixel intensities), "
                    f"got values in [{float(part.min()):.4g}, {float(part.max()):.4g}]"
                )
    if default_components:  # a default never exceeds the data it is fitted to
        prior_components = min(prior_components, int(prep.train.shape[0]))
    if prior == "mixture" and prior_components > prep.train.shape[0]:
        raise ValueError(
            f"prior_components={prior_components} exceeds the {prep.train.shape[0]} training "
            "points the mixture is fitted to"
        )
    d = prep.train.shape[1]
    model = build(
        cfg,
        lambda: VAE(
            d,
            latent_dim,
            hidden,
            activation,
            likelihood=likelihood,
            variance=variance,
            shift=prep.shift,
            scale=prep.scale,
        ),
    )
    settings = {
        "latent_dim": latent_dim,
        "hidden": list(model.hidden),
        "activation": activation,
        "beta": beta,
        "warmup_epochs": warmup_epochs,
        "likelihood": likelihood,
        "variance": variance,
        "prior": prior,
        **({"prior_components": prior_components} if prior == "mixture" else {}),
        **cfg.settings(),
        "n_train": int(prep.train.shape[0]),
    }

    def loss(m: VAE, u: torch.Tensor, g: torch.Generator, warm: float) -> torch.Tensor:
        return -O.elbo(m, u, beta=beta * warm, generator=g).mean()

    def held_out(m: VAE, u: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return -O.elbo(m, u, beta=1.0, generator=g).mean()

    obj = Objective("vae", loss, held_out, warmup_epochs=warmup_epochs)
    hist = fit_model(model, prep, obj, cfg, settings)
    if variance == "shared":  # the last batch's value -> the value for all training data
        model._fit_variance(prep.train, _prior_seed(cfg.seed))
    if prior == "mixture":
        # Ex post, on the encodings of the training split only (the held-out part stays out).
        with torch.no_grad():
            mu = model.encode(prep.train)[0].cpu().double().numpy()
        model._fit_prior(mu, prior_components, _prior_seed(cfg.seed))
    return _finish(model, hist, {})


def _prior_seed(seed: int) -> int:
    """scikit-learn's random_state for the mixture prior, from the run's seed: a sixth
    independent word of its SeedSequence (FitConfig.seeds holds the first five)."""
    return int(np.random.SeedSequence(seed).generate_state(6, dtype=np.uint32)[5])


# ---- unconditional score networks ------------------------------------------------------------


def train_score(
    data: Any,
    method: str = "exact",
    *,
    sigma: float | None = None,
    n_projections: int = 1,
    hidden: Sequence[int] = (128, 128),
    activation: str = "silu",
    confine: float = 1.0,
    fit: FitConfig | None = None,
    **options: Any,
) -> ScoreNet:
    """Fit an unconditional score network s(x) ~ grad log p(x).

    method : "exact" -- implicit score matching with the full Jacobian trace (one backward
        pass per dimension, vectorised over the batch; d <= 64 accepted, best for d <= ~10);
        "sliced" -- sliced score matching with ``n_projections`` Gaussian projections per
        point (any d); "denoising" -- denoising score matching at the single noise level
        ``sigma`` (model coordinates, i.e. in units of the data's std; default 0.1): it learns
        the score of the data convolved with N(0, sigma^2).
    hidden, activation : architecture; ``activation`` should be smooth: score matching
        differentiates the network's Jacobian.
    confine : weight of :func:`~gensamp.learn.objectives.confinement_penalty` added to the
        training loss (not to the held-out loss): beyond the largest data norm the score must
        not point outward (0 disables it; without it plain-Langevin chains started in the
        tails can run off).
    fit, **options : the shared training options (:class:`FitConfig`); here 200 epochs,
        lr 1e-3 and early stopping on (``patience=30``): the exact and sliced held-out losses
        are the objective itself.

    The plain-Langevin settings from :func:`langevin_defaults` are stored as the sampler
    defaults (``weights.sampler["eps"]``, ``["T"]``). Plain Langevin recovers the shape of
    each mode but not, in general, the weights of well-separated modes: use
    :func:`train_ncsn` for those.
    """
    method = as_choice(method, "method", ("exact", "sliced", "denoising"))
    cfg = _config("train_score", SCORE_FIT, fit, options)
    activation = _acts.check(activation, hidden_only=True)
    n_projections = as_int(n_projections, "n_projections", 1)
    confine = as_pos_float(confine, "confine", allow_zero=True)
    if method == "denoising":
        sigma = 0.1 if sigma is None else as_pos_float(sigma, "sigma")
    elif sigma is not None:
        raise ValueError(f"sigma applies to method='denoising' only, not {method!r}")
    prep = prepare(data, cfg)
    d = prep.train.shape[1]
    if method == "exact" and d > EXACT_MAX_DIM:
        raise ValueError(
            f"method='exact' takes one backward pass per dimension; d={d} > "
            f"{EXACT_MAX_DIM}: use method='sliced'"
        )
    model = build(cfg, lambda: ScoreNet(d, hidden, activation, shift=prep.shift, scale=prep.scale))
    settings: dict[str, Any] = {
        "method": method,
        "hidden": list(model.hidden),
        "activation": activation,
        **cfg.settings(),
        "n_train": int(prep.train.shape[0]),
    }
    if method == "sliced":
        settings["n_projections"] = n_projections
    if method == "denoising":
        settings["sigma"] = sigma
    settings["confine"] = confine
    radius = float(prep.train.norm(dim=1).max())

    def objective(
        m: ScoreNet, u: torch.Tensor, g: torch.Generator, create_graph: bool = True
    ) -> torch.Tensor:
        if method == "exact":
            return O.implicit_sm_loss(m, u, create_graph=create_graph)
        if method == "sliced":
            return O.sliced_sm_loss(
                m, u, n_projections=n_projections, generator=g, create_graph=create_graph
            )
        assert sigma is not None
        return O.dsm_loss(m, u, sigma, generator=g)

    def loss(m: ScoreNet, u: torch.Tensor, g: torch.Generator, warm: float = 1.0) -> torch.Tensor:
        value = objective(m, u, g)
        if confine > 0:
            value = value + confine * O.confinement_penalty(
                m, u.shape[0], radius, dim=d, generator=g, device=u.device
            )
        return value

    def held_out(m: ScoreNet, u: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return objective(m, u, g, create_graph=False)

    obj = Objective(f"score/{method}", loss, held_out, held_out_needs_grad=method != "denoising")
    hist = fit_model(model, prep, obj, cfg, settings)
    model.sampler_defaults = langevin_defaults(model, prep.train.cpu().numpy())
    return _finish(model, hist, {"dsm_sigma": sigma} if method == "denoising" else {})


# ---- noise-conditional score networks --------------------------------------------------------


def _ncsn_schedule(
    prep: Prepared,
    sigmas: Any,
    sigma_min: float,
    sigma_max: float | None,
    n_levels: int | None,
    T: int,
    eps: float | None,
) -> dict[str, Any]:
    if sigmas is not None:
        defaults = schedule_for_sigmas(sigmas, T)
    else:
        u_np = prep.train.cpu().double().numpy()
        defaults = ncsn_defaults(
            u_np, sigma_min=sigma_min, T=T, sigma_max=sigma_max, n_levels=n_levels
        )
    if eps is not None:
        defaults["eps"] = as_pos_float(eps, "eps")
    return defaults


def _ncsn_objective(
    prep: Prepared,
    cfg: FitConfig,
    *,
    continuous: bool,
    target: str,
    spread: float,
    spread_cap: float,
    reference_size: int,
    ema: float | None,
) -> Objective:
    full_ref = target == "empirical" and prep.train.shape[0] <= reference_size
    dev = prep.train.device
    g_ref = torch.Generator(device=dev).manual_seed(cfg.seeds[2] + 1)

    def loss(m: NCSN, u: torch.Tensor, g: torch.Generator, warm: float = 1.0) -> torch.Tensor:
        ref = None
        if target == "empirical":
            if full_ref:
                ref = prep.train
            else:  # a random reference batch plus the batch's own points (STF)
                pick = torch.randint(
                    0, prep.train.shape[0], (reference_size,), generator=g_ref, device=dev
                )
                ref = torch.cat([prep.train[pick], u])
        return O.ncsn_loss(
            m,
            u,
            generator=g,
            continuous=continuous,
            reference=ref,
            spread=spread,
            spread_cap=spread_cap,
        )

    def held_out(m: NCSN, u: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        # Several noise draws per held-out point: one draw leaves the comparison between
        # epochs dominated by the draws rather than the model.
        return O.ncsn_loss(m, u.repeat(8, 1), generator=g, continuous=continuous)

    return Objective("ncsn", loss, held_out, ema=ema)


def train_ncsn(
    data: Any,
    *,
    sigmas: Sequence[float] | None = None,
    sigma_min: float = 0.03,
    sigma_max: float | None = None,
    n_levels: int | None = None,
    T: int = 150,
    eps: float | None = None,
    sigma_input: str = "log_sigma",
    divide_by_sigma: bool = True,
    continuous: bool = True,
    target: str = "empirical",
    spread: float = 3.0,
    spread_cap: float = 1.0,
    reference_size: int = 8192,
    ema: float | None = 0.999,
    hidden: Sequence[int] = (64, 64, 64),
    activation: str = "silu",
    residual: bool = False,
    embedding: str = "none",
    precondition: str = "none",
    fit: FitConfig | None = None,
    **options: Any,
) -> NCSN:
    """Fit a noise-conditional score network (NCSN; Song & Ermon 2019, "Generative Modeling
    by Estimating Gradients of the Data Distribution", with the defaults of Song & Ermon 2020,
    "Improved Techniques for Training Score-Based Generative Models", arXiv:2006.09011).

    Noise schedule and sampler defaults come from :func:`gensamp.schedules.ncsn_defaults`
    (NCSNv2 techniques 1-3: sigma_1 = largest pairwise data distance, geometric ratio and L
    from technique 2, the step size from technique 3's Proposition 3 for ``T`` steps per
    level), all in model coordinates; ``sigmas`` (decreasing), ``sigma_min``, ``sigma_max``,
    ``n_levels`` and ``eps`` override them. The network is s(u, sigma) = net(cat[u, log
    sigma]) / sigma by default (``sigma_input`` "log_sigma" | "sigma" | "none",
    ``divide_by_sigma``).

    Objective :func:`~gensamp.learn.objectives.ncsn_loss`, lambda(sigma) = sigma^2, one sigma
    per example:

    * ``continuous=True`` (default) draws log sigma uniformly over [sigma_L, sigma_1] rather
      than from the L levels only (as in later score-based models): on the seed mixture
      this made the learned scores between the modes markedly more stable;
    * ``target="empirical"`` (default) regresses on the exact conditional expectation of
      the denoising target over the training set (``empirical_target``; at most
      ``reference_size`` reference points per step, plus the batch itself, when the set is
      larger), which has the same minimiser as the classic target -z (``target="noisy"``)
      without its variance, the dominant error at small sigma;
    * ``spread`` (with the empirical target only): half of each batch is perturbed with
      max(sigma, min(spread * sigma, spread_cap)) but scored at sigma, so the empty gaps
      between separated modes are trained on at small sigma too. Without it, chains leaked
      across those gaps late in annealing and mode weights drifted by 1-5 points. The
      widened noise is at most ``spread_cap`` (standardised units; see ``ncsn_loss``).

    ``residual`` (blocks h + act(Linear(h)) between hidden layers of one width),
    ``embedding="fourier"`` (a Gaussian Fourier projection of log sigma instead of one
    log-sigma input) and ``precondition="edm"`` (Karras et al. 2022's c_skip/c_out/c_in/
    c_noise) change the network (see :class:`~gensamp.learn.models.NCSN`); such a network
    exports as a format-2 graph. bench/quality.py (``--part options``) measures them.

    ``ema`` is the decay of the exponential moving average of the weights that is evaluated
    and returned (NCSNv2: 0.999; None disables it). ``fit, **options`` are the shared
    training options (:class:`FitConfig`); here 300 epochs, lr 3e-3, no early stopping, and
    ``normalize="isotropic"`` (one scale for all axes) so isotropic noise stays isotropic in
    data space. Early stopping (``patience``) compares the classic denoising loss on the
    held-out split with the same noise draws every epoch.

    Sample with ``gensamp.annealed_langevin(gensamp.export(model), n=...)``: the stored
    defaults are used.
    """
    cfg = _config("train_ncsn", NCSN_FIT, fit, options)
    activation = _acts.check(activation, hidden_only=True)
    if ema is not None:
        ema = as_pos_float(ema, "ema")
        if ema >= 1:
            raise ValueError(f"ema must be in (0, 1) or None, got {ema}")
    target = as_choice(target, "target", ("empirical", "noisy"))
    spread = as_pos_float(spread, "spread")
    if spread < 1:
        raise ValueError(f"spread must be >= 1, got {spread}")
    spread_cap = as_pos_float(spread_cap, "spread_cap")
    if target == "noisy":
        spread = 1.0  # the -z target is only valid for inputs drawn at the scored noise level
    reference_size = as_int(reference_size, "reference_size", 1)
    continuous = as_bool(continuous, "continuous")
    T = as_int(T, "T", 1)
    prep = prepare(data, cfg)
    d = prep.train.shape[1]
    defaults = _ncsn_schedule(prep, sigmas, sigma_min, sigma_max, n_levels, T, eps)
    model = build(
        cfg,
        lambda: NCSN(
            d,
            defaults["sigmas"],
            hidden,
            activation,
            sigma_input=sigma_input,
            divide_by_sigma=divide_by_sigma,
            shift=prep.shift,
            scale=prep.scale,
            eps=defaults["eps"],
            T=T,
            residual=residual,
            embedding=embedding,
            precondition=precondition,
        ),
    )
    settings = {
        "hidden": list(model.hidden),
        "activation": activation,
        "residual": model.residual,
        "embedding": model.embedding,
        "precondition": model.precondition,
        **cfg.settings(),
        "ema": ema,
        "n_train": int(prep.train.shape[0]),
        "n_levels": len(defaults["sigmas"]),
        "continuous": continuous,
        "target": target,
        "spread": spread,
        "spread_cap": spread_cap,
    }
    obj = _ncsn_objective(
        prep,
        cfg,
        continuous=continuous,
        target=target,
        spread=spread,
        spread_cap=spread_cap,
        reference_size=reference_size,
        ema=ema,
    )
    hist = fit_model(model, prep, obj, cfg, settings)
    return _finish(model, hist, {"schedule": "NCSNv2 (Song & Ermon 2020)"})
