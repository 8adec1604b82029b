"""PyTorch models that export to the C++ engine: :class:`ScoreNet`, :class:`NCSN`, :class:`VAE`.

Each model carries its data normalisation (u = (x - shift) / scale) and its conditioning, and
its torch forward pass computes exactly what its exported :class:`~gensamp.Weights` compute:

* ``ScoreNet.forward(u)``          = ``net(u)``                                 (role "score")
* ``NCSN.forward(u, sigma)``       = ``net(cat[u, sigma or log sigma]) [/ sigma]`` (role "ncsn")
* ``VAE.forward(z)``               = ``decoder(z)`` = [mean | log-variance] of u, or logits
                                                                 (role "vae_decoder")

all in model coordinates u (sigma too). ``gensamp.export(model)`` calls ``model.to_weights()``,
which also stores the recommended sampler defaults and the training provenance.
The training functions in :mod:`gensamp.learn.train` build and fit these models; they can also be
built directly and trained with your own loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn

from .. import activations as _acts
from .. import methods
from .._validate import (
    as_array,
    as_bool,
    as_choice,
    as_int,
    as_pos_float,
    as_sigmas,
    import_sklearn,
)
from ..weights import LIKELIHOODS, Weights, check_prior
from . import objectives
from .exporter import export

if TYPE_CHECKING:
    from .fit import History

__all__ = ["ACTIVATIONS", "NCSN", "ScoreNet", "VAE", "mlp"]


def _module_factory(name: str) -> Callable[[], nn.Module]:
    cls_name, params = _acts.SPEC[name]
    cls = getattr(nn, cls_name)
    return lambda: cls(**params)


#: activation name -> torch module constructor, from the one activation table
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {n: _module_factory(n) for n in _acts.HIDDEN}
#: A Gaussian VAE decoder's variance: the network's output per z ("conditional") or one value
#: for every coordinate and z, at its maximum-likelihood value ("shared").
VARIANCES = ("conditional", "shared")


def _hidden(hidden: Any) -> tuple[int, ...]:
    if isinstance(hidden, (int, np.integer)) and not isinstance(hidden, bool):
        hidden = (hidden,)
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise TypeError(f"hidden must be a sequence of layer widths, got {hidden!r}")
    out = []
    for h in hidden:
        if isinstance(h, bool) or not isinstance(h, (int, np.integer)):
            raise TypeError(f"hidden layer widths must be integers, got {h!r}")
        if h < 1:
            raise ValueError(f"hidden layer widths must be >= 1, got {h}")
        out.append(int(h))
    return tuple(out)


def mlp(n_in: int, hidden: Sequence[int], n_out: int, activation: str = "silu") -> nn.Sequential:
    """Linear / activation stack n_in -> hidden... -> n_out with a linear output: the layout
    :func:`gensamp.export` understands (same activation after every hidden layer)."""
    _acts.check(activation, hidden_only=True)
    widths = [int(n_in), *_hidden(hidden), int(n_out)]
    mods: list[nn.Module] = []
    for i in range(len(widths) - 1):
        mods.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            mods.append(ACTIVATIONS[activation]())
    return nn.Sequential(*mods)


class _ScoreCore(nn.Module):
    """An NCSN body beyond the plain MLP, written for torch.fx so that it exports as a graph:
    ``forward(u, sigma)`` with sigma of shape [n] gives the score in model coordinates.

    * ``embedding="fourier"``: sigma enters as a Gaussian Fourier projection of log sigma
      (score_sde's GaussianFourierProjection: fixed W ~ N(0, scale^2), [sin 2 pi W c,
      cos 2 pi W c]) instead of one log-sigma column;
    * ``residual=True``: after the first layer, each further hidden layer of the same width
      is a block h + act(Linear(h));
    * ``precondition="edm"`` (Karras et al. 2022, sigma_data = 1 in the standardised model
      coordinates): D = c_skip u + c_out F(c_in u, c_noise), score = (D - u) / sigma^2,
      written as ((c_skip - 1) u + c_out F) / sigma^2 so that float32 does not cancel;
      otherwise the output is divided by sigma (NCSNv2) when ``divide_by_sigma``.
    """

    FOURIER_FEATURES = 32
    FOURIER_SCALE = 2.0

    def __init__(
        self,
        dim: int,
        hidden: tuple[int, ...],
        activation: str,
        *,
        sigma_input: str,
        divide_by_sigma: bool,
        embedding: str,
        residual: bool,
        precondition: str,
    ) -> None:
        super().__init__()
        self.sigma_input, self.divide = sigma_input, divide_by_sigma
        self.embedding, self.residual, self.precondition = embedding, residual, precondition
        g = torch.Generator().manual_seed(0)
        half = self.FOURIER_FEATURES // 2
        self.register_buffer("fourier_w", torch.randn(half, generator=g) * self.FOURIER_SCALE)
        n_emb = 0
        if embedding == "fourier":
            n_emb = self.FOURIER_FEATURES
        elif sigma_input != "none" or precondition == "edm":
            n_emb = 1
        self.inp = nn.Linear(dim + n_emb, hidden[0])
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(hidden[:-1], hidden[1:]))
        # a block is residual where its input and output widths agree (fixed here: fx
        # cannot branch on shapes while tracing)
        self.skips = [residual and a == b for a, b in zip(hidden[:-1], hidden[1:])]
        self.acts = nn.ModuleList(ACTIVATIONS[activation]() for _ in range(len(hidden)))
        self.out = nn.Linear(hidden[-1], dim)

    def forward(self, u: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = sigma[:, None]
        if self.precondition == "edm":
            c_in = torch.rsqrt(s**2 + 1.0)
            c_noise = torch.log(s) / 4.0
            h = u * c_in
        else:
            c_noise = s if self.sigma_input == "sigma" else torch.log(s)
            h = u
        if self.embedding == "fourier":
            w: torch.Tensor = self.fourier_w  # type: ignore[assignment]  # a buffer
            proj = torch.log(s) * w[None, :] * (2.0 * np.pi)
            h = torch.cat([h, torch.sin(proj), torch.cos(proj)], dim=1)
        elif self.sigma_input != "none" or self.precondition == "edm":
            h = torch.cat([h, c_noise], dim=1)
        h = self.acts[0](self.inp(h))
        for layer, act, skip in zip(self.layers, self.acts[1:], self.skips):
            y = act(layer(h))
            h = h + y if skip else y
        f = self.out(h)
        if self.precondition == "edm":
            c_out = s * torch.rsqrt(s**2 + 1.0)
            return (c_out * f - u * (s**2 / (s**2 + 1.0))) / s**2
        return f / s if self.divide else f


class _Normalised(nn.Module):
    """Shared plumbing: normalisation buffers, data-space conversion, export settings."""

    role = "score"
    shift: torch.Tensor  # registered buffers, declared for the type checker
    scale: torch.Tensor

    def __init__(self, dim: int, shift: Any, scale: Any) -> None:
        super().__init__()
        self.dim = as_int(dim, "dim", 1)
        if (shift is None) != (scale is None):
            raise ValueError("give both shift and scale, or neither")
        if shift is None:
            shift, scale = np.zeros(self.dim), np.ones(self.dim)
            self.normalised = False
        else:
            self.normalised = True
        sh = np.asarray(shift, dtype=np.float64).reshape(-1)
        sc = np.asarray(scale, dtype=np.float64).reshape(-1)
        if sc.size == 1:
            sc = np.repeat(sc, self.dim)
        if sh.shape != (self.dim,) or sc.shape != (self.dim,):
            raise ValueError(f"shift and scale must have length dim={self.dim}")
        if not (np.all(np.isfinite(sh)) and np.all(np.isfinite(sc)) and np.all(sc > 0)):
            raise ValueError("shift must be finite and scale finite and > 0")
        # float32 like the exported tensors, so torch and the engine normalise identically.
        self.register_buffer("shift", torch.tensor(sh, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(sc, dtype=torch.float32))
        self.sampler_defaults: dict[str, Any] = {}
        self.info: dict[str, Any] = {}
        self.history: History | None = None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def to_model(self, x: Any) -> torch.Tensor:
        """Data-space points (array or tensor [n, d]) -> model coordinates u (float32 tensor)."""
        if isinstance(x, torch.Tensor):
            t = x.to(self.device, torch.float32)
            if t.ndim == 1 and self.dim == 1:
                t = t[:, None]
            if t.ndim != 2 or t.shape[1] != self.dim:
                raise ValueError(f"x must have shape [n, {self.dim}], got {tuple(t.shape)}")
        else:
            a = as_array(x, "x", min_rows=1)
            if a.shape[1] != self.dim:
                raise ValueError(f"x must have shape [n, {self.dim}], got {a.shape}")
            t = torch.as_tensor(a.astype(np.float32), device=self.device)
        return (t - self.shift) / self.scale

    def to_data(self, u: torch.Tensor) -> np.ndarray:
        """Model coordinates -> data space (numpy float64)."""
        return (u * self.scale + self.shift).detach().cpu().double().numpy()

    def _export_settings(self) -> dict[str, Any]:
        s: dict[str, Any] = {"role": self.role, "sampler": dict(self.sampler_defaults)}
        if self.normalised:
            s["shift"] = self.shift.detach().cpu().numpy()
            s["scale"] = self.scale.detach().cpu().numpy()
        info = {"model": type(self).__name__, **self._config(), **self.info}
        if self.history is not None:
            info["training"] = self.history.summary()
        s["info"] = info
        return s

    def _config(self) -> dict[str, Any]:  # pragma: no cover - every subclass overrides it
        return {}

    def _network(self) -> nn.Module:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def to_weights(self, **overrides: Any) -> Weights:
        """Export to :class:`~gensamp.Weights` (what ``gensamp.export(model)`` returns):
        network, normalisation, role, sampler defaults (model coordinates) and provenance.
        Keyword arguments (sigma_input, divide_by_sigma, shift, scale, role, sampler) override
        the stored settings; ``info`` entries are added to the stored provenance."""
        settings = self._export_settings()
        given = {k: v for k, v in overrides.items() if v is not None}
        if "info" in given:  # add to the provenance rather than drop it
            given["info"] = {**settings["info"], **dict(given["info"])}
        settings.update(given)
        return export(self._network(), **settings)


class ScoreNet(_Normalised):
    """Unconditional score network s(u) = net(u), u = (x - shift) / scale.

    Trained by :func:`gensamp.train_score` (implicit, sliced or denoising score matching).
    Use a smooth activation (softplus, silu, elu, tanh, gelu): score matching differentiates
    the network's Jacobian.
    """

    role = "score"

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (128, 128),
        activation: str = "silu",
        *,
        shift: Any = None,
        scale: Any = None,
    ) -> None:
        super().__init__(dim, shift, scale)
        self.hidden = _hidden(hidden)
        self.activation = activation
        self.net = mlp(self.dim, self.hidden, self.dim, activation)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Score in model coordinates."""
        return self.net(u)

    def _network(self) -> nn.Sequential:
        return self.net

    def _config(self) -> dict[str, Any]:
        return {"hidden": list(self.hidden), "activation": self.activation}

    @torch.no_grad()
    def score(self, x: Any, sigma: float | None = None) -> np.ndarray:
        """Score d log p / dx in data space [n, d] (float64): s_u(u) / scale."""
        if sigma not in (None, 0, 0.0):
            raise ValueError("a ScoreNet is not noise-conditional; call score(x) without sigma")
        u = self.to_model(x)
        return (self.net(u) / self.scale).cpu().double().numpy()


class NCSN(_Normalised):
    """Noise-conditional score network (Song & Ermon 2019; 2020 for ``divide_by_sigma``).

    s(u, sigma) = net(cat[u, c(sigma)]) / sigma, with c(sigma) = log sigma (``sigma_input=
    "log_sigma"``, default) or sigma (``"sigma"``), or no sigma input (``"none"``, then
    ``divide_by_sigma`` must be True: NCSNv2's unconditional s = f(u) / sigma). ``sigmas``
    (decreasing, model coordinates) is the training noise schedule, stored with the sampler
    defaults ``eps`` and ``T`` for :func:`gensamp.annealed_langevin`.
    """

    role = "ncsn"
    sigmas: torch.Tensor

    def __init__(
        self,
        dim: int,
        sigmas: Sequence[float],
        hidden: Sequence[int] = (128, 128),
        activation: str = "silu",
        *,
        sigma_input: str = "log_sigma",
        divide_by_sigma: bool = True,
        shift: Any = None,
        scale: Any = None,
        eps: float | None = None,
        T: int | None = None,
        residual: bool = False,
        embedding: str = "none",
        precondition: str = "none",
    ) -> None:
        super().__init__(dim, shift, scale)
        if embedding not in ("none", "fourier"):
            raise ValueError(f"embedding must be 'none' or 'fourier', got {embedding!r}")
        if precondition not in ("none", "edm"):
            raise ValueError(f"precondition must be 'none' or 'edm', got {precondition!r}")
        if not isinstance(residual, (bool, np.bool_)):
            raise TypeError("residual must be a bool")
        if sigma_input not in ("sigma", "log_sigma", "none"):
            raise ValueError(
                f"sigma_input must be 'sigma', 'log_sigma' or 'none', got {sigma_input!r}"
            )
        if not isinstance(divide_by_sigma, (bool, np.bool_)):
            raise TypeError("divide_by_sigma must be a bool")
        if sigma_input == "none" and not divide_by_sigma:
            raise ValueError(
                "sigma_input='none' needs divide_by_sigma=True, else the network "
                "does not depend on sigma"
            )
        s = np.asarray(as_sigmas(sigmas), dtype=np.float64)
        self.hidden = _hidden(hidden)
        self.activation = activation
        self.sigma_input = sigma_input
        self.divide_by_sigma = bool(divide_by_sigma)
        self.register_buffer("sigmas", torch.tensor(s, dtype=torch.float32))
        self.residual, self.embedding, self.precondition = bool(residual), embedding, precondition
        extra = 0 if sigma_input == "none" else 1
        self.core: _ScoreCore | None = None
        if self.residual or embedding != "none" or precondition != "none":
            self.core = _ScoreCore(
                self.dim,
                self.hidden,
                activation,
                sigma_input=sigma_input,
                divide_by_sigma=self.divide_by_sigma,
                embedding=embedding,
                residual=self.residual,
                precondition=precondition,
            )
            self.net = nn.Sequential()  # unused: the core is the network
        else:
            self.net = mlp(self.dim + extra, self.hidden, self.dim, activation)
        self.sampler_defaults = {"sigmas": s.tolist()}
        if eps is not None:
            self.sampler_defaults["eps"] = float(eps)
        if T is not None:
            self.sampler_defaults["T"] = int(T)
        # gensamp.sample's default: the method and budget bench/samplers.py measured best
        self.sampler_defaults["method"] = methods.DEFAULT_METHOD
        self.sampler_defaults["steps"] = methods.DEFAULT_STEPS

    def _sigma_column(self, sigma: Any, n: int, device: torch.device) -> torch.Tensor:
        if isinstance(sigma, torch.Tensor):
            s = sigma.to(device, torch.float64).reshape(-1, 1)
            if s.shape[0] == 1:
                s = s.expand(n, 1)
        else:
            s = torch.full((n, 1), float(sigma), dtype=torch.float64, device=device)
        if s.shape[0] != n:
            raise ValueError(f"sigma has {s.shape[0]} entries for {n} points")
        return s

    def forward(self, u: torch.Tensor, sigma: Any) -> torch.Tensor:
        """Score at noise level sigma (scalar or [n] tensor), both in model coordinates."""
        s64 = self._sigma_column(sigma, u.shape[0], u.device)
        if self.core is not None:
            return self.core(u, s64[:, 0].to(u.dtype))
        if self.sigma_input == "none":
            out = self.net(u)
        else:
            # The engine computes the feature in double and rounds it to float once; so do we.
            feat = s64 if self.sigma_input == "sigma" else torch.log(s64)
            out = self.net(torch.cat([u, feat.to(u.dtype)], dim=1))
        return out / s64.to(u.dtype) if self.divide_by_sigma else out

    def _network(self) -> nn.Module:
        return self.net if self.core is None else self.core

    def _export_settings(self) -> dict[str, Any]:
        s = super()._export_settings()
        if self.core is None:
            s["sigma_input"] = self.sigma_input
            s["divide_by_sigma"] = self.divide_by_sigma
        return s

    def to_weights(self, **overrides: Any) -> Weights:
        if self.core is not None and (
            overrides.get("sigma_input") is not None or overrides.get("divide_by_sigma") is not None
        ):
            raise TypeError(
                "sigma_input/divide_by_sigma overrides apply to the plain MLP; this NCSN's "
                "graph says how sigma enters"
            )
        return super().to_weights(**overrides)

    def _config(self) -> dict[str, Any]:
        return {
            "hidden": list(self.hidden),
            "activation": self.activation,
            "sigma_input": self.sigma_input,
            "divide_by_sigma": self.divide_by_sigma,
            "residual": self.residual,
            "embedding": self.embedding,
            "precondition": self.precondition,
        }

    @torch.no_grad()
    def score(self, x: Any, sigma: float) -> np.ndarray:
        """Data-space score [n, d] at noise level ``sigma`` given in *model* coordinates (as
        :meth:`Weights.score`); the data-space noise std is sigma * scale."""
        sigma = as_pos_float(sigma, "sigma")
        u = self.to_model(x)
        return (self.forward(u, sigma) / self.scale).cpu().double().numpy()


class VAE(_Normalised):
    """Variational autoencoder: encoder q(z|u) = N(mu_q(u), diag exp(logvar_q(u))), a latent
    prior p(z) and a decoder likelihood p(u|z).

    ``likelihood``:

    * ``"gaussian"`` (default): N(mu(z), diag exp(logvar)); the decoder outputs [mu | logvar]
      (2d values). ``variance="conditional"`` (default): the network learns logvar(z) for
      every coordinate; ``"shared"``: one log-variance for every coordinate and every z, kept
      at its maximum-likelihood value (the calibrated decoder of Rybkin et al. 2021,
      "sigma-VAE"; buffer ``log_variance``, see :meth:`log_px` and :meth:`fit_variance`),
      exported as constant logvar outputs. On images the conditional variance lets the
      decoder explain detail away as noise (blurry means); a shared one cannot;
    * ``"bernoulli"``: prod_i Bernoulli(lambda_i(z)), lambda = sigmoid(logits), the decoder
      outputs d logits; for data in [0, 1] (pixel intensities) log p is the negative binary
      cross-entropy with the continuous targets;
    * ``"continuous_bernoulli"``: prod_i C(lambda_i) lambda_i^u_i (1 - lambda_i)^(1 - u_i) on
      [0, 1], the normalised density of Loaiza-Ganem & Cunningham (2019); d logits.

    The two Bernoulli likelihoods model the data as it is (no shift/scale). The prior is
    N(0, I) until :meth:`fit_prior` sets a Gaussian mixture fitted to the encodings mu_q(u)
    of the training data (ex-post density estimation, Ghosh et al. 2020); it is held in the
    buffers ``prior_weights`` [K], ``prior_means`` [K, k], ``prior_chol`` [K, k, k] (lower-
    triangular Cholesky factors; K = 0 for N(0, I)) and used by :meth:`sample`, :meth:`elbo`,
    :meth:`log_likelihood` and the export.

    ``encoder`` maps u [d] to [mu_q | logvar_q] (2k values); :meth:`forward` is the decoder,
    which is what is exported (role "vae_decoder", with the likelihood and prior) and sampled
    by :func:`gensamp.vae_sample`.
    """

    role = "vae_decoder"
    prior_weights: torch.Tensor  # registered buffers, declared for the type checker
    prior_means: torch.Tensor
    prior_chol: torch.Tensor
    log_variance: torch.Tensor

    def __init__(
        self,
        dim: int,
        latent_dim: int = 2,
        hidden: Sequence[int] = (128, 128),
        activation: str = "silu",
        *,
        likelihood: str = "gaussian",
        variance: str = "conditional",
        shift: Any = None,
        scale: Any = None,
    ) -> None:
        likelihood = as_choice(likelihood, "likelihood", LIKELIHOODS)
        variance = as_choice(variance, "variance", VARIANCES)
        if variance != "conditional" and likelihood != "gaussian":
            raise ValueError(
                f"variance={variance!r} is a Gaussian decoder's option; a {likelihood} decoder "
                "has no separate variance"
            )
        if likelihood != "gaussian" and (shift is not None or scale is not None):
            raise ValueError(
                f"likelihood={likelihood!r} models values in [0, 1] as they are: give no "
                "shift/scale"
            )
        super().__init__(dim, shift, scale)
        self.latent_dim = as_int(latent_dim, "latent_dim", 1)
        self.hidden = _hidden(hidden)
        self.activation = activation
        self.likelihood = likelihood
        self.variance = variance
        k = self.latent_dim
        self.encoder = mlp(self.dim, self.hidden, 2 * k, activation)
        out = 2 * self.dim if variance == "conditional" and likelihood == "gaussian" else self.dim
        self.decoder = mlp(k, self.hidden, out, activation)
        # Shared variance: not learned by gradient steps but set to its maximum-likelihood
        # value, the mean squared reconstruction error (Rybkin et al.'s "optimal sigma"): per
        # batch while training (see log_px), over the training data at the end.
        self.register_buffer("log_variance", torch.zeros(1 if variance == "shared" else 0))
        self.register_buffer("prior_weights", torch.zeros(0))
        self.register_buffer("prior_means", torch.zeros(0, k))
        self.register_buffer("prior_chol", torch.zeros(0, k, k))

    # ---- the prior ---------------------------------------------------------------------------
    @property
    def prior(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The mixture prior as float32 arrays (weights [K], means [K, k], chol [K, k, k]), or
        None for N(0, I)."""
        if self.prior_weights.numel() == 0:
            return None
        return (
            self.prior_weights.detach().cpu().numpy().copy(),
            self.prior_means.detach().cpu().numpy().copy(),
            self.prior_chol.detach().cpu().numpy().copy(),
        )

    def set_prior(self, prior: Any) -> VAE:
        """Set the latent prior: None for N(0, I), or a Gaussian mixture (weights [K], means
        [K, k], chol [K, k, k]) checked as :class:`~gensamp.Weights` checks it (weights > 0
        summing to 1, chol lower triangular with a positive diagonal). Returns the model."""
        checked = check_prior(prior, self.latent_dim)
        k = self.latent_dim
        w, mu, L = (
            checked if checked is not None else (np.zeros(0), np.zeros((0, k)), np.zeros((0, k, k)))
        )
        dev = self.prior_weights.device
        self.prior_weights = torch.tensor(np.asarray(w), dtype=torch.float32, device=dev)
        self.prior_means = torch.tensor(np.asarray(mu), dtype=torch.float32, device=dev)
        self.prior_chol = torch.tensor(np.asarray(L), dtype=torch.float32, device=dev)
        return self

    @torch.no_grad()
    def encodings(self, x: Any) -> np.ndarray:
        """The encoder means mu_q [n, k] (float64) of data-space points x."""
        return self.encode(self.to_model(x))[0].cpu().double().numpy()

    def fit_prior(self, x: Any, components: int = 10, *, seed: int = 0) -> VAE:
        """Fit a Gaussian mixture with ``components`` full-covariance components to the
        encodings mu_q(x) of data-space points x (scikit-learn's ``GaussianMixture``, k-means
        initialisation, ``random_state=seed``) and make it the prior. Needs the ``images``
        extra (scikit-learn). Returns the model."""
        components = as_int(components, "components", 1)
        seed = as_int(seed, "seed", 0, 2**32 - 1)
        mu = self.encodings(x)
        return self._fit_prior(mu, components, seed)

    @torch.no_grad()
    def fit_variance(self, x: Any, *, seed: int = 0) -> VAE:
        """Set a shared decoder variance to its maximum-likelihood value for data-space points
        x: the mean squared error of the decoder means at one posterior draw z ~ q(z|x) per
        point (model coordinates). Returns the model."""
        if self.variance != "shared":
            raise ValueError("fit_variance needs a decoder with variance='shared'")
        return self._fit_variance(self.to_model(x), as_int(seed, "seed", 0))

    @torch.no_grad()
    def _fit_variance(self, u: torch.Tensor, seed: int) -> VAE:
        g = torch.Generator(device=self.device).manual_seed(seed)
        mu, lv = self.encode(u)
        z = mu + torch.exp(0.5 * lv) * torch.randn(mu.shape, generator=g, device=mu.device)
        self._store_variance(u, self.decoder(z))
        return self

    @torch.no_grad()
    def _store_variance(self, u: torch.Tensor, mean: torch.Tensor) -> None:
        # the maximum-likelihood shared variance: the mean squared error (floored: log 0)
        self.log_variance.copy_(((u - mean) ** 2).mean().clamp(min=1e-12).log())

    def _fit_prior(self, mu: np.ndarray, components: int, seed: int) -> VAE:
        if components > mu.shape[0]:
            raise ValueError(
                f"prior_components={components} exceeds the {mu.shape[0]} encodings to fit"
            )
        mixture = import_sklearn("sklearn.mixture", "the VAE's mixture prior")
        gm = mixture.GaussianMixture(components, covariance_type="full", random_state=seed)
        gm.fit(mu)
        w = np.asarray(gm.weights_, dtype=np.float64)
        self.set_prior((w / w.sum(), gm.means_, np.linalg.cholesky(gm.covariances_)))
        self.info["prior_fit"] = {
            "components": components,
            "converged": bool(gm.converged_),
            "iterations": int(gm.n_iter_),
            "points": int(mu.shape[0]),
        }
        return self

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) [n] under the model's prior (N(0, I) or the mixture)."""
        if self.prior_weights.numel() == 0:
            return -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)
        return objectives.mixture_log_prob(z, self.prior_weights, self.prior_means, self.prior_chol)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n latent draws [n, k] from the prior: N(0, I), or the mixture by picking component
        c with probability w_c and drawing mu_c + L_c e."""
        dev = self.prior_weights.device
        e = torch.randn(n, self.latent_dim, generator=generator, device=dev)
        if self.prior_weights.numel() == 0:
            return e
        c = torch.multinomial(self.prior_weights, n, replacement=True, generator=generator)
        return self.prior_means[c] + (self.prior_chol[c] @ e[:, :, None])[:, :, 0]

    def _prior_fn(self) -> objectives.PriorLogProb | None:
        return None if self.prior_weights.numel() == 0 else self.prior_log_prob

    # ---- the networks ------------------------------------------------------------------------
    def encode(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|u): (mean, log-variance), each [n, k]."""
        h = self.encoder(u)
        return h[:, : self.latent_dim], h[:, self.latent_dim :]

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A Gaussian decoder's p(u|z): (mean, log-variance), each [n, d], model coordinates
        (the other likelihoods: :meth:`forward` gives the logits, :meth:`mean` the mean)."""
        if self.likelihood != "gaussian":
            raise TypeError(
                f"a {self.likelihood} decoder outputs logits: use forward(z) or mean(z)"
            )
        h = self.forward(z)
        return h[:, : self.dim], h[:, self.dim :]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder output: [mean | log-variance] [n, 2d] (Gaussian) or logits [n, d]: what the
        exported weights compute."""
        return self._with_variance(self.decoder(z))

    def _with_variance(self, h: torch.Tensor) -> torch.Tensor:
        # a shared log-variance joins the network's means as d constant outputs
        if self.variance != "shared":
            return h
        return torch.cat([h, self.log_variance.expand(h.shape[0], self.dim)], dim=1)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's mean E[u | z] [n, d] in model coordinates: mu (Gaussian), lambda =
        sigmoid(logits) (Bernoulli) or the continuous Bernoulli's mean (float64 there)."""
        h = self.forward(z)
        if self.likelihood == "gaussian":
            return h[:, : self.dim]
        if self.likelihood == "bernoulli":
            return torch.sigmoid(h)
        return objectives.cb_mean(h)

    def log_px(self, u: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(u|z) [n], summed over the d values. In training mode a shared variance is the
        batch's maximum-likelihood value (mean squared error, no gradient), which is also
        stored; in eval mode the stored value is used."""
        h = self.decoder(z)
        if self.variance == "shared" and self.training:
            self._store_variance(u, h)
        h = self._with_variance(h)
        if self.likelihood == "gaussian":
            return objectives.gaussian_log_prob(u, h)
        if self.likelihood == "bernoulli":
            return objectives.bernoulli_log_prob(u, h)
        return objectives.cb_log_prob(u, h)

    def _network(self) -> nn.Sequential:
        return self.decoder

    def _config(self) -> dict[str, Any]:
        K = int(self.prior_weights.numel())
        return {
            "hidden": list(self.hidden),
            "activation": self.activation,
            "latent_dim": self.latent_dim,
            "likelihood": self.likelihood,
            **({"variance": self.variance} if self.variance != "conditional" else {}),
            "prior": "mixture" if K else "normal",
            **({"prior_components": K} if K else {}),
        }

    def to_weights(self, **overrides: Any) -> Weights:
        """Export the decoder with its likelihood and prior (see :meth:`_Normalised.to_weights`
        for the overrides); a VAE decoder beyond version 1 is a format-2 file."""
        settings = self._export_settings()
        given = {k: v for k, v in overrides.items() if v is not None}
        if "info" in given:  # add to the provenance rather than drop it
            given["info"] = {**settings["info"], **dict(given["info"])}
        settings.update(given)
        if settings.get("role") == "vae_decoder":
            settings.update(likelihood=self.likelihood, prior=self.prior)
        layers = [
            (m.weight.detach().cpu().float().numpy(), m.bias.detach().cpu().float().numpy())
            for m in self.decoder
            if isinstance(m, nn.Linear)
        ]
        if self.variance == "shared":
            # the shared log-variance as d constant outputs: zero weights, the value as bias
            W, b = layers[-1]
            lv = np.full(self.dim, float(self.log_variance.detach()), dtype=np.float32)
            layers[-1] = (np.vstack([W, np.zeros_like(W)]), np.concatenate([b, lv]))
        return Weights(layers, [self.activation] * (len(layers) - 1), **settings)

    def _log_jacobian(self) -> float:
        # log p_x(x) = log p_u(u) - sum log scale (change of variables)
        return float(torch.log(self.scale.double()).sum())

    def elbo(self, x: Any, *, beta: float = 1.0, seed: int = 0, samples: int = 1) -> np.ndarray:
        """Per-point ELBO [n] of log p(x) in data space: the one-draw reparameterised
        estimate averaged over ``samples`` draws of z (the KL in closed form for the prior
        N(0, I), estimated by the same draw for a mixture prior)."""
        samples = as_int(samples, "samples", 1)
        g = torch.Generator(device=self.device).manual_seed(int(seed))
        u = self.to_model(x)
        prior = self._prior_fn()
        with torch.no_grad():
            total = objectives.elbo(self, u, beta=beta, generator=g, prior=prior)
            for _ in range(samples - 1):
                total = total + objectives.elbo(self, u, beta=beta, generator=g, prior=prior)
            e = total / samples
        return e.cpu().double().numpy() - self._log_jacobian()

    def log_likelihood(self, x: Any, *, k: int = 100, seed: int = 0) -> np.ndarray:
        """Importance-weighted estimate of log p(x) [n] in data space (IWAE bound with k
        samples, Burda et al. 2016) under the model's prior: a lower bound in expectation,
        tightening as k grows, and >= the ELBO in expectation."""
        g = torch.Generator(device=self.device).manual_seed(int(seed))
        with torch.no_grad():
            b = objectives.iwae_bound(
                self, self.to_model(x), k=k, generator=g, prior=self._prior_fn()
            )
        return b.cpu().double().numpy() - self._log_jacobian()

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, *, noise: bool = True) -> np.ndarray:
        """n samples in data space drawn in torch (the C++ engine's :func:`gensamp.vae_sample`
        is the fast path): z from the prior, then x from p(x|z). ``noise=False`` returns the
        decoder means (mu, lambda or the continuous Bernoulli's mean)."""
        n = as_int(n, "n", 1)
        noise = as_bool(noise, "noise")
        g = torch.Generator(device=self.device).manual_seed(int(seed))
        z = self.sample_prior(n, g)
        h = self.forward(z)
        if self.likelihood == "gaussian":
            mu, logvar = h[:, : self.dim], h[:, self.dim :]
            u = (
                mu
                + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g, device=self.device)
                if noise
                else mu
            )
            return self.to_data(u)
        if not noise:
            return self.to_data(self.mean(z))
        r = torch.rand(h.shape, generator=g, device=self.device, dtype=torch.float64)
        if self.likelihood == "bernoulli":
            return self.to_data((r < torch.sigmoid(h.double())).float())
        return self.to_data(objectives.cb_inverse_cdf(h, r))
