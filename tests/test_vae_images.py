"""VAEs for images: Bernoulli and continuous-Bernoulli decoders, the ex-post mixture prior,
their export (weights format 2) and the engine's sampling of them."""

import math
import sys

import gensamp
import numpy as np
import pytest
import torch
from gensamp import datasets
from gensamp import reference as ref
from gensamp.learn import objectives as O
from gensamp.learn.models import VAE

pytest.importorskip("sklearn")

SMALL = dict(latent_dim=4, hidden=(64,), epochs=4, seed=0, threads=1, progress=False)


@pytest.fixture(scope="module")
def digits300():
    return datasets.digits("train")[:300]


@pytest.fixture(scope="module", params=["bernoulli", "continuous_bernoulli"])
def trained(request, digits300):
    # val_fraction=0: the mixture is fitted to the encodings of all 300 images
    m = gensamp.train_vae(
        digits300,
        likelihood=request.param,
        prior="mixture",
        prior_components=4,
        val_fraction=0.0,
        **SMALL,
    )
    return m, gensamp.export(m)


# ---- training, the fitted prior, export ------------------------------------------------------


def test_training_fits_the_pixels_and_the_prior(trained, digits300):
    m, _ = trained
    assert m.history.epochs == 4 and m.shift.abs().max() == 0  # no normalisation
    assert m.history.train_loss[-1] < m.history.train_loss[0]
    w, mu, L = m.prior
    assert w.shape == (4,) and mu.shape == (4, 4) and L.shape == (4, 4, 4)
    assert abs(float(w.sum()) - 1) < 1e-6 and np.all(np.triu(L, 1) == 0)
    assert m.info["prior_fit"]["components"] == 4 and m.info["prior_fit"]["points"] == 300
    # An EM fit keeps the data's mean: sum_c w_c mu_c is the mean of the encodings it saw.
    enc = m.encodings(digits300)
    np.testing.assert_allclose(w @ mu, enc.mean(0), atol=1e-4 * (1 + np.abs(enc).max()))
    assert m.history.settings["likelihood"] == m.likelihood
    assert m.history.settings["prior"] == "mixture"


def test_export_save_load_round_trip(trained, tmp_path):
    m, w = trained
    assert w.role == "vae_decoder" and w.likelihood == m.likelihood
    assert (w.dim, w.latent_dim) == (64, 4) and w.shift is None
    for a, b in zip(w.prior, m.prior):
        np.testing.assert_array_equal(a, b)
    assert w.info["likelihood"] == m.likelihood and w.info["prior"] == "mixture"
    z = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    with torch.no_grad():
        logits = m(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(w.forward(z), logits, rtol=1e-5, atol=1e-5)
    p = tmp_path / "vae.safetensors"
    w.save(p)
    v = gensamp.load(p)
    assert v.likelihood == w.likelihood
    for a, b in zip(v.prior, w.prior):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        gensamp.vae_sample(p, 200, seed=5), gensamp.vae_sample(w, 200, seed=5)
    )
    assert not np.array_equal(gensamp.vae_sample(w, 200, seed=5), gensamp.vae_sample(w, 200))


def test_engine_samples_live_on_the_likelihoods_support(trained):
    m, w = trained
    x = gensamp.vae_sample(w, 2000, seed=1)
    assert x.shape == (2000, 64) and x.dtype == np.float32
    if m.likelihood == "bernoulli":
        assert set(np.unique(x)) == {0.0, 1.0}
    else:
        assert np.all((x >= 0) & (x <= 1))
        assert np.mean((x > 0) & (x < 1)) > 0.99  # a density on [0, 1]: no atoms at 0 or 1
    mean = gensamp.vae_sample(w, 2000, seed=1, noise=False)
    assert np.all((mean > 0) & (mean < 1))
    # The draws scatter around the means they are drawn from (same z: same seed).
    assert abs(float(np.mean(x - mean))) < 0.01
    # torch's own sampler draws from the same model
    t = m.sample(2000, seed=1)
    assert t.shape == (2000, 64) and np.all((t >= 0) & (t <= 1))
    assert abs(float(t.mean() - x.mean())) < 0.02


# ---- the Gaussian decoder with a shared variance ----------------------------------------------


@pytest.fixture(scope="module")
def shared(digits300):
    m = gensamp.train_vae(
        digits300, variance="shared", prior="mixture", prior_components=4, val_fraction=0.0,
        **{**SMALL, "epochs": 40},
    )  # fmt: skip
    return m, gensamp.export(m)


def test_shared_variance_is_one_number_at_the_reconstruction_error(shared, digits300):
    m, _ = shared
    assert m.variance == "shared" and m.log_variance.shape == (1,)
    assert m.history.settings["variance"] == "shared"
    # one scale for every pixel (isotropic), so that one variance means the same everywhere
    assert m.history.settings["normalize"] == "isotropic" and len(set(m.scale.tolist())) == 1
    h = m(torch.zeros(3, 4))
    assert h.shape == (3, 128) and torch.all(h[:, 64:] == m.log_variance)
    # The maximum-likelihood shared variance is the mean squared reconstruction error over
    # the posterior draws: training must have moved it there (it starts at 0.05).
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        u = m.to_model(digits300)
        mu, lv = m.encode(u)
        z = mu + torch.exp(0.5 * lv) * torch.randn(mu.shape, generator=g)
        mse = float(((m.mean(z) - u) ** 2).mean())
    var = float(m.log_variance.detach().exp())
    assert 0.8 < var / mse < 1.25, (var, mse)


def test_shared_variance_exports_as_constant_outputs_the_engine_samples(shared, digits300):
    m, w = shared
    assert w.likelihood == "gaussian" and w.output_dim == 128 and w.info["variance"] == "shared"
    W, b = w.layers[-1]
    assert np.all(W[64:] == 0) and np.all(b[64:] == np.float32(m.log_variance.item()))
    z = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(w.forward(z), m(torch.from_numpy(z)).numpy(), atol=1e-5)
    x = gensamp.vae_sample(w, 20000, seed=3).astype(np.float64)
    mean = gensamp.vae_sample(w, 20000, seed=3, noise=False).astype(np.float64)
    # same z (same seed): the difference is the decoder's noise, N(0, var) in model units
    sd = math.exp(0.5 * m.log_variance.item()) * float(m.scale[0])
    noise = x - mean
    assert abs(noise.std() / sd - 1) < 0.01 and abs(noise.mean()) < 0.01 * sd
    assert abs(float(np.corrcoef(noise[:, 10], noise[:, 11])[0, 1])) < 0.03
    # torch's sampler draws the same distribution
    t = m.sample(20000, seed=3)
    assert abs(float(t.std() - x.std())) < 0.01 and abs(float(t.mean() - x.mean())) < 0.01


# ---- the continuous Bernoulli ---------------------------------------------------------------

LOGITS = [-40.0, -8.0, -1.0, -0.1001, -0.0999, -1e-3, 0.0, 1e-7, 0.05, 0.1, 0.5, 2.0, 10.0, 40.0]


def _log_norm_by_quadrature(l):
    """-log of the integral over [0, 1] of lambda^x (1 - lambda)^(1 - x), by 80-point
    Gauss-Legendre (exact to rounding for these smooth integrands), lambda = sigmoid(l)."""
    t, wq = np.polynomial.legendre.leggauss(80)
    x = 0.5 * (t + 1.0)
    log_lam = -np.logaddexp(0.0, -l)
    log_rest = -np.logaddexp(0.0, l)
    return -math.log(0.5 * np.sum(wq * np.exp(x * log_lam + (1 - x) * log_rest)))


def test_cb_log_normaliser_against_numerical_integration():
    expected = np.array([_log_norm_by_quadrature(l) for l in LOGITS])
    got64 = O.cb_log_norm(torch.tensor(LOGITS, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got64, expected, rtol=0, atol=1e-9)
    got32 = O.cb_log_norm(torch.tensor(LOGITS, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(got32, expected, rtol=0, atol=2e-6)
    assert got64[LOGITS.index(0.0)] == pytest.approx(math.log(2.0), abs=1e-15)
    # finite gradients everywhere, the series' point l = 0 included
    lt = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    O.cb_log_norm(lt).sum().backward()
    assert torch.all(torch.isfinite(lt.grad))
    # log C is even in l and grows like log|l| (C -> l / tanh(l / 2) ~ |l|)
    assert got64[0] == pytest.approx(got64[-1]) and got64[-1] == pytest.approx(math.log(40.0))


def test_cb_log_prob_integrates_to_one():
    t, wq = np.polynomial.legendre.leggauss(80)
    x = torch.tensor(0.5 * (t + 1.0))[:, None]
    for l in (-6.0, -0.05, 0.0, 0.3, 12.0):
        logits = torch.full((80, 1), l, dtype=torch.float64)
        mass = 0.5 * float(np.sum(wq * np.exp(O.cb_log_prob(x, logits).numpy())))
        assert mass == pytest.approx(1.0, abs=1e-10)


def _constant_decoder(logits, likelihood):
    """A decoder whose logits ignore z: every row is one draw from the same p(x)."""
    b = np.asarray(logits, np.float32)
    return gensamp.Weights(
        [(np.zeros((b.size, 2), np.float32), b)], [], role="vae_decoder", likelihood=likelihood
    )


def test_engine_draws_follow_the_continuous_bernoulli_cdf():
    """Kolmogorov-Smirnov against the exact CDF F(x) = (lambda^x (1 - lambda)^(1 - x) -
    (1 - lambda)) / (2 lambda - 1) (F(x) = x at lambda = 1/2), per logit; the bound is the
    test's 0.1% critical value 1.95 / sqrt(n)."""
    logits = [-8.0, -1.0, 1e-7, 0.3, 5.0]
    n = 20000
    w = _constant_decoder(logits, "continuous_bernoulli")
    x = gensamp.vae_sample(w, n, seed=2).astype(np.float64)
    grid = np.arange(1, n + 1) / n
    for i, l in enumerate(logits):
        lam = 1 / (1 + math.exp(-l))
        xs = np.sort(x[:, i])
        if abs(lam - 0.5) < 1e-6:
            F = xs
        else:
            F = (lam**xs * (1 - lam) ** (1 - xs) - (1 - lam)) / (2 * lam - 1)
        ks = max(np.max(grid - F), np.max(F - (grid - 1 / n)))
        assert ks < 1.95 / math.sqrt(n), f"logit {l}: KS {ks:.4f}"
        mean = gensamp.vae_sample(w, 1, noise=False)[0, i]
        assert mean == pytest.approx(np.mean(x[:, i]), abs=5 * np.std(x[:, i]) / math.sqrt(n))


def test_engine_bernoulli_draws_have_the_right_frequency():
    logits = [-3.0, 0.0, 0.7, 4.0]
    n = 40000
    x = gensamp.vae_sample(_constant_decoder(logits, "bernoulli"), n, seed=3)
    for i, l in enumerate(logits):
        lam = 1 / (1 + math.exp(-l))
        assert abs(x[:, i].mean() - lam) < 5 * math.sqrt(lam * (1 - lam) / n)


# ---- the mixture prior's sampler ---------------------------------------------------------------


def _moments(prior):
    w, mu, L = (np.asarray(a, np.float64) for a in prior)
    mean = w @ mu
    cov = sum(wc * (Lc @ Lc.T + np.outer(m, m)) for wc, m, Lc in zip(w, mu, L))
    return mean, cov - np.outer(mean, mean)


def _assert_moments(z, prior, what):
    """Sample mean and covariance of z against the mixture's, each entry within 5 of its own
    standard errors (estimated from z: sd / sqrt(n) for a mean, the sd of the centred
    products / sqrt(n) for a covariance)."""
    n = z.shape[0]
    mean, cov = _moments(prior)
    c = z - z.mean(0)
    prods = c[:, :, None] * c[:, None, :]
    se_mean = z.std(0) / math.sqrt(n)
    se_cov = prods.std(0) / math.sqrt(n)
    assert np.all(np.abs(z.mean(0) - mean) < 5 * se_mean), f"{what}: mean off"
    assert np.all(np.abs(prods.mean(0) - cov) < 5 * se_cov + 1e-12), f"{what}: covariance off"


def test_mixture_prior_sampler_matches_the_stored_mixture(trained):
    """z through a decoder whose mean is z itself: the engine's latent draws, moment by
    moment, against the mixture the weights store (the trained model's own)."""
    _, w = trained
    k = w.latent_dim
    eye = np.vstack([np.eye(k), np.zeros((k, k))]).astype(np.float32)  # [z | log-variance 0]
    ident = gensamp.Weights(
        [(eye, np.zeros(2 * k, np.float32))], [], role="vae_decoder", prior=w.prior
    )
    n = 200_000
    z = gensamp.vae_sample(ident, n, seed=4, noise=False).astype(np.float64)
    _assert_moments(z, w.prior, "engine")
    # the reference's draws are the engine's
    np.testing.assert_allclose(z[:300], ref.vae_sample(ident, 300, seed=4, noise=False), atol=1e-5)
    # and torch's own sampler draws from the same mixture
    m, _ = trained
    zt = m.sample_prior(50_000, torch.Generator().manual_seed(0)).double().numpy()
    _assert_moments(zt, w.prior, "torch")


def test_mixture_moments_check_detects_a_wrong_weight(trained):
    """The moment test has power: the same draws against a mixture with its weights
    reversed fail it."""
    _, w = trained
    k = w.latent_dim
    eye = np.vstack([np.eye(k), np.zeros((k, k))]).astype(np.float32)
    ident = gensamp.Weights(
        [(eye, np.zeros(2 * k, np.float32))], [], role="vae_decoder", prior=w.prior
    )
    z = gensamp.vae_sample(ident, 200_000, seed=4, noise=False).astype(np.float64)
    weights, mu, L = w.prior
    with pytest.raises(AssertionError, match="off"):
        _assert_moments(z, (weights[::-1], mu, L), "reversed weights")


def test_image_defaults(digits300):
    """A Bernoulli likelihood brings the image defaults: no normalisation, latent 12, hidden
    (256, 256), 500 epochs at lr 1e-3, 40 mixture components (fewer when fewer points)."""
    from gensamp.learn.train import IMAGE_VAE, IMAGE_VAE_FIT

    assert (IMAGE_VAE_FIT.epochs, IMAGE_VAE_FIT.lr, IMAGE_VAE_FIT.normalize) == (500, 1e-3, "none")
    m = gensamp.train_vae(
        digits300[:40], likelihood="continuous_bernoulli", prior="mixture", epochs=1, seed=0
    )
    assert (
        (m.latent_dim, m.hidden)
        == (IMAGE_VAE["latent_dim"], IMAGE_VAE["hidden"])
        == (12, (256, 256))
    )
    assert len(m.prior[0]) == 36  # 40 by default, but only 36 training points
    g = gensamp.train_vae(np.linspace(0, 1, 40), epochs=1, seed=0)  # Gaussian: as before
    assert (g.latent_dim, g.hidden, g.likelihood) == (2, (128, 128), "gaussian")
    assert g.normalised and g.prior is None


# ---- bad arguments -------------------------------------------------------------------------------


def test_bad_arguments_are_refused_with_clear_messages(digits300, trained, monkeypatch):
    x = digits300[:40]
    fast = dict(epochs=1, progress=False)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        gensamp.train_vae(x, likelihood="poisson", **fast)
    with pytest.raises(ValueError, match=r"needs data in \[0, 1\]"):
        gensamp.train_vae(2 * x, likelihood="bernoulli", **fast)
    with pytest.raises(ValueError, match="normalize must be 'none'"):
        gensamp.train_vae(x, likelihood="continuous_bernoulli", normalize="standard", **fast)
    with pytest.raises(ValueError, match="prior must be one of"):
        gensamp.train_vae(x, likelihood="bernoulli", prior="gmm", **fast)
    with pytest.raises(ValueError, match="prior_components must be >= 1"):
        gensamp.train_vae(x, prior="mixture", prior_components=0, **fast)
    with pytest.raises(TypeError, match="prior_components must be an integer"):
        gensamp.train_vae(x, prior="mixture", prior_components="3", **fast)
    with pytest.raises(ValueError, match="prior_components=100 exceeds the 36 training points"):
        gensamp.train_vae(x, likelihood="bernoulli", prior="mixture", prior_components=100, **fast)
    with pytest.raises(ValueError, match="variance must be one of"):
        gensamp.train_vae(x, variance="diagonal", **fast)
    with pytest.raises(ValueError, match="variance='shared' is a Gaussian decoder's option"):
        gensamp.train_vae(x, likelihood="bernoulli", variance="shared", **fast)
    with pytest.raises(ValueError, match="give no shift/scale"):
        VAE(64, likelihood="bernoulli", shift=np.zeros(64), scale=np.ones(64))
    m, w = trained
    with pytest.raises(TypeError, match="outputs logits: use forward"):
        m.decode(torch.zeros(1, 4))
    with pytest.raises(TypeError, match="noise must be a bool"):
        gensamp.vae_sample(w, 10, noise="no")
    with pytest.raises(TypeError, match="noise must be a bool"):
        m.sample(10, noise=1)
    with pytest.raises(ValueError, match="prior weights must sum to 1"):
        m.set_prior(([0.5, 0.6], np.zeros((2, 4)), np.stack([np.eye(4)] * 2)))
    # the engine itself, called directly: shapes that would be read out of bounds
    mlp = gensamp._core.Mlp(
        [(np.zeros((6, 2), np.float32), np.zeros(6, np.float32))],
        [],
        "none",
        False,
        np.zeros(2, np.float32),  # the latent's length, not the data's (3)
        np.ones(2, np.float32),
    )
    with pytest.raises(ValueError, match="the data's length d"):
        gensamp._core.vae_run(mlp, 5, 0, 1, 64)
    with pytest.raises(ValueError, match=r"prior must be \(weights \[K\]"):
        gensamp._core.vae_run(
            mlp, 5, 0, 1, 64, prior=(np.ones(1), np.zeros((1, 3)), np.eye(2)[None])
        )
    with pytest.raises(TypeError, match="vae_sample needs Weights with role 'vae_decoder'"):
        gensamp.vae_sample(gensamp.GaussianMixture([1], [[0.0]], stds=[1.0]), 10)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # as on a machine without the extra
    with pytest.raises(ImportError, match=r"train_vae\(prior='mixture'\) needs scikit-learn"):
        gensamp.train_vae(x, prior="mixture", **fast)
    with pytest.raises(ImportError, match=r"gensamp\[images\]"):
        m.fit_prior(x, 2)
