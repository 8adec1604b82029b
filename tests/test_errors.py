"""Bad inputs raise ValueError/TypeError naming the problem; odd-but-valid arrays are converted."""

import gensamp
import numpy as np
import pytest
import torch
from conftest import random_mlp


@pytest.fixture
def w():
    return gensamp.export(random_mlp(2, 16, "relu", "sigma", seed=0), sigma_input="sigma")


@pytest.fixture
def gm():
    return gensamp.GaussianMixture([1, 1], [[-1.0, 0.0], [1.0, 0.0]])


SIG = [1.0, 0.5]


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(eps=0.0), ValueError, "eps must be finite and > 0"),
        (dict(eps=-1.0), ValueError, "eps must be finite and > 0"),
        (dict(eps=float("nan")), ValueError, "eps must be finite"),
        (dict(eps="0.1"), TypeError, "eps must be a real number"),
        (dict(T=0), ValueError, "T must be >= 1"),
        (dict(T=2.5), TypeError, "T must be an integer"),
        (dict(sigmas=[]), ValueError, "sigmas must be a non-empty"),
        (dict(sigmas=[0.5, 1.0]), ValueError, "strictly decreasing"),
        (dict(sigmas=[1.0, 1.0]), ValueError, "strictly decreasing"),
        (dict(sigmas=[1.0, -0.5]), ValueError, "finite and > 0"),
        (dict(sigmas=[1.0, float("inf")]), ValueError, "finite and > 0"),
        (dict(sigmas=[[1.0, 0.5]]), ValueError, "1-D"),
        (dict(n=0), ValueError, "n must be >= 1"),
        (dict(n=-5), ValueError, "n must be >= 1"),
        (dict(x0=np.zeros((4, 3))), ValueError, r"x0 must have shape \[n, 2\]"),
        (dict(x0=np.zeros((4, 2)), n=5), ValueError, "x0 has 4 rows but n=5"),
        (dict(x0=np.full((4, 2), np.nan)), ValueError, "x0 contains NaN"),
        (dict(x0=np.array([["a", "b"]])), TypeError, "x0 must be a real numeric array"),
        (dict(seed=-1), ValueError, "seed must be in"),
        (dict(seed=2**64), ValueError, "seed must be in"),
        (dict(threads=0), ValueError, "threads must be in"),
        (dict(record_every=-1), ValueError, "record_every must be >= 0"),
        (dict(denoise="yes"), TypeError, "denoise must be a bool"),
        (dict(chain_offset=-1), ValueError, "chain_offset must be >= 0"),
        (dict(chain_offset=1.5), TypeError, "chain_offset must be an integer"),
        (dict(chain_offset=True), TypeError, "chain_offset must be an integer"),
        (dict(chain_offset=2**64 - 3), ValueError, r"chain_offset \+ n must be <= 2\^64"),
    ],
)
def test_annealed_bad_arguments(w, kwargs, exc, match):
    args = dict(sigmas=SIG, eps=0.01, T=5, n=4)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        gensamp.annealed_langevin(w, **args)


def test_langevin_bad_arguments(w, gm):
    with pytest.raises(ValueError, match="noise-conditional: pass sigma"):
        gensamp.langevin(w, 0.01, 5)
    with pytest.raises(ValueError, match="sigma must be finite and > 0"):
        gensamp.langevin(w, 0.01, 5, sigma=0.0)
    with pytest.raises(ValueError, match="sigma must be finite"):
        gensamp.langevin(gm, 0.01, 5, sigma=-1.0)
    with pytest.raises(ValueError, match="eps must be finite and > 0"):
        gensamp.langevin(gm, -0.01, 5)
    with pytest.raises(TypeError, match="export it first"):
        gensamp.langevin(torch.nn.Linear(2, 2), 0.01, 5)
    with pytest.raises(TypeError, match="weights must be gensamp.Weights"):
        gensamp.langevin(42, 0.01, 5)
    with pytest.raises(ValueError, match="cannot read weights file"):
        gensamp.langevin("/nonexistent/w.safetensors", 0.01, 5)


def test_missing_schedule_is_a_clear_error(w):
    with pytest.raises(
        ValueError, match="sigmas, eps, T not given and the model stores no default"
    ):
        gensamp.annealed_langevin(w)


def test_vae_sample_bad_arguments(w):
    with pytest.raises(TypeError, match="vae_decoder"):
        gensamp.vae_sample(w, 10)
    dec = gensamp.export(torch.nn.Sequential(torch.nn.Linear(2, 4)), role="vae_decoder")
    with pytest.raises(ValueError, match="n must be >= 1"):
        gensamp.vae_sample(dec, 0)
    with pytest.raises(TypeError, match="not langevin"):
        gensamp.langevin(dec, 0.1, 2)
    with pytest.raises(ValueError, match=r"chain_offset \+ n must be <= 2\^64"):
        gensamp.vae_sample(dec, 10, chain_offset=2**64 - 9)
    with pytest.raises(ValueError, match="chain_offset must be >= 0"):
        gensamp.reference.vae_sample(dec, 10, chain_offset=-1)
    # the last chain index is 2^64 - 1: allowed
    assert gensamp.vae_sample(dec, 10, chain_offset=2**64 - 10).shape == (10, 2)


def test_odd_arrays_are_converted_not_refused(gm):
    base = gensamp.langevin(gm, 0.1, 20, x0=np.arange(12, dtype=np.float32).reshape(6, 2), seed=1)
    variants = [
        np.arange(12).reshape(6, 2),  # integers
        np.arange(12, dtype=np.float64).reshape(6, 2),  # float64
        np.asfortranarray(np.arange(12, dtype=np.float32).reshape(6, 2)),  # Fortran order
        np.arange(24, dtype=np.float32).reshape(6, 4)[:, ::2] * 0 + np.arange(12).reshape(6, 2),
        np.arange(12, dtype=np.float32).reshape(6, 2).tolist(),  # nested lists
        torch.arange(12, dtype=torch.float32).reshape(6, 2),  # torch tensor
    ]
    for v in variants:
        assert np.array_equal(gensamp.langevin(gm, 0.1, 20, x0=v, seed=1), base)


def test_bad_mixtures():
    with pytest.raises(ValueError, match="weights must be"):
        gensamp.GaussianMixture([1, -1], [[0.0], [1.0]])
    with pytest.raises(ValueError, match="positive definite"):
        gensamp.GaussianMixture([1], [[0.0, 0.0]], covs=[[[1.0, 2.0], [2.0, 1.0]]])
    with pytest.raises(ValueError, match="symmetric"):
        gensamp.GaussianMixture([1], [[0.0, 0.0]], covs=[[[1.0, 0.5], [0.0, 1.0]]])
    with pytest.raises(ValueError, match="stds must be"):
        gensamp.GaussianMixture([1, 1], [[0.0], [1.0]], stds=[1.0, 0.0])
    with pytest.raises(ValueError, match="not both"):
        gensamp.GaussianMixture([1], [[0.0]], stds=[1.0], covs=[[[1.0]]])


def test_engine_refuses_bad_weights_directly():
    """The binding edge re-checks what reaches the C++ core (pointers it will trust)."""
    W = np.ones((2, 2), np.float32)
    b = np.zeros(2, np.float32)
    with pytest.raises(ValueError, match="NaN or Inf"):
        gensamp._core.Mlp([(W * np.inf, b)], [])
    with pytest.raises(ValueError, match="does not match"):
        gensamp._core.Mlp([(W, b), (np.ones((2, 3), np.float32), b)], ["relu"])
    with pytest.raises(ValueError, match="unknown activation"):
        gensamp._core.Mlp([(W, b), (W, b)], ["mish"])
    with pytest.raises(ValueError, match=r"W must be \[out, in\]"):
        gensamp._core.Mlp([(np.ones(4, np.float32), b)], [])
