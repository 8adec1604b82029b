"""Gaussian mixtures with exact densities and scores, also at any noise level sigma."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._validate import as_int, as_pos_float


class GaussianMixture:
    """sum_k w_k N(mu_k, Sigma_k), Sigma_k diagonal (``stds``) or full (``covs``).

    Parameters
    ----------
    weights : array [K]
        Positive mixture weights (normalised here).
    means : array [K, d]  (or [K] for d = 1)
    stds : array [K] (isotropic) or [K, d] (diagonal), optional; default 1.
    covs : array [K, d, d], optional
        Full symmetric positive definite covariances; exclusive with ``stds``.

    ``score(x, sigma)`` and ``log_prob(x, sigma)`` with sigma > 0 are those of the mixture
    convolved with N(0, sigma^2 I), i.e. sum_k w_k N(mu_k, Sigma_k + sigma^2 I): the exact
    target of a noise-conditional score network. They are evaluated here in float64 numpy,
    independently of the C++ engine (which has its own implementation for sampling).
    """

    def __init__(self, weights: Any, means: Any, stds: Any = None, covs: Any = None) -> None:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.size == 0 or not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ValueError("weights must be a non-empty array of finite values > 0")
        w = w / w.max()  # only ratios matter; keeps the sum finite
        if np.any(w < np.finfo(np.float64).tiny):
            lost = np.flatnonzero(w < np.finfo(np.float64).tiny).tolist()
            raise ValueError(
                f"weights span more than float64's range: component(s) {lost} would get weight "
                "0 relative to the largest; drop them or give weights within ~1e300 of each other"
            )
        mu = np.asarray(means, dtype=np.float64)
        if mu.ndim == 1:
            mu = mu[:, None]
        if mu.ndim != 2 or mu.shape[0] != w.size:
            raise ValueError(f"means must be [K={w.size}, d], got shape {np.shape(means)}")
        if not np.all(np.isfinite(mu)):
            raise ValueError("means contain NaN or Inf")
        K, d = mu.shape
        if d < 1:
            raise ValueError("means must be [K, d] with d >= 1")
        if stds is not None and covs is not None:
            raise ValueError("give stds or covs, not both")
        if covs is not None:
            C = np.asarray(covs, dtype=np.float64)
            if C.shape != (K, d, d):
                raise ValueError(f"covs must be [K={K}, d={d}, d={d}], got {C.shape}")
            if not np.all(np.isfinite(C)) or not np.allclose(
                C, np.swapaxes(C, 1, 2), rtol=1e-10, atol=0
            ):
                raise ValueError("covs must be finite and symmetric")
            try:
                np.linalg.cholesky(C)
            except np.linalg.LinAlgError:
                raise ValueError("covs must be positive definite") from None
            self._var: np.ndarray | None = None
            self._cov: np.ndarray | None = C
        else:
            s = np.ones((K, d)) if stds is None else np.asarray(stds, dtype=np.float64)
            if s.ndim == 1 and s.size == K:
                s = np.repeat(s[:, None], d, axis=1)
            if s.shape != (K, d):
                raise ValueError(f"stds must be [K={K}] or [K={K}, d={d}], got {np.shape(stds)}")
            if not np.all(np.isfinite(s)) or np.any(s <= 0):
                raise ValueError("stds must be finite and > 0")
            with np.errstate(over="ignore", under="ignore"):
                var = s * s
            if not (np.all(np.isfinite(var)) and np.all(var >= np.finfo(np.float64).tiny)):
                raise ValueError(
                    "stds must be in [1e-154, 1e154]: their squares must be finite and > 0"
                )
            self._var = var
            self._cov = None
        self._w = w / w.sum()
        self._mu = mu
        for a in (self._w, self._mu, self._var, self._cov):
            if a is not None:
                a.setflags(write=False)
        self._engine_cache: _core.Mixture | None = None

    dim = property(lambda self: self._mu.shape[1])
    n_components = property(lambda self: self._mu.shape[0])
    weights = property(lambda self: self._w)
    means = property(lambda self: self._mu)
    diagonal = property(lambda self: self._cov is None)

    @property
    def covariances(self) -> np.ndarray:
        """[K, d, d] covariances (built from stds when diagonal)."""
        if self._var is not None:
            return np.stack([np.diag(v) for v in self._var])
        assert self._cov is not None
        return self._cov

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Plain floats and the constructor's checks: unpickling (spawn pools, deepcopy,
        # distributed workers) rebuilds a validated mixture, never arbitrary objects, and the
        # engine's cached copy is rebuilt on first use.
        cov = None if self._cov is None else self._cov.tolist()
        var = None if self._var is None else self._var.tolist()
        return (_restore, (self._w.tolist(), self._mu.tolist(), var, cov))

    def __repr__(self) -> str:
        kind = "diagonal" if self.diagonal else "full"
        return f"GaussianMixture(K={self.n_components}, d={self.dim}, {kind} covariances)"

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """The mixture's exact mean [d] and covariance [d, d]:
        sum_k w_k mu_k and sum_k w_k (Sigma_k + (mu_k - m)(mu_k - m)^T)."""
        m = self._w @ self._mu
        dev = self._mu - m
        spread = np.einsum("k,ki,kj->ij", self._w, dev, dev)
        if self._var is not None:
            within = np.diag(self._w @ self._var)
        else:
            assert self._cov is not None
            within = np.einsum("k,kij->ij", self._w, self._cov)
        return m, within + spread

    def sample(self, n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """n i.i.d. samples [n, d] (numpy's generator; independent of the engine's Philox)."""
        n = as_int(n, "n", 1)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        k = rng.choice(self.n_components, size=n, p=self._w)
        z = rng.standard_normal((n, self.dim))
        if self._var is not None:
            return self._mu[k] + np.sqrt(self._var[k]) * z
        assert self._cov is not None
        L = np.linalg.cholesky(self._cov)
        return self._mu[k] + np.einsum("nij,nj->ni", L[k], z)

    def _terms(self, x: Any, sigma: float) -> tuple[np.ndarray, np.ndarray]:
        """Per-component log(w_k N(x; mu_k, S_k)) [n, K] and P_k (x - mu_k) [n, K, d]."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1 and self.dim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape [n, {self.dim}], got {np.shape(x)}")
        sigma = as_pos_float(sigma, "sigma", allow_zero=True)
        diff = x[:, None, :] - self._mu[None]  # [n, K, d]
        d = self.dim
        if self._var is not None:
            var = self._var + sigma**2
            m = diff / var[None]
            quad = np.sum(diff * m, axis=2)
            logdet = np.sum(np.log(var), axis=1)
        else:
            assert self._cov is not None
            S = self._cov + sigma**2 * np.eye(d)
            P = np.linalg.inv(S)
            m = np.einsum("kij,nkj->nki", P, diff)
            quad = np.sum(diff * m, axis=2)
            logdet = np.linalg.slogdet(S)[1]
        logp = np.log(self._w)[None] - 0.5 * (logdet[None] + quad + d * np.log(2 * np.pi))
        return logp, m

    def log_prob(self, x: Any, sigma: float = 0.0) -> np.ndarray:
        """log density [n] of the mixture convolved with N(0, sigma^2 I)."""
        logp, _ = self._terms(x, sigma)
        mx = logp.max(axis=1, keepdims=True)
        return (mx + np.log(np.exp(logp - mx).sum(axis=1, keepdims=True)))[:, 0]

    def score(self, x: Any, sigma: float = 0.0) -> np.ndarray:
        """Exact score [n, d] of the mixture convolved with N(0, sigma^2 I)."""
        logp, m = self._terms(x, sigma)
        r = np.exp(logp - logp.max(axis=1, keepdims=True))
        r /= r.sum(axis=1, keepdims=True)
        return -np.einsum("nk,nkd->nd", r, m)

    def component_of(self, x: Any) -> np.ndarray:
        """Index [n] of the component with the highest responsibility for each point."""
        logp, _ = self._terms(x, 0.0)
        return np.argmax(logp, axis=1)

    def _engine_bytes(self) -> int:
        """What building :meth:`_engine` allocates."""
        return _core.mixture_bytes(self.n_components, self.dim, self._cov is not None)

    def _engine(self) -> _core.Mixture:
        if self._engine_cache is None:
            if self._cov is None:
                self._engine_cache = _core.Mixture(self._w, self._mu, variances=self._var)
            else:
                self._engine_cache = _core.Mixture(self._w, self._mu, covs=self._cov)
        return self._engine_cache


def _restore(weights: Any, means: Any, variances: Any, covs: Any) -> GaussianMixture:
    """The mixture :meth:`GaussianMixture.__reduce__` describes, bit for bit."""
    if covs is not None:
        mix = GaussianMixture(weights, means, covs=covs)
    else:
        var = np.asarray(variances, dtype=np.float64)
        mix = GaussianMixture(weights, means, stds=np.sqrt(var))
        var.setflags(write=False)
        mix._var = var  # the square of the square root may differ in the last bit
    w = np.asarray(weights, dtype=np.float64)
    w.setflags(write=False)
    mix._w = w  # already normalised: kept exactly
    return mix
