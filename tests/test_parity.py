"""The C++ engine against the independent numpy reference, on the same noise stream."""

import itertools

import gensamp
import numpy as np
import pytest
from conftest import ACTS, random_mlp
from gensamp import reference as ref

DIMS = [1, 2, 8, 64]
WIDTHS = [16, 64, 128, 256]
MODES = [("none", False), ("sigma", False), ("log_sigma", True), ("sigma", True)]
SIGMAS = [0.2, 0.17, 0.14, 0.1]  # L = 4 levels x T = 250 steps = 1000 steps
N = 37  # not a multiple of the tile width: exercises the ragged last tile


def assert_parity(a, b, what):
    # Metric: max |a - b| / (1 + |b|), absolute near 0 and relative for large states. The
    # engine runs in float32, the reference in float64; 1e-4 leaves room for rounding drift
    # over 1000 steps while catching any real difference (one wrong step is >= 1e-2).
    err = np.max(np.abs(a.astype(np.float64) - b) / (1.0 + np.abs(b)))
    assert np.all(np.isfinite(a)), f"{what}: non-finite engine output"
    assert err <= 1e-4, f"{what}: max rel diff {err:.3e}"


CASES = [
    (act, mode, div, DIMS[i % 4], WIDTHS[(i // 4 + i) % 4])
    for i, (act, (mode, div)) in enumerate(itertools.product(ACTS, MODES))
]


@pytest.mark.parametrize("act,mode,divide,d,width", CASES)
def test_network_sampler_parity(act, mode, divide, d, width):
    net = random_mlp(d, width, act, mode, seed=d * 1000 + width)
    w = gensamp.export(
        net,
        sigma_input=mode,
        divide_by_sigma=divide,
        shift=np.linspace(-1, 1, d),
        scale=np.linspace(0.5, 2, d),
    )
    rng = np.random.default_rng(d)
    x0 = rng.normal(size=(N, d)).astype(np.float32)
    if mode == "none" and not divide:
        a = gensamp.langevin(w, 1e-3, 1000, x0=x0, seed=11, threads=2)
        b = ref.langevin(w, 1e-3, 1000, x0=x0, seed=11)
    else:
        a = gensamp.annealed_langevin(w, SIGMAS, 1e-3, 250, x0=x0, seed=11, threads=2)
        b = ref.annealed_langevin(w, SIGMAS, 1e-3, 250, x0=x0, seed=11)
    # The chains really moved: a parity test on a frozen state would prove nothing.
    assert np.std(b - x0) > 0.3
    assert_parity(a, b, f"{act}/{mode}/div={divide}/d={d}/width={width}")


@pytest.mark.parametrize("cov", ["iso", "diag", "full"])
def test_mixture_sampler_parity(cov):
    rng = np.random.default_rng(5)
    K, d = 3, 3
    means = rng.normal(scale=4, size=(K, d))
    if cov == "iso":
        gm = gensamp.GaussianMixture([1, 2, 3], means, stds=[0.5, 1, 2])
    elif cov == "diag":
        gm = gensamp.GaussianMixture([1, 2, 3], means, stds=rng.uniform(0.5, 2, size=(K, d)))
    else:
        A = rng.normal(size=(K, d, d))
        gm = gensamp.GaussianMixture(
            [1, 2, 3], means, covs=A @ np.swapaxes(A, 1, 2) + 0.5 * np.eye(d)
        )
    sig = np.geomspace(5, 0.5, 4)
    a = gensamp.annealed_langevin(gm, sig, 0.05, 250, n=N, seed=2, denoise=True)
    b = ref.annealed_langevin(gm, sig, 0.05, 250, n=N, seed=2, denoise=True)
    assert_parity(a, b, f"mixture {cov}")
    # Default initial state (no x0) is part of the contract too.
    a = gensamp.langevin(gm, 0.05, 1000, n=N, seed=4)
    b = ref.langevin(gm, 0.05, 1000, n=N, seed=4)
    assert_parity(a, b, f"mixture {cov}, plain")


def test_mixture_score_matches_numpy(seed_mixture):
    x = np.linspace(-15, 12, 201)[:, None]
    for sigma in (0.0, 0.3, 4.0):
        engine = gensamp._core.score(seed_mixture._engine(), x.astype(np.float32), sigma)
        np.testing.assert_allclose(engine, seed_mixture.score(x, sigma), rtol=1e-5, atol=1e-5)


def test_trajectory_and_denoise_parity():
    net = random_mlp(2, 32, "tanh", "log_sigma", seed=8)
    w = gensamp.export(net, sigma_input="log_sigma", divide_by_sigma=True)
    a, ta = gensamp.annealed_langevin(
        w, SIGMAS, 1e-3, 50, n=N, seed=1, denoise=True, record_every=7
    )
    b, tb = ref.annealed_langevin(w, SIGMAS, 1e-3, 50, n=N, seed=1, denoise=True, record_every=7)
    assert ta.shape == tb.shape == (200 // 7, N, 2)
    assert_parity(a, b, "denoised output")
    assert_parity(ta, tb, "trajectory")
    # The last recorded state is the state after step 196, not the denoised output.
    assert not np.allclose(ta[-1], a)


def test_vae_sample_parity():
    dec = random_mlp(3, 64, "relu", seed=2)
    # Decoder: latent 3 -> 2*d outputs [mean | log-variance] for d = 2.
    import torch

    dec[-1] = torch.nn.Linear(64, 4)
    w = gensamp.export(dec, role="vae_decoder", shift=[1.0, -2.0], scale=[2.0, 3.0])
    assert (w.dim, w.latent_dim) == (2, 3)
    a = gensamp.vae_sample(w, 500, seed=3)
    b = ref.vae_sample(w, 500, seed=3)
    assert_parity(a, b, "vae")
    # The decoder noise is sampled: samples are not just the decoder means.
    z = ref.normals(3, np.arange(500), 0, 3)
    means = ref.forward(w, z)[:, :2] * w.scale + w.shift
    assert np.min(np.std(a - means, axis=0)) > 0.1


def test_parity_bound_detects_a_small_change():
    """The 1e-4 bound is tight enough to see a 0.1% change of eps over 1000 steps."""
    net = random_mlp(2, 64, "silu", "sigma", seed=3)
    w = gensamp.export(net, sigma_input="sigma", divide_by_sigma=True)
    x0 = np.random.default_rng(0).normal(size=(N, 2)).astype(np.float32)
    a = gensamp.annealed_langevin(w, SIGMAS, 1e-3, 250, x0=x0, seed=11)
    b = ref.annealed_langevin(w, SIGMAS, 1.001e-3, 250, x0=x0, seed=11)
    with pytest.raises(AssertionError, match="max rel diff"):
        assert_parity(a, b, "eps off by 0.1%")


@pytest.mark.parametrize("act,mode", [("relu", "none"), ("tanh", "log_sigma")])
def test_wide_and_high_dimensional_parity(act, mode):
    """The kernel's range beyond the core grid: width 512, d = 96 (not a multiple of 16)."""
    d, width = 96, 512
    net = random_mlp(d, width, act, mode, seed=77, gain=0.5)
    w = gensamp.export(net, sigma_input=mode, divide_by_sigma=mode != "none")
    x0 = np.random.default_rng(3).normal(size=(N, d)).astype(np.float32)
    if mode == "none":
        a = gensamp.langevin(w, 1e-3, 1000, x0=x0, seed=5)
        b = ref.langevin(w, 1e-3, 1000, x0=x0, seed=5)
    else:
        a = gensamp.annealed_langevin(w, SIGMAS, 1e-3, 250, x0=x0, seed=5)
        b = ref.annealed_langevin(w, SIGMAS, 1e-3, 250, x0=x0, seed=5)
    assert np.std(b - x0) > 0.3
    assert_parity(a, b, f"{act}/{mode} d={d} width={width}")


@pytest.mark.parametrize("offset", [5, 2**33 + 7, 2**64 - N])
def test_parity_with_a_chain_offset(offset):
    """The reference takes chain_offset the same way: global chain indices in the counter,
    for the noise and the default starting points, across the 2^32 word boundary too."""
    net = random_mlp(2, 32, "silu", "log_sigma", seed=12)
    w = gensamp.export(
        net, sigma_input="log_sigma", divide_by_sigma=True, shift=[1.0, -1.0], scale=[0.5, 2.0]
    )
    a = gensamp.annealed_langevin(w, SIGMAS, 1e-3, 100, n=N, seed=6, chain_offset=offset)
    b = ref.annealed_langevin(w, SIGMAS, 1e-3, 100, n=N, seed=6, chain_offset=offset)
    assert_parity(a, b, f"annealed, chain_offset={offset}")
    # and it is not the run without the offset
    assert not np.allclose(a, gensamp.annealed_langevin(w, SIGMAS, 1e-3, 100, n=N, seed=6))
    gm = gensamp.GaussianMixture([1, 3], [[-2.0, 0.0], [2.0, 1.0]], stds=[0.5, 1.0])
    a = gensamp.langevin(gm, 0.05, 200, n=N, seed=4, chain_offset=offset)
    b = ref.langevin(gm, 0.05, 200, n=N, seed=4, chain_offset=offset)
    assert_parity(a, b, f"mixture plain, chain_offset={offset}")
    import torch

    dec = random_mlp(3, 32, "relu", seed=2)
    dec[-1] = torch.nn.Linear(32, 4)
    v = gensamp.export(dec, role="vae_decoder", shift=[1.0, -2.0], scale=[2.0, 3.0])
    a = gensamp.vae_sample(v, N, seed=3, chain_offset=offset)
    b = ref.vae_sample(v, N, seed=3, chain_offset=offset)
    assert_parity(a, b, f"vae, chain_offset={offset}")


# ---- VAE decoders: likelihoods and the mixture prior ---------------------------------------

VAE_N = 500
LIKELIHOODS = ["gaussian", "bernoulli", "continuous_bernoulli"]


def vae_weights(likelihood, mixture, k=3, d=5, seed=4):
    """A random decoder latent k -> d whose logits span about +-6 (lambda covers (0, 1)), with a
    3-component full-covariance mixture prior when ``mixture``; Gaussian: normalised."""
    import torch

    dec = random_mlp(k, 64, "tanh", seed=seed)
    dec[-1] = torch.nn.Linear(64, 2 * d if likelihood == "gaussian" else d)
    with torch.no_grad():
        dec[-1].weight.mul_(4.0)
    layers = [
        (m.weight.detach().numpy(), m.bias.detach().numpy())
        for m in dec
        if isinstance(m, torch.nn.Linear)
    ]
    prior = None
    if mixture:
        rng = np.random.default_rng(seed)
        L = np.tril(rng.normal(scale=0.3, size=(3, k, k)), -1)
        L += np.eye(k) * rng.uniform(0.2, 1.0, size=(3, 1, k))
        prior = ([0.2, 0.5, 0.3], rng.normal(scale=2.0, size=(3, k)), L)
    norm = {}
    if likelihood == "gaussian":
        norm = {"shift": np.linspace(-1, 1, d), "scale": np.linspace(0.5, 2, d)}
    return gensamp.Weights(
        layers, ["tanh", "tanh"], role="vae_decoder", likelihood=likelihood, prior=prior, **norm
    )


def test_uniform_stream_matches_reference():
    for chain, step, d in [(0, 1, 1), (7, 2, 5), (2**33 + 5, 1, 9), (2**64 - 1, 0, 4)]:
        a = gensamp._core.uniforms(11, chain, step, d)
        b = ref.uniforms(11, [chain], step, d)[0]
        np.testing.assert_array_equal(a, b)
        assert np.all((a > 0) & (a < 1))


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("mixture", [False, True], ids=["normal", "mixture"])
@pytest.mark.parametrize("noise", [True, False], ids=["noise", "mean"])
def test_vae_likelihood_and_prior_parity(likelihood, mixture, noise):
    w = vae_weights(likelihood, mixture)
    a = gensamp.vae_sample(w, VAE_N, seed=3, noise=noise, threads=2)
    b = ref.vae_sample(w, VAE_N, seed=3, noise=noise)
    assert a.shape == b.shape == (VAE_N, 5)
    if likelihood == "bernoulli" and noise:
        # x = 1[u < lambda]: the engine's lambda (a float32 network) and the reference's
        # (float64) differ by rounding, so a draw may differ where u lies within that gap of
        # lambda, and nowhere else. The gap is measured on the means (the engine returns
        # lambda rounded to float32: +6e-8).
        lam_engine = gensamp.vae_sample(w, VAE_N, seed=3, noise=False)
        lam = ref.vae_sample(w, VAE_N, seed=3, noise=False)
        gap = float(np.max(np.abs(lam_engine - lam))) + 6e-8
        assert gap < 1e-5, f"lambda differs by {gap:.2e}: not rounding"
        u = ref.uniforms(3, np.arange(VAE_N), 1, 5)
        tie = np.abs(u - lam) <= gap
        assert set(np.unique(a)) == {0.0, 1.0}
        assert np.array_equal(a[~tie], b[~tie]), f"{np.sum(a[~tie] != b[~tie])} draws differ"
        assert tie.sum() <= 5  # ~2 * gap * 2500 expected: the comparison covers nearly all
        assert 0.2 < a.mean() < 0.8  # lambda really covers (0, 1): both outcomes are common
    else:
        assert_parity(a, b, f"vae {likelihood}, mixture={mixture}, noise={noise}")
    if likelihood != "gaussian":
        assert np.all((a >= 0) & (a <= 1))
    if mixture:
        # The components really differ: the draws are not all from one of them.
        z = ref._latent(w, 3, np.arange(VAE_N))
        assert np.std(z[:, 0]) > 1.0


def test_vae_mixture_parity_with_a_chain_offset():
    w = vae_weights("continuous_bernoulli", True)
    for offset in (5, 2**33 + 7, 2**64 - N):
        a = gensamp.vae_sample(w, N, seed=8, chain_offset=offset)
        b = ref.vae_sample(w, N, seed=8, chain_offset=offset)
        assert_parity(a, b, f"vae cb mixture, chain_offset={offset}")


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_vae_sample_is_thread_and_tile_invariant(likelihood):
    """Bit-identical for 1, 2 and 7 threads, any tile, and any split into shards."""
    w = vae_weights(likelihood, True)
    n = 203
    for noise in (True, False):
        base = gensamp.vae_sample(w, n, seed=9, threads=1, noise=noise)
        for threads, tile in [(2, 16), (7, 64), (7, 1), (2, 100), (1, 1000)]:
            again = gensamp.vae_sample(w, n, seed=9, threads=threads, tile=tile, noise=noise)
            assert np.array_equal(again, base), f"threads={threads} tile={tile} noise={noise}"
        part = gensamp.vae_sample(w, n - 103, seed=9, chain_offset=103, threads=2, noise=noise)
        assert np.array_equal(part, base[103:])
    # and a different seed is a different draw (of z: these are the decoder means)
    assert not np.array_equal(gensamp.vae_sample(w, n, seed=10, noise=False), base)
