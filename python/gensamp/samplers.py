"""Langevin, annealed Langevin and VAE sampling on the C++ engine.

Step convention (the seed deck's, and Song & Ermon 2019, Algorithm 1):
``x <- x + (alpha/2) * s(x, sigma) + sqrt(alpha) * z``, ``z ~ N(0, I)``. Some code bases write
``x + alpha * s + sqrt(2 alpha) z``; that is the same chain with alpha halved.

Defaults: ``n=1000`` chains. Without ``x0`` the chains start from N(0, s^2 I) in the model's
coordinates (mapped to data space by the stored normalisation), s = sigma_1 for annealed
Langevin and s = 1 for plain Langevin; the draw uses the reserved step 2^32-1 of each chain's
noise stream, so it too depends only on (seed, chain).

Units: sigmas and eps are in the model's coordinates (those it was trained in; identical to
data space for a GaussianMixture or a network exported without normalisation).

Noise: chain j at global step t (t = level * T + step) uses Philox4x32-10 with counter
(k, t, j mod 2^32, j div 2^32) and key (seed mod 2^32, seed div 2^32), Box-Muller on each
output word pair. Results are bit-identical for any thread count and tiling.

Shards: ``chain_offset=a`` makes row i of a call chain a + i, its noise and default start
included, so chains [a, b) sampled with ``chain_offset=a, n=b-a`` are rows a..b-1 of the call
over [0, b), bit for bit, however a run is cut (what :mod:`gensamp.distributed` relies on).
Chain indices are 64-bit: chain_offset + n <= 2^64.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from typing import Any

import numpy as np

from . import _core, methods
from ._inputs import DEFAULT_N, as_model, with_defaults
from ._resources import check_engine_memory, check_memory, check_run_memory, resolve_threads
from ._validate import (
    F32_MAX,
    as_bool,
    as_chain_offset,
    as_choice,
    as_int,
    as_pos_float,
    as_rows,
    as_sigmas,
)
from .mixture import GaussianMixture
from .weights import Weights

_INT_MAX = 2**31 - 1  # T, record_every: C int in the engine


class DivergenceWarning(RuntimeWarning):
    """Some chains ended non-finite. ``indices`` lists their rows in the returned array (NaN/Inf
    there); ``chains`` their global chain indices, ``chain_offset + indices`` (the same unless
    the call had a chain_offset)."""

    def __init__(self, indices: np.ndarray, n: int, chain_offset: int = 0) -> None:
        self.indices = np.asarray(indices)
        self.chains = [chain_offset + int(i) for i in self.indices]  # ints: may pass 2^63
        self.count = int(self.indices.size)
        more = " ..." if self.count > 10 else ""
        where = "rows " + ", ".join(str(i) for i in self.indices[:10]) + more
        if chain_offset:
            where += "; chains " + ", ".join(str(j) for j in self.chains[:10]) + more
        super().__init__(
            f"{self.count} of {n} chains diverged to NaN/Inf ({where}); "
            "reduce eps or check the score model"
        )


def _at_most(v: int, name: str) -> int:
    if v > _INT_MAX:
        raise ValueError(f"{name} must be <= {_INT_MAX}, got {v}")
    return v


def _check_step(alpha: float, what: str) -> None:
    # The engine steps in float32: a step size beyond its range turns every chain into Inf/NaN.
    if not (math.isfinite(alpha) and alpha < F32_MAX):
        raise ValueError(f"{what} is {alpha:.3g}, beyond float32 range; use a smaller eps")


def _run_args(
    model: Weights | GaussianMixture,
    steps: int,
    n: Any,
    x0: Any,
    seed: Any,
    record_every: Any,
    denoise: Any,
    tile: Any,
    chain_offset: Any,
) -> tuple[int, np.ndarray | None, int, int, int, int]:
    """A run's arguments besides the model, schedule and threads, checked:
    (n, x0, seed, record_every, tile, chain_offset). Shared with gensamp.distributed, which
    checks a whole run on the client before it is cut into shards."""
    seed = as_int(seed, "seed", 0, 2**64 - 1)
    record_every = _at_most(as_int(record_every, "record_every", 0), "record_every")
    tile = as_int(64 if tile is None else tile, "tile", 1, 1 << 16)
    if not isinstance(denoise, (bool, np.bool_)):
        raise TypeError("denoise must be a bool")
    if x0 is not None:
        if n is not None:
            n = as_int(n, "n", 1)
        x0 = as_rows(x0, model.dim, "x0", n)  # data space: the engine maps it to model coordinates
        n = x0.shape[0]
    else:
        n = as_int(DEFAULT_N if n is None else n, "n", 1)
    chain_offset = as_chain_offset(chain_offset, n)
    if steps >= 2**32 - 1:
        raise ValueError(f"L*T = {steps} steps is more than the noise stream allows (2^32-2)")
    return n, x0, seed, record_every, tile, chain_offset


def _run(
    model: Weights | GaussianMixture,
    sigmas: list[float],
    eps: float,
    T: int,
    annealed: bool,
    n: Any,
    x0: Any,
    init_std: float,
    seed: Any,
    threads: Any,
    record_every: Any,
    denoise: bool,
    tile: Any,
    chain_offset: Any,
    progress: Any = None,
) -> Any:
    schedule = (
        _core.annealed_schedule(sigmas, eps, T)
        if annealed
        else _core.plain_schedule(sigmas[0], eps, T)
    )
    x, traj, _ = _execute(
        model,
        schedule,
        init_std,
        n,
        x0,
        seed,
        threads,
        record_every,
        denoise,
        tile,
        chain_offset,
        progress,
    )
    return (x, traj) if record_every else x


def _execute(
    model: Weights | GaussianMixture,
    schedule: Any,
    init_std: float,
    n: Any,
    x0: Any,
    seed: Any,
    threads: Any,
    record_every: Any,
    denoise: bool,
    tile: Any,
    chain_offset: Any,
    progress: Any,
    init_mean: np.ndarray | None = None,
    stacklevel: int = 4,
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """One engine run of ``schedule``: (x, trajectory or None, score evaluations per chain).
    Chains without x0 start from N(init_mean, init_std^2 I) in model coordinates."""
    d = model.dim
    threads = resolve_threads(threads)
    steps = schedule.total_steps
    n, x0, seed, record_every, tile, chain_offset = _run_args(
        model, steps, n, x0, seed, record_every, denoise, tile, chain_offset
    )
    nrec = steps // record_every if record_every else 0
    states = 4 * n * d * (1 + nrec)  # x and the trajectory, float32
    what = f"{n} chains x {nrec + 1} states x d={d} (float32)"
    check_memory(states, what)  # first alone: such an n may not even fit the engine's integers
    check_engine_memory(model)
    engine = model._engine()
    options = _core.RunOptions(
        seed=seed,
        threads=threads,
        tile=tile,
        record_every=record_every,
        denoise=bool(denoise),
        chain_offset=chain_offset,
    )
    levels = len(schedule.sigmas)
    check_run_memory(states, _core.run_bytes(engine, schedule, n, options), what, levels)
    with _progress(progress, n) as report:
        x, traj, div, evals = _core.run(
            engine, schedule, n, x0, init_std, options, report, init_mean
        )
    if div.size:
        warnings.warn(DivergenceWarning(div, n, chain_offset), stacklevel=stacklevel)
    if record_every and traj is None:  # fewer steps than record_every: T // k = 0 states
        traj = np.empty((0, n, d), np.float32)
    return x, traj, evals


class _progress:
    """A tqdm bar over the run's chains, fed by the engine's poll (every 50 ms at most), or
    nothing. ``progress=None``: a bar on a terminal (stderr a TTY) for runs longer than 2 s;
    True / False force it on or off."""

    def __init__(self, progress: Any, n: int) -> None:
        if progress is not None and not isinstance(progress, (bool, np.bool_)):
            raise TypeError(f"progress must be None, True or False, got {progress!r}")
        show = sys.stderr.isatty() if progress is None else bool(progress)
        self.bar: Any = None
        if show:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=n,
                unit="chain",
                unit_scale=True,
                delay=0 if progress else 2.0,
                dynamic_ncols=True,
                leave=False,
            )

    def __enter__(self) -> Any:
        if self.bar is None:
            return None
        bar = self.bar

        def report(fraction: float) -> None:
            done = int(fraction * bar.total)
            if done > bar.n:
                bar.update(done - bar.n)

        return report

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            if exc[0] is None:
                self.bar.update(self.bar.total - self.bar.n)
            self.bar.close()


def _score_model(weights: Any, sampler: str) -> Weights | GaussianMixture:
    model = as_model(weights)
    if isinstance(model, Weights) and model.role == "vae_decoder":
        raise TypeError(f"a VAE decoder is sampled with gensamp.vae_sample, not {sampler}")
    return model


def _langevin_settings(
    weights: Any, eps: Any, T: Any, sigma: Any
) -> tuple[Weights | GaussianMixture, list[float], float, int]:
    """langevin's model and schedule, checked, stored defaults filled in: (model, [sigma],
    eps, T)."""
    model = _score_model(weights, "langevin")
    # an NCSN's stored eps belongs to its annealed schedule, not to plain Langevin
    stored = model.sampler if isinstance(model, Weights) and model.role != "ncsn" else {}
    eps, T = with_defaults(stored, {"eps": eps, "T": T}, "plain-Langevin ", "eps=0.01, T=1000")
    eps = as_pos_float(eps, "eps", f32=True)
    _check_step(eps, "eps")
    T = _at_most(as_int(T, "T", 1), "T")
    needs_sigma = isinstance(model, Weights) and (model.conditioned or model.divide_by_sigma)
    if sigma is None and needs_sigma:
        raise ValueError("this network is noise-conditional: pass sigma > 0 to langevin")
    sig = (
        0.0 if sigma is None else as_pos_float(sigma, "sigma", allow_zero=not needs_sigma, f32=True)
    )
    return model, [sig], eps, T


def _annealed_settings(
    weights: Any, sigmas: Any, eps: Any, T: Any
) -> tuple[Weights | GaussianMixture, list[float], float, int]:
    """annealed_langevin's model and schedule, checked, stored defaults filled in: (model,
    sigmas, eps, T)."""
    model = _score_model(weights, "annealed_langevin")
    stored = model.sampler if isinstance(model, Weights) else {}
    sigmas, eps, T = with_defaults(
        stored,
        {"sigmas": sigmas, "eps": eps, "T": T},
        "",
        "sigmas=np.geomspace(10, 0.1, 10), eps=0.2 * 0.1**2, T=100",
    )
    sig = as_sigmas(sigmas, f32=True)
    eps = as_pos_float(eps, "eps", f32=True)
    ratio = sig[0] / sig[-1]
    _check_step(eps * ratio * ratio, "the first level's step eps * (sigmas[0] / sigmas[-1])**2")
    T = _at_most(as_int(T, "T", 1), "T")
    return model, sig, eps, T


def _vae_decoder(decoder: Any) -> Weights:
    model = as_model(decoder)
    if not isinstance(model, Weights) or model.role != "vae_decoder":
        raise TypeError("vae_sample needs Weights with role 'vae_decoder' (a VAE's decoder)")
    return model


def langevin(
    weights: Any,
    eps: float | None = None,
    T: int | None = None,
    *,
    n: int | None = None,
    x0: Any = None,
    seed: int = 0,
    threads: int | None = None,
    record_every: int = 0,
    sigma: float | None = None,
    tile: int | None = None,
    chain_offset: int = 0,
    progress: bool | None = None,
) -> Any:
    """Plain (unadjusted) Langevin: T steps of x <- x + eps/2 s(x) + sqrt(eps) z.

    Parameters
    ----------
    weights : Weights, path or GaussianMixture
    eps : float > 0, step size.  T : int >= 1, number of steps. Left as None, they are taken
        from the weights' stored sampler defaults (``gensamp.train_score`` stores them;
        ValueError if absent).
    n : number of chains (default 1000, or len(x0)).  x0 : [n, d] initial states (data space).
    seed : int in [0, 2^64).  threads : int, default $GENSAMP_NUM_THREADS or all cores.
    record_every : k > 0 also returns the trajectory [T // k, n, d] (state after every k-th step).
    sigma : noise level for a noise-conditional network (required there), or to sample a
        GaussianMixture convolved with N(0, sigma^2 I) (default 0).
    tile : chains per work unit (advanced; results do not depend on it).
    chain_offset : global index of the first chain (default 0): row i is chain chain_offset + i,
        so a run cut into shards [a, b) reproduces the rows of the whole run bit for bit.
        0 <= chain_offset and chain_offset + n <= 2^64.
    progress : a tqdm bar of the chain-steps done, on stderr; None (default) shows it on a
        terminal once a run has taken 2 s; True / False force it on / off.

    Returns samples [n, d] float32, or (samples, trajectory) when record_every > 0.
    Chains that end non-finite raise a :class:`DivergenceWarning` listing them.
    """
    model, sig, eps, T = _langevin_settings(weights, eps, T, sigma)
    return _run(
        model,
        sig,
        eps,
        T,
        False,
        n,
        x0,
        1.0,
        seed,
        threads,
        record_every,
        False,
        tile,
        chain_offset,
        progress,
    )


def annealed_langevin(
    weights: Any,
    sigmas: Any = None,
    eps: float | None = None,
    T: int | None = None,
    *,
    n: int | None = None,
    x0: Any = None,
    seed: int = 0,
    threads: int | None = None,
    denoise: bool = False,
    record_every: int = 0,
    tile: int | None = None,
    chain_offset: int = 0,
    progress: bool | None = None,
) -> Any:
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1).

    For sigma_1 > ... > sigma_L: alpha_i = eps * sigma_i^2 / sigma_L^2, then T steps of
    x <- x + alpha_i/2 * s(x, sigma_i) + sqrt(alpha_i) z. ``sigmas``, ``eps`` and ``T`` left as
    None are taken from the weights' stored sampler defaults (ValueError if absent).
    ``denoise=True`` adds the Tweedie step x + sigma_L^2 s(x, sigma_L) at the end.
    ``progress`` as in :func:`langevin`. For few-step samplers at a budget of score
    evaluations, see :func:`sample`.
    eps must scale with sigma_L^2: eps ~ 0.1-0.2 sigma_L^2 is a good start (the paper's
    eps = 2e-5 assumes sigma_L = 0.01). Other arguments and the return value as in
    :func:`langevin`; the trajectory has L*T // record_every states.
    """
    model, sig, eps, T = _annealed_settings(weights, sigmas, eps, T)
    return _run(
        model,
        sig,
        eps,
        T,
        True,
        n,
        x0,
        sig[0],
        seed,
        threads,
        record_every,
        denoise,
        tile,
        chain_offset,
        progress,
    )


def vae_sample(
    decoder: Any,
    n: int = DEFAULT_N,
    *,
    seed: int = 0,
    noise: bool = True,
    threads: int | None = None,
    tile: int | None = None,
    chain_offset: int = 0,
    progress: bool | None = None,
) -> np.ndarray:
    """Ancestral sampling from a VAE decoder: z from the stored latent prior, x from p(x | z).

    Parameters
    ----------
    decoder : Weights (role "vae_decoder") or a path to a weights file
        Its prior is N(0, I), or the Gaussian mixture it stores (``decoder.prior``); its
        likelihood (``decoder.likelihood``) is "gaussian" (x = mean + exp(logvar / 2) e),
        "bernoulli" (x_i = 1 if u_i < lambda_i else 0, lambda = sigmoid(logit)) or
        "continuous_bernoulli" (x_i in [0, 1] by the inverse CDF, u_i uniform).
    n : int
        Number of samples.
    seed : int in [0, 2^64)
    noise : bool, default True
        False returns the decoder's mean for each z instead of a draw from p(x | z): the
        Gaussian mean, lambda (Bernoulli) or the continuous Bernoulli's mean. z is drawn
        from the prior either way.
    threads, tile, chain_offset, progress
        As in :func:`langevin`; the result is bit-identical for any thread count and tiling.

    Returns
    -------
    ndarray of float32, shape (n, d)
        Samples in data space.

    Notes
    -----
    Row i is chain j = chain_offset + i, whose noise stream gives z's standard normals e at
    step 0 (z = e, or mu_c + L_c e for mixture component c), the decoder noise at step 1 (d
    normals, or d uniforms u = (w + 1/2) 2^-32 from the Philox words w for the Bernoulli
    likelihoods) and, for a mixture, the component at step 2: the first c with
    u * sum(w) < w_0 + ... + w_c (the running sums in float64).
    """
    noise = as_bool(noise, "noise")
    return _vae(_vae_decoder(decoder), n, seed, threads, tile, chain_offset, progress, noise)


def _vae(
    model: Weights,
    n: Any,
    seed: Any,
    threads: Any,
    tile: Any,
    chain_offset: Any,
    progress: Any,
    noise: bool = True,
) -> np.ndarray:
    n = as_int(DEFAULT_N if n is None else n, "n", 1)
    seed = as_int(seed, "seed", 0, 2**64 - 1)
    chain_offset = as_chain_offset(chain_offset, n)
    threads = resolve_threads(threads)
    tile = as_int(64 if tile is None else tile, "tile", 1, 1 << 16)
    states = 4 * n * model.dim
    what = f"{n} samples x d={model.dim} (float32)"
    check_memory(states, what)
    check_engine_memory(model)
    engine = model._engine()
    likelihood = str(model.likelihood)
    K = 0 if model.prior is None else len(model.prior[0])
    need = _core.vae_run_bytes(engine, n, threads, tile, likelihood, noise, K)
    check_run_memory(states, need, what, 0)
    with _progress(progress, n) as report:
        x, div = _core.vae_run(
            engine, n, seed, threads, tile, chain_offset, report, likelihood, noise, model.prior
        )
    if div.size:
        warnings.warn(DivergenceWarning(div, n, chain_offset), stacklevel=3)
    return x


def _mixture_range(mix: GaussianMixture) -> tuple[float, float, np.ndarray, float]:
    """A GaussianMixture's default noise range and starting distribution (its exact score
    holds at any sigma): (sigma_max, sigma_min, mean, variance), the mean and the variance per
    coordinate (averaged over coordinates) from :meth:`GaussianMixture.moments`. sigma_max is
    the diameter of the box holding every component's mean +- 3 standard deviations (NCSNv2's
    technique 1, the largest distance between likely points); sigma_min 0.03 of the mixture's
    standard deviation, the level an NCSN stores by default (its units are standardised)."""
    sd = np.sqrt(np.diagonal(mix.covariances, axis1=1, axis2=2))  # [K, d]
    lo, hi = (mix.means - 3 * sd).min(0), (mix.means + 3 * sd).max(0)
    mean, cov = mix.moments()
    var = float(np.trace(cov)) / mix.dim
    return float(np.linalg.norm(hi - lo)), 0.03 * math.sqrt(var), mean, var


def sample(
    weights: Any,
    n: int | None = None,
    *,
    method: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    threads: int | None = None,
    x0: Any = None,
    progress: bool | None = None,
    return_info: bool = False,
    tile: int | None = None,
    chain_offset: int = 0,
) -> Any:
    """Samples from any model with the sampler that suits it, at a budget of ``steps`` score
    evaluations per chain.

    * an NCSN (``gensamp.train_ncsn``): the method and budget it stores (``sampler["method"]``,
      ``sampler["steps"]``), else ``gensamp.methods.DEFAULT_METHOD`` at
      ``DEFAULT_STEPS`` evaluations, over its stored noise range sigmas[0] .. sigmas[-1];
    * a ``GaussianMixture``: the same default method, its noise range from its own spread
      (``_mixture_sigmas``: sigma_max the diameter of its +-3 standard deviation box,
      sigma_min 1% of its smallest standard deviation);
    * a score network without noise input: plain Langevin with its stored eps and T
      (``steps`` overrides T); method "langevin";
    * a VAE decoder: ancestral sampling (method "ancestral", no score evaluations).

    ``method`` is one of ``gensamp.methods.METHODS`` (see :mod:`gensamp.methods` for each
    update and its cost) for noise-conditional models. ``progress``: a tqdm bar of the chains
    done, None showing it on a terminal for runs over 2 s. ``seed``, ``threads``, ``x0``,
    ``tile``, ``chain_offset``: as in :func:`annealed_langevin`; the result is bit-identical
    for any thread count, tiling or split into shards.

    Returns samples [n, d] float32 in data space, or ``(x, info)`` with ``return_info=True``:
    ``info["method"]``, ``info["steps"]`` (the budget), ``info["score_evals"]`` (per chain, as
    the engine counted them), ``info["seconds"]`` (wall time of the run) and the schedule's
    settings.
    """
    t0 = time.perf_counter()
    return_info = as_bool(return_info, "return_info")
    model = as_model(weights)
    info: dict[str, Any]
    if isinstance(model, Weights) and model.role == "vae_decoder":
        if method not in (None, "ancestral"):
            raise ValueError(f"a VAE decoder is sampled by ancestral sampling, not {method!r}")
        if steps is not None:
            raise ValueError("steps does not apply to a VAE decoder (one decoder pass per sample)")
        if x0 is not None:
            raise ValueError("x0 does not apply to a VAE decoder")
        x = _vae(model, n, seed, threads, tile, chain_offset, progress)
        info = {"method": "ancestral", "steps": 0, "score_evals": 0.0}
    elif isinstance(model, Weights) and not (model.conditioned or model.divide_by_sigma):
        if method not in (None, "langevin"):
            raise ValueError(
                f"a score network without noise input is sampled by 'langevin', not {method!r}"
            )
        _, sig, eps, T = _langevin_settings(model, None, steps, None)
        schedule = _core.plain_schedule(sig[0], eps, T)
        x, _, evals = _execute(
            model,
            schedule,
            1.0,
            n,
            x0,
            seed,
            threads,
            0,
            False,
            tile,
            chain_offset,
            progress,
            None,
            3,
        )
        info = {"method": "langevin", "steps": T, "score_evals": evals, "eps": eps}
    else:
        init_mean = None
        if isinstance(model, Weights):
            var = 1.0  # standardised coordinates (a net without normalisation: its data's scale)
            stored = model.sampler
            if "sigmas" not in stored:
                raise ValueError(
                    "this NCSN stores no noise levels (sampler['sigmas']); "
                    "use annealed_langevin with sigmas=..."
                )
            if len(stored["sigmas"]) < 2:
                raise ValueError(
                    "this NCSN stores a single noise level; gensamp.sample needs its range "
                    "(sampler['sigmas'] from sigma_max down to sigma_min): use langevin with "
                    "sigma=..."
                )
            sigma_max, sigma_min = stored["sigmas"][0], stored["sigmas"][-1]
            default_method = stored.get("method", methods.DEFAULT_METHOD)
            default_steps = stored.get("steps")
        else:
            sigma_max, sigma_min, mean, var = _mixture_range(model)
            init_mean = mean.astype(np.float32)
            default_method, default_steps = methods.DEFAULT_METHOD, None
        method = default_method if method is None else method
        method = as_choice(method, "method", methods.METHODS)
        if steps is None:
            steps = default_steps if method == default_method and default_steps else None
            steps = methods.DEFAULT_STEPS if steps is None else steps
        schedule, denoise, settings = methods.schedule(method, steps, sigma_max, sigma_min)
        # The noised data's own spread: sigma_max^2 plus the data's variance (a draw from
        # N(0, sigma_max^2) alone is too narrow for the deterministic samplers to forget).
        init_std = math.sqrt(sigma_max**2 + var)
        x, _, evals = _execute(
            model,
            schedule,
            init_std,
            n,
            x0,
            seed,
            threads,
            0,
            denoise,
            tile,
            chain_offset,
            progress,
            init_mean,
            3,
        )
        info = {
            "method": method,
            "steps": int(steps),
            "score_evals": evals,
            "sigma_max": sigma_max,
            "sigma_min": sigma_min,
            **settings,
        }
    info["seconds"] = time.perf_counter() - t0
    return (x, info) if return_info else x
