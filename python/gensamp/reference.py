"""Reference samplers and log-densities in plain numpy (float64), written for reading, not
speed.

The same noise stream as :mod:`gensamp.samplers`, but an independent implementation of
everything that matters: the Philox4x32-10 generator, Box-Muller, the network forward pass,
the mixture score (:meth:`GaussianMixture.score`) and the update rule; for :func:`log_prob`,
the Jacobian of the score (forward-mode through the network, the mixture's Hessian in closed
form), the Rademacher directions and the Runge-Kutta integration. It shares with the engine
only the argument plumbing (:mod:`gensamp._inputs`, :mod:`gensamp._validate`: for log_prob
also the sigma grid and the prior) and the activation names and parameters
(:mod:`gensamp.activations`). The tests compare the C++ engine against it; users can do the
same on their own models (small n).

How the signatures differ from the engine's: ``threads`` and ``tile`` are accepted and
ignored; results are float64, not float32; no memory check is made and diverged chains raise
no DivergenceWarning; ``langevin`` needs ``sigma`` only as far as the network does (the
engine checks it up front).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import activations as A
from . import methods
from ._inputs import DEFAULT_N, as_model, density_model, density_plan, with_defaults
from ._validate import (
    as_bool,
    as_chain_offset,
    as_int,
    as_points,
    as_pos_float,
    as_rows,
    as_sigmas,
)
from .graph import Graph
from .mixture import GaussianMixture
from .weights import Weights

_MASK = np.uint64(0xFFFFFFFF)
INIT_STEP = 0xFFFFFFFF  # the step index reserved for default initial states


def philox4x32_10(counter: Any, key: Any) -> np.ndarray:
    """Philox4x32-10 on arrays: counter [..., 4] and key [..., 2] (uint32 values) -> [..., 4]."""
    c = np.asarray(counter, dtype=np.uint64)
    k = np.asarray(key, dtype=np.uint64)
    c0, c1, c2, c3 = (c[..., i] for i in range(4))
    k0, k1 = k[..., 0], k[..., 1]
    for _ in range(10):
        p0 = np.uint64(0xD2511F53) * c0  # < 2^64: exact in uint64
        p1 = np.uint64(0xCD9E8D57) * c2
        c0, c1, c2, c3 = (
            (p1 >> np.uint64(32)) ^ c1 ^ k0,
            p1 & _MASK,
            (p0 >> np.uint64(32)) ^ c3 ^ k1,
            p0 & _MASK,
        )
        k0 = (k0 + np.uint64(0x9E3779B9)) & _MASK
        k1 = (k1 + np.uint64(0xBB67AE85)) & _MASK
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


def normals(seed: int, chains: Any, step: int, d: int) -> np.ndarray:
    """The engine's standard normals [n, d] for the given chains at one step.

    Box-Muller on each Philox word pair (a, b) with the engine's float32 quantisation
    u = fl32(fl32(a) 2^-32 + 2^-33), theta = fl32(b) 2^-32; the log, sqrt, cos and sin here are
    numpy's float64 ones (the engine uses its own float32 polynomials), rounded to float32.
    """
    j = np.asarray(chains, dtype=np.uint64).reshape(-1)
    out = np.empty((j.size, 4 * ((d + 3) // 4)))
    for k in range((d + 3) // 4):
        ctr = np.stack(
            [np.full_like(j, k), np.full_like(j, step), j & _MASK, j >> np.uint64(32)], axis=-1
        )
        key = np.broadcast_to(
            np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint64), (j.size, 2)
        )
        r = philox4x32_10(ctr, key)
        for p in range(2):
            a = r[:, 2 * p].astype(np.float32).astype(np.float64)
            u1 = (a * 2.0**-32 + 2.0**-33).astype(np.float32).astype(np.float64)
            theta = r[:, 2 * p + 1].astype(np.float32).astype(np.float64) * 2.0**-32
            rad = np.sqrt(-2.0 * np.log(u1))
            out[:, 4 * k + 2 * p] = rad * np.cos(2.0 * math.pi * theta)
            out[:, 4 * k + 2 * p + 1] = rad * np.sin(2.0 * math.pi * theta)
    return out[:, :d].astype(np.float32).astype(np.float64)


def _act(name: str, h: np.ndarray) -> np.ndarray:
    if name == "identity":
        return h
    if name == "relu":
        return np.maximum(h, 0.0)
    if name == "leaky_relu":
        return np.where(h > 0, h, A.LEAKY_SLOPE * h)
    if name == "elu":
        return np.where(h > 0, h, A.ELU_ALPHA * np.expm1(np.minimum(h, 0.0)))
    if name == "silu":
        return h / (1.0 + np.exp(-h))
    if name == "softplus":
        return np.where(
            h > A.SOFTPLUS_THRESHOLD, h, np.log1p(np.exp(np.minimum(h, A.SOFTPLUS_THRESHOLD)))
        )
    if name == "tanh":
        return np.tanh(h)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-h))
    if name == "gelu":
        erf = np.vectorize(math.erf, otypes=[np.float64])
        return 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
    if name == "gelu_tanh":
        return 0.5 * h * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h**3)))
    raise ValueError(f"unknown activation {name!r}")


def forward(weights: Weights, inputs: Any) -> np.ndarray:
    """Network outputs [n, out] in float64 for raw inputs [n, input_dim]."""
    h = np.asarray(inputs, dtype=np.float64)
    for i, (W, b) in enumerate(weights.layers):
        h = h @ W.astype(np.float64).T + b.astype(np.float64)
        if i < len(weights.activations):
            h = _act(weights.activations[i], h)
    return h


def graph_forward(graph: Graph, u: Any, sigma: float) -> np.ndarray:
    """A format-2 graph's output [n, d] in float64 for model coordinates u [n, d] at noise
    level sigma: every node evaluated with numpy, level-only nodes included (the engine
    precomputes those per level instead)."""
    u = np.asarray(u, dtype=np.float64)
    n = u.shape[0]
    vals: list[np.ndarray] = []
    for node in graph.nodes:
        ins = [vals[j] for j in node.inputs]
        t = {k: v.astype(np.float64) for k, v in node.tensors.items()}
        op = node.op
        if op == "x":
            v = u
        elif op == "sigma":
            v = np.full((n, 1), float(sigma))
        elif op == "scalar":
            v = np.full((n, 1), float(node.attrs["value"]))
        elif op == "const":
            v = np.broadcast_to(t["value"], (n, t["value"].shape[0]))
        elif op == "linear":
            v = ins[0] @ t["weight"].T + t["bias"]
        elif op == "act":
            with np.errstate(over="ignore"):  # exp(-h) -> inf gives the right limit
                v = _act(node.attrs["name"], ins[0])
        elif op in ("sin", "cos", "exp", "log", "sqrt"):
            with np.errstate(invalid="ignore", divide="ignore"):
                v = getattr(np, op)(ins[0])
        elif op == "neg":
            v = -ins[0]
        elif op == "pow":
            with np.errstate(invalid="ignore", divide="ignore"):
                v = np.power(ins[0], node.attrs["exponent"])
        elif op in ("add", "sub", "mul", "div"):
            fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[op]
            with np.errstate(invalid="ignore", divide="ignore"):
                v = fn(ins[0], ins[1])
        elif op == "cat":
            v = np.concatenate(ins, axis=1)
        elif op == "slice":
            v = ins[0][:, node.attrs["start"] : node.attrs["stop"]]
        elif op == "layer_norm":
            h = ins[0]
            m = h.mean(axis=1, keepdims=True)
            var = ((h - m) ** 2).mean(axis=1, keepdims=True)
            v = (h - m) / np.sqrt(var + node.attrs["eps"]) * t["weight"] + t["bias"]
        else:  # pragma: no cover - Graph refuses unknown ops
            raise ValueError(f"unknown graph op {op!r}")
        vals.append(np.asarray(v, dtype=np.float64))
    return vals[-1]


def score(model: Weights | GaussianMixture, u: np.ndarray, sigma: float) -> np.ndarray:
    """Score in model coordinates at noise level sigma (float64)."""
    if isinstance(model, GaussianMixture):
        return model.score(u, sigma)
    if model.graph is not None:
        return graph_forward(model.graph, u, sigma)
    inp = u
    if model.sigma_input != "none":
        feat = sigma if model.sigma_input == "sigma" else math.log(sigma)
        inp = np.concatenate([u, np.full((u.shape[0], 1), feat)], axis=1)
    out = forward(model, inp)
    return out / sigma if model.divide_by_sigma else out


def _affine(model: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(model, Weights) and model.shift is not None:
        return model.shift.astype(np.float64), model.scale.astype(np.float64)
    return np.zeros(model.dim), np.ones(model.dim)


def _chains(offset: int, n: int) -> np.ndarray:
    """Global chain indices offset .. offset + n - 1 (uint64: they may pass 2^63)."""
    return np.uint64(offset) + np.arange(n, dtype=np.uint64)


def _run(model, sigmas, alphas, T, n, x0, init_std, seed, record_every, denoise, chain_offset):
    d = model.dim
    seed = as_int(seed, "seed", 0, 2**64 - 1)
    record_every = as_int(record_every, "record_every", 0)
    shift, scale = _affine(model)
    if x0 is not None:
        x0 = as_rows(x0, d, "x0", None if n is None else as_int(n, "n", 1))
        n = x0.shape[0]
        u = (x0.astype(np.float64) - shift) / scale
    else:
        n = as_int(DEFAULT_N if n is None else n, "n", 1)
    chains = _chains(as_chain_offset(chain_offset, n), n)
    if x0 is None:
        u = init_std * normals(seed, chains, INIT_STEP, d)
    traj = []
    step = 0
    for sigma, alpha in zip(sigmas, alphas):
        for _ in range(T):
            s = score(model, u, sigma)
            z = normals(seed, chains, step, d)
            u = u + alpha / 2.0 * s + math.sqrt(alpha) * z
            step += 1
            if record_every and step % record_every == 0:
                traj.append(shift + scale * u)
    if denoise:
        u = u + sigmas[-1] ** 2 * score(model, u, sigmas[-1])
    x = shift + scale * u
    if record_every:
        return x, (np.stack(traj) if traj else np.empty((0, n, d)))
    return x


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
) -> Any:
    """Reference for :func:`gensamp.langevin` (threads and tile are accepted and ignored)."""
    model = as_model(weights)
    stored = model.sampler if isinstance(model, Weights) and model.role != "ncsn" else {}
    eps, T = with_defaults(stored, {"eps": eps, "T": T}, "plain-Langevin ", "eps=0.01, T=1000")
    eps = as_pos_float(eps, "eps")
    T = as_int(T, "T", 1)
    sig = 0.0 if sigma is None else float(sigma)
    return _run(model, [sig], [eps], T, n, x0, 1.0, seed, record_every, False, chain_offset)


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
) -> Any:
    """Reference for :func:`gensamp.annealed_langevin` (Algorithm 1, float64)."""
    model = as_model(weights)
    stored = model.sampler if isinstance(model, Weights) else {}
    sigmas, eps, T = with_defaults(
        stored,
        {"sigmas": sigmas, "eps": eps, "T": T},
        "",
        "sigmas=np.geomspace(10, 0.1, 10), eps=0.2 * 0.1**2, T=100",
    )
    sig = as_sigmas(sigmas)
    eps = as_pos_float(eps, "eps")
    T = as_int(T, "T", 1)
    alphas = [eps * s**2 / sig[-1] ** 2 for s in sig]
    return _run(model, sig, alphas, T, n, x0, sig[0], seed, record_every, denoise, chain_offset)


def uniforms(seed: int, chains: Any, step: int, d: int) -> np.ndarray:
    """The engine's uniforms [n, d] in (0, 1) for the given chains at one step: u = (w + 1/2)
    2^-32 for word i % 4 of the Philox block with counter (i // 4, step, j mod 2^32, j div
    2^32), exact in float64."""
    j = np.asarray(chains, dtype=np.uint64).reshape(-1)
    out = np.empty((j.size, 4 * ((d + 3) // 4)))
    key = np.broadcast_to(np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint64), (j.size, 2))
    for k in range((d + 3) // 4):
        ctr = np.stack(
            [np.full_like(j, k), np.full_like(j, step), j & _MASK, j >> np.uint64(32)], axis=-1
        )
        out[:, 4 * k : 4 * k + 4] = (philox4x32_10(ctr, key).astype(np.float64) + 0.5) * 2.0**-32
    return out[:, :d]


def _latent(model: Weights, seed: int, chains: np.ndarray) -> np.ndarray:
    """z from the decoder's prior: N(0, I), or mixture component c (the first whose running
    weight sum exceeds u * total, u uniform 0 of step 2) as mu_c + L_c e."""
    e = normals(seed, chains, 0, model.latent_dim)
    if model.prior is None:
        return e
    w, mu, L = (np.asarray(a, dtype=np.float64) for a in model.prior)
    cum = np.cumsum(w)
    t = uniforms(seed, chains, 2, 1)[:, 0] * cum[-1]
    c = np.minimum(np.searchsorted(cum, t, side="right"), len(w) - 1)
    return mu[c] + np.einsum("nij,nj->ni", L[c], e)


def _sigmoids(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """lambda = sigmoid(l) and 1 - lambda, each computed directly (no 1 - lambda rounding to 0)."""
    a = np.exp(-np.abs(logits))
    big, small = 1.0 / (1.0 + a), a / (1.0 + a)  # sigmoid(|l|), sigmoid(-|l|)
    pos = logits >= 0
    return np.where(pos, big, small), np.where(pos, small, big)


def cb_mean(logits: Any) -> np.ndarray:
    """Mean of the continuous Bernoulli with lambda = sigmoid(logits), in the paper's form
    lambda / (2 lambda - 1) + 1 / (2 atanh(1 - 2 lambda)); where the two terms cancel
    (|delta| < 1e-4, delta = 2 lambda - 1) its series 1/2 + delta / 6 + 2 delta^3 / 45."""
    lam, rest = _sigmoids(np.asarray(logits, dtype=np.float64))
    delta = lam - rest  # 2 lambda - 1
    near = np.abs(delta) < 1e-4
    safe = np.where(near, 0.5, delta)
    # atanh(1 - 2 lambda) = log((1 - lambda) / lambda) / 2, from the two parts computed apart
    exact = lam / safe + 1.0 / np.log(np.where(near, 0.5, rest) / np.where(near, 1.0, lam))
    return np.where(near, 0.5 + delta / 6.0 + 2.0 * delta**3 / 45.0, exact)


def cb_inverse_cdf(logits: Any, u: Any) -> np.ndarray:
    """The continuous Bernoulli's inverse CDF at u, in the paper's form
    log(1 + u (2 lambda - 1) / (1 - lambda)) / log(lambda / (1 - lambda)); x = u + u (1 - u)
    (2 lambda - 1) near lambda = 1/2 (|2 lambda - 1| < 1e-7), where it is 0 / 0."""
    lam, rest = _sigmoids(np.asarray(logits, dtype=np.float64))
    u = np.asarray(u, dtype=np.float64)
    delta = lam - rest
    near = np.abs(delta) < 1e-7
    safe_rest = np.where(near, 0.5, rest)
    safe_lam = np.where(near, 0.75, lam)
    x = np.log1p(u * (safe_lam - safe_rest) / safe_rest) / np.log(safe_lam / safe_rest)
    return np.clip(np.where(near, u + u * (1.0 - u) * delta, x), 0.0, 1.0)


def vae_sample(
    decoder: Any,
    n: int = DEFAULT_N,
    *,
    seed: int = 0,
    noise: bool = True,
    threads: int | None = None,
    tile: int | None = None,
    chain_offset: int = 0,
) -> np.ndarray:
    """Reference for :func:`gensamp.vae_sample`: the same draws (z's normals from step 0, the
    decoder noise from step 1, a mixture component from step 2) through this module's own
    Philox, forward pass, mixture transform and likelihood formulas."""
    model = as_model(decoder)
    if not isinstance(model, Weights) or model.role != "vae_decoder":
        raise TypeError("vae_sample needs Weights with role 'vae_decoder' (a VAE's decoder)")
    n = as_int(n, "n", 1)
    seed = as_int(seed, "seed", 0, 2**64 - 1)
    noise = as_bool(noise, "noise")
    d = model.dim
    chains = _chains(as_chain_offset(chain_offset, n), n)
    out = forward(model, _latent(model, seed, chains))
    if model.likelihood == "bernoulli":
        lam, _ = _sigmoids(out)
        return (uniforms(seed, chains, 1, d) < lam).astype(np.float64) if noise else lam
    if model.likelihood == "continuous_bernoulli":
        return cb_inverse_cdf(out, uniforms(seed, chains, 1, d)) if noise else cb_mean(out)
    mu, logvar = out[:, :d], out[:, d:]
    x_u = mu + np.exp(0.5 * logvar) * normals(seed, chains, 1, d) if noise else mu
    shift, scale = _affine(model)
    return shift + scale * x_u


def _grid(method: str, steps: int, sigma_max: float, sigma_min: float) -> tuple[list[float], int]:
    """The noise levels and level count :mod:`gensamp.methods` gives ``method`` at ``steps``."""
    N = {"pc": steps // 2, "heun": (steps + 1) // 2, "edm": (steps + 1) // 2}.get(method, steps)
    if method in ("pc", "cas"):
        return [float(v) for v in np.geomspace(sigma_max, sigma_min, N)] if N > 1 else [
            float(sigma_max)
        ], N
    return methods.edm_sigmas(sigma_max, sigma_min, N), N


def sample_method(
    model: Weights | GaussianMixture,
    method: str,
    steps: int,
    sigma_max: float,
    sigma_min: float,
    n: int,
    *,
    seed: int = 0,
    init_mean: Any = None,
    init_std: float | None = None,
    chain_offset: int = 0,
) -> np.ndarray:
    """Reference for the engine's few-step samplers (:mod:`gensamp.methods`), float64, each
    written from its paper's update rather than from the engine's step program. Draws the same
    normals as the engine: the start from step 2^32-1, then one stream step per draw, in order.
    Returns [n, d] in data space."""
    d = model.dim
    shift, scale = _affine(model)
    chains = _chains(chain_offset, n)
    mean = np.zeros(d) if init_mean is None else np.asarray(init_mean, np.float64)
    u = mean + (sigma_max if init_std is None else init_std) * normals(seed, chains, INIT_STEP, d)
    draws = iter(range(2**32 - 1))

    def z() -> np.ndarray:
        return normals(seed, chains, next(draws), d)

    if method == "ald":
        b = methods.ald_budget(steps, sigma_max, sigma_min)
        sig = b["sigmas"]
        for s_i in sig:
            alpha = b["eps"] * s_i**2 / sig[-1] ** 2
            for _ in range(b["T"]):
                u = u + alpha / 2 * score(model, u, s_i) + math.sqrt(alpha) * z()
        u = u + sig[-1] ** 2 * score(model, u, sig[-1])
        return shift + scale * u
    sig, N = _grid(method, steps, sigma_max, sigma_min)
    nxt = [*sig[1:], 0.0]
    if method == "pc":  # score_sde's pc_sampler with per-chain norms: corrector, then predictor
        r = methods.PC_SNR
        for s_i, s_n in zip(sig, nxt):
            g = score(model, u, s_i)
            noise = z()
            gn2 = np.maximum(np.sum(g * g, axis=1, keepdims=True), d / s_i**2)
            e = 2 * (r**2) * d / gn2  # the noise norm's expectation, not |noise|: see sampler.hpp
            u = u + e * g + np.sqrt(2 * e) * noise
            var = s_i**2 - s_n**2
            mean_u = u + var * score(model, u, s_i)
            u = mean_u + math.sqrt(var) * z() if s_n > 0 else mean_u
    elif method == "cas":
        lam = methods.CAS_REFRESH
        for s_i, s_n in zip(sig, nxt):
            kappa = 1 - (s_n / s_i) ** (1 + lam)
            beta = math.sqrt(max(0.0, s_n**2 - ((1 - kappa) * s_i) ** 2))
            u = u + kappa * s_i**2 * score(model, u, s_i)
            if beta > 0:
                u = u + beta * z()
    else:  # the probability-flow ODE dx/dsigma = -sigma s(x, sigma), Karras et al. Alg. 1 / 2
        churn = methods.EDM_CHURN if method == "edm" else 0.0
        gamma = min(churn / N, math.sqrt(2) - 1)
        for s_i, s_n in zip(sig, nxt):
            hat = s_i * (1 + gamma)
            if gamma > 0:
                u = u + math.sqrt(hat**2 - s_i**2) * z()
            d1 = -hat * score(model, u, hat)
            u_e = u + (s_n - hat) * d1
            if method == "euler" or s_n == 0:
                u = u_e
            else:
                d2 = -s_n * score(model, u_e, s_n)
                u = u + (s_n - hat) * (d1 + d2) / 2
    return shift + scale * u


# ---- log-densities --------------------------------------------------------------------------


def _act_grad(name: str, h: np.ndarray) -> np.ndarray:
    """d act / dh, differentiated by hand from :func:`_act`'s formulas (left derivative at
    relu's and leaky_relu's kink, as torch's autograd)."""
    if name == "identity":
        return np.ones_like(h)
    if name == "relu":
        return (h > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(h > 0, 1.0, A.LEAKY_SLOPE)
    if name == "elu":
        return np.where(h > 0, 1.0, A.ELU_ALPHA * np.exp(np.minimum(h, 0.0)))
    if name == "silu":
        sg = 1.0 / (1.0 + np.exp(-h))
        return sg + h * sg * (1.0 - sg)
    if name == "softplus":
        return np.where(h > A.SOFTPLUS_THRESHOLD, 1.0, 1.0 / (1.0 + np.exp(-h)))
    if name == "tanh":
        return 1.0 / np.cosh(h) ** 2
    if name == "sigmoid":
        sg = 1.0 / (1.0 + np.exp(-h))
        return sg * (1.0 - sg)
    if name == "gelu":
        erf = np.vectorize(math.erf, otypes=[np.float64])
        return 0.5 * (1.0 + erf(h / math.sqrt(2.0))) + h * np.exp(-0.5 * h * h) / math.sqrt(
            2.0 * math.pi
        )
    if name == "gelu_tanh":
        c = math.sqrt(2.0 / math.pi)
        t = np.tanh(c * (h + 0.044715 * h**3))
        return 0.5 * (1.0 + t) + 0.5 * h * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * h * h)
    raise ValueError(f"unknown activation {name!r}")


def score_jacobian(
    model: Weights | GaussianMixture, u: Any, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """The score [n, d] and its Jacobian grad_u s [n, d, d] (J[n, i, j] = ds_i/du_j) in model
    coordinates at noise level sigma, in float64."""
    u = np.asarray(u, dtype=np.float64)
    if isinstance(model, GaussianMixture):
        return _mixture_jacobian(model, u, sigma)
    if model.graph is not None:
        raise NotImplementedError("the reference Jacobian covers plain MLPs, not graphs")
    d = model.dim
    h = u
    if model.sigma_input != "none":
        feat = sigma if model.sigma_input == "sigma" else math.log(sigma)
        h = np.concatenate([u, np.full((u.shape[0], 1), feat)], axis=1)
    # tangents [n, width, d]: column j is the derivative along u_j; sigma is held fixed
    tangent = np.broadcast_to(np.eye(d), (u.shape[0], d, d))
    tangent = np.concatenate([tangent, np.zeros((u.shape[0], h.shape[1] - d, d))], axis=1)
    for i, (W, b) in enumerate(model.layers):
        W64 = W.astype(np.float64)
        pre = h @ W64.T + b.astype(np.float64)
        tangent = np.einsum("oi,nij->noj", W64, tangent)
        if i < len(model.activations):
            name = model.activations[i]
            tangent = tangent * _act_grad(name, pre)[:, :, None]
            h = _act(name, pre)
        else:
            h = pre
    k = 1.0 / sigma if model.divide_by_sigma else 1.0
    return k * h, k * tangent


def _mixture_jacobian(
    mix: GaussianMixture, u: np.ndarray, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """grad s = Hessian of log sum_k w_k N(u; mu_k, S_k), S_k = Sigma_k + sigma^2 I:
    sum_k r_k (g_k g_k^T - P_k) - s s^T with g_k = P_k (mu_k - u), P_k = S_k^-1."""
    d = mix.dim
    P = np.linalg.inv(mix.covariances + sigma**2 * np.eye(d))  # [K, d, d]
    dev = mix.means[None] - u[:, None]  # [n, K, d]
    g = np.einsum("kij,nkj->nki", P, dev)
    logdet = np.linalg.slogdet(P)[1]  # log det P_k
    logr = np.log(mix.weights)[None] + 0.5 * logdet[None] - 0.5 * np.sum(dev * g, axis=2)
    r = np.exp(logr - logr.max(axis=1, keepdims=True))
    r /= r.sum(axis=1, keepdims=True)
    s = np.einsum("nk,nki->ni", r, g)
    outer = np.einsum("nki,nkj->nkij", g, g) - P[None]
    J = np.einsum("nk,nkij->nij", r, outer) - np.einsum("ni,nj->nij", s, s)
    return s, J


def rademacher(seed: int, rows: Any, step: int, d: int, probes: int) -> np.ndarray:
    """The engine's Hutchinson directions [n, probes, d] (+-1) for the given rows at one
    evaluation: component i of direction p is -1 when bit b = p * d + i of the row's Philox
    stream at ``step`` is set (bit b % 32 of word (b // 32) % 4 of counter block b // 128)."""
    j = np.asarray(rows, dtype=np.uint64).reshape(-1)
    nbits = d * probes
    words = []
    for k in range((nbits + 127) // 128):
        ctr = np.stack(
            [np.full_like(j, k), np.full_like(j, step), j & _MASK, j >> np.uint64(32)], axis=-1
        )
        key = np.broadcast_to(
            np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint64), (j.size, 2)
        )
        words.append(philox4x32_10(ctr, key))
    w = np.concatenate(words, axis=1).astype(np.uint64)  # [n, 4 * blocks]
    b = np.arange(nbits)
    bits = (w[:, b // 32] >> (b % 32).astype(np.uint64)) & np.uint64(1)
    return np.where(bits == 1, -1.0, 1.0).reshape(j.size, probes, d)


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
    """Reference for :func:`gensamp.log_prob` (threads and tile are accepted and ignored):
    the same RK4 on the same sigma grid, the trace from the full Jacobian (exact) or from it
    and the engine's Rademacher directions (Hutchinson), everything in float64."""
    m = density_model(model)
    plan = density_plan(m, steps, sigma_min, sigma_max, exact, probes, seed)
    x = as_points(x, m.dim, "x")
    n, d = x.shape
    rows = np.arange(n, dtype=np.uint64)

    def rhs(u: np.ndarray, sigma: float, e: int) -> tuple[np.ndarray, np.ndarray]:
        if sigma == 0.0:
            return np.zeros_like(u), np.zeros(n)
        s, J = score_jacobian(m, u, sigma)
        if plan.probes == 0:
            tr = np.trace(J, axis1=1, axis2=2)
        else:
            v = rademacher(plan.seed, rows, e, d, plan.probes)
            tr = np.einsum("npi,nij,npj->n", v, J, v) / plan.probes
        return -sigma * s, sigma * tr

    u = (x - plan.shift) / plan.scale
    integral = np.zeros(n)
    for i in range(plan.steps):
        a, b = plan.grid[i], plan.grid[i + 1]
        h = b - a
        mid = a + 0.5 * h
        k1, q1 = rhs(u, a, 4 * i)
        k2, q2 = rhs(u + 0.5 * h * k1, mid, 4 * i + 1)
        k3, q3 = rhs(u + 0.5 * h * k2, mid, 4 * i + 2)
        k4, q4 = rhs(u + h * k3, b, 4 * i + 3)
        u = u + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        integral = integral + h / 6.0 * (q1 + 2 * q2 + 2 * q3 + q4)
    return plan.prior_log_prob(u) - integral - plan.log_scale
