"""gensamp.learn (models, objectives, fit loop, training calls) and gensamp.schedules:
objectives, torch-vs-engine agreement, and small seeded training runs that must learn the right
thing (fast settings; loose bounds that still fail when a method is wrong)."""

from __future__ import annotations

import math

import gensamp
import numpy as np
import pytest
import torch
from gensamp import GaussianMixture
from gensamp import datasets as D
from gensamp import metrics as M
from gensamp.learn.models import NCSN, VAE, ScoreNet
from gensamp.learn.objectives import (
    confinement_penalty,
    dsm_loss,
    elbo,
    empirical_target,
    implicit_sm_loss,
    iwae_bound,
    ncsn_loss,
    sliced_sm_loss,
)
from gensamp.learn.train import langevin_defaults, train_ncsn, train_score, train_vae
from gensamp.methods import _prop3_variance
from gensamp.schedules import ncsn_defaults

FAST = {"threads": 1, "progress": False}


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def two_bumps():
    """1D mixture with an exact score, easy enough for a few seconds of training."""
    mix = GaussianMixture([1, 1], [[-2.0], [2.0]], stds=[0.7, 0.7])
    return mix.sample(2000, seed=0), mix


# ---- objectives ----------------------------------------------------------------------------


def _toy_net(d_in, d_out, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(d_in, 16), torch.nn.Tanh(), torch.nn.Linear(16, d_out)
    )


def test_implicit_sm_loss_matches_full_jacobian():
    net = _toy_net(3, 3)
    u = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    loss = implicit_sm_loss(net, u)
    per = []
    for row in u:
        J = torch.autograd.functional.jacobian(net, row)
        per.append(torch.trace(J) + 0.5 * net(row).pow(2).sum())
    assert loss.item() == pytest.approx(torch.stack(per).mean().item(), rel=1e-5)
    loss.backward()  # differentiable in the parameters (create_graph=True)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_sliced_sm_loss_is_unbiased_for_the_trace():
    net = _toy_net(3, 3, seed=2)
    u = torch.randn(4, 3, generator=torch.Generator().manual_seed(3))
    exact = implicit_sm_loss(net, u).item()
    g = torch.Generator().manual_seed(4)
    sliced = sliced_sm_loss(net, u, n_projections=40_000, generator=g).item()
    assert sliced == pytest.approx(exact, abs=0.03 * (1 + abs(exact)))


def test_empirical_target_is_the_posterior_mean():
    ref = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    noisy = torch.tensor([[0.4, 0.1], [0.0, 2.0]])
    sig = torch.tensor([[0.5], [2.0]])
    got = empirical_target(noisy, sig, ref)
    for i in range(2):
        w = torch.exp(-((noisy[i] - ref) ** 2).sum(1) / (2 * sig[i] ** 2))
        w = w / w.sum()
        want = ((w[:, None] * ref).sum(0) - noisy[i]) / sig[i]
        torch.testing.assert_close(got[i], want)
    one = empirical_target(noisy, sig, ref[:1])  # a single reference point: -z exactly
    torch.testing.assert_close(one, (ref[:1] - noisy) / sig)


def test_ncsn_loss_variants():
    model = NCSN(2, [2.0, 1.0, 0.5], hidden=(8,))
    u = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    for kw in ({}, {"continuous": True}, {"reference": u}, {"reference": u, "spread": 3.0}):
        v = ncsn_loss(model, u, generator=torch.Generator().manual_seed(1), **kw)
        assert v.ndim == 0 and torch.isfinite(v)
    # by hand, discrete levels and the -z target
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 3, (5,), generator=g)
    s = model.sigmas[idx][:, None]
    z = torch.randn(u.shape, generator=g)
    want = 0.5 * ((s * model(u + s * z, s[:, 0]) + z) ** 2).sum(1).mean()
    got = ncsn_loss(model, u, generator=torch.Generator().manual_seed(1))
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    with pytest.raises(ValueError, match="spread != 1 needs reference"):
        ncsn_loss(model, u, spread=2.0)


@pytest.mark.parametrize("cap", [0.3, 5.0])
def test_ncsn_loss_spread_is_capped(cap):
    """Half the batch is perturbed with max(sigma, min(spread * sigma, cap)) but scored at sigma,
    against the exact target for sigma."""
    model = NCSN(1, [2.0, 0.2, 0.05], hidden=(8,))
    u = torch.randn(64, 1, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(3)
    s = model.sigmas[torch.randint(0, 3, (64,), generator=g)][:, None]
    z = torch.randn(u.shape, generator=g)
    wide = torch.rand((64, 1), generator=g) < 0.5
    noise = torch.where(wide, torch.maximum(s, torch.clamp(3.0 * s, max=cap)), s)
    assert wide.any() and (~wide).any()
    noisy = u + noise * z
    want = 0.5 * ((s * model(noisy, s[:, 0]) - empirical_target(noisy, s, u)) ** 2).sum(1).mean()
    got = ncsn_loss(
        model,
        u,
        generator=torch.Generator().manual_seed(3),
        reference=u,
        spread=3.0,
        spread_cap=cap,
    )
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    if cap < 1:  # the cap changes the loss: the widened noise at sigma = 2 and 0.2 is cut to 0.3
        other = ncsn_loss(
            model,
            u,
            generator=torch.Generator().manual_seed(3),
            reference=u,
            spread=3.0,
            spread_cap=5.0,
        )
        assert other.item() != pytest.approx(got.item(), rel=1e-3)


def test_dsm_loss_prefers_the_noisy_score():
    # data N(0, I): the minimiser at noise sigma is -u / (1 + sigma^2); a wrong slope costs more
    u = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(0))
    sigma = 0.5

    def loss(c):
        return dsm_loss(
            lambda v: -c * v, u, sigma, generator=torch.Generator().manual_seed(1)
        ).item()

    best = loss(1 / (1 + sigma**2))
    assert best < loss(1.0) and best < loss(0.6)


def test_elbo_terms_and_iwae_bound():
    torch.manual_seed(0)
    vae = VAE(2, latent_dim=3, hidden=(16,))
    u = torch.randn(7, 2)
    with torch.no_grad():
        full = elbo(vae, u, beta=1.0, generator=torch.Generator().manual_seed(5))
        rec = elbo(vae, u, beta=0.0, generator=torch.Generator().manual_seed(5))
        mu, lv = vae.encode(u)
        kl = 0.5 * (mu**2 + lv.exp() - lv - 1).sum(1)
        torch.testing.assert_close(rec - full, kl)
        # importance weighting never hurts in expectation and tightens with k
        e = torch.stack(
            [elbo(vae, u, generator=torch.Generator().manual_seed(s)) for s in range(400)]
        ).mean(0)
        b5 = torch.stack(
            [iwae_bound(vae, u, k=5, generator=torch.Generator().manual_seed(s)) for s in range(80)]
        ).mean(0)
        b200 = iwae_bound(vae, u, k=2000, generator=torch.Generator().manual_seed(9))
    assert torch.all(b5 > e - 0.02) and torch.all(b200 > b5 - 0.02)
    assert torch.all(b200 >= e)
    with pytest.raises(ValueError, match="k must be"):
        iwae_bound(vae, u, k=0)


# ---- torch model == exported Weights -----------------------------------------------------------


def _rand_model(kind, **kw):
    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    if kind == "score":
        m = ScoreNet(
            3,
            hidden=(24, 24),
            activation="softplus",
            shift=rng.normal(size=3),
            scale=rng.uniform(0.5, 2, 3),
        )
    elif kind == "ncsn":
        m = NCSN(
            3,
            [3.0, 1.0, 0.2],
            hidden=(24, 24),
            activation="silu",
            shift=rng.normal(size=3),
            scale=np.full(3, 1.7),
            **kw,
        )
    else:
        m = VAE(
            2,
            latent_dim=3,
            hidden=(24,),
            activation="tanh",
            shift=rng.normal(size=2),
            scale=rng.uniform(0.5, 2, 2),
        )
    with torch.no_grad():  # larger weights than init, so differences would show
        for p in m.parameters():
            p.mul_(2.0)
    return m


def test_scorenet_matches_export():
    m = _rand_model("score")
    w = gensamp.export(m)
    assert w.role == "score" and w.shift is not None
    x = np.random.default_rng(0).normal(size=(50, 3)) * 3
    assert _rel(m.score(x), w.score(x)) < 1e-5
    u = m.to_model(x)
    with torch.no_grad():
        assert _rel(m(u).numpy(), w.forward(u.numpy())) < 1e-5


@pytest.mark.parametrize(
    "sigma_input,divide",
    [("log_sigma", True), ("sigma", True), ("log_sigma", False), ("sigma", False), ("none", True)],
)
def test_ncsn_matches_export(sigma_input, divide):
    m = _rand_model("ncsn", sigma_input=sigma_input, divide_by_sigma=divide)
    w = gensamp.export(m)
    assert (w.sigma_input, w.divide_by_sigma, w.role) == (sigma_input, divide, "ncsn")
    x = np.random.default_rng(1).normal(size=(50, 3)) * 3
    for s in (2.5, 0.7, 0.013):
        assert _rel(m.score(x, s), w.score(x, s)) < 1e-5
    # per-example sigmas in torch agree with the engine at each level
    u = m.to_model(x[:4])
    sig = torch.tensor([2.5, 0.7, 0.013, 1.0])
    with torch.no_grad():
        per = m(u, sig).numpy()
    for i in range(4):
        assert _rel(per[i : i + 1] / m.scale.numpy(), w.score(x[i : i + 1], float(sig[i]))) < 1e-5


def test_vae_decoder_matches_export(tmp_path):
    m = _rand_model("vae")
    w = gensamp.export(m)
    assert w.role == "vae_decoder" and w.latent_dim == 3 and w.dim == 2
    z = np.random.default_rng(2).normal(size=(40, 3)).astype(np.float32)
    with torch.no_grad():
        assert _rel(m(torch.from_numpy(z)).numpy(), w.forward(z)) < 1e-5
    w.save(tmp_path / "v.safetensors")
    w2 = gensamp.load(tmp_path / "v.safetensors")
    np.testing.assert_array_equal(w2.forward(z), w.forward(z))
    np.testing.assert_array_equal(w2.scale, w.scale)


def test_export_overrides_and_errors():
    m = _rand_model("ncsn")
    w = gensamp.export(m, sampler={"sigmas": [1.0, 0.5], "eps": 1e-3, "T": 7}, info={"note": "x"})
    assert w.sampler == {"sigmas": [1.0, 0.5], "eps": 1e-3, "T": 7}
    assert w.info["note"] == "x" and w.info["model"] == "NCSN"
    with pytest.raises(ValueError, match="sigmas must be strictly decreasing"):
        NCSN(1, [0.1, 1.0])
    with pytest.raises(ValueError, match="needs divide_by_sigma"):
        NCSN(1, [1.0, 0.1], sigma_input="none", divide_by_sigma=False)
    with pytest.raises(ValueError, match="unknown activation"):
        ScoreNet(2, activation="swish")
    with pytest.raises(ValueError, match="both shift and scale"):
        ScoreNet(2, shift=[0, 0])
    with pytest.raises(ValueError, match="not noise-conditional"):
        _rand_model("score").score(np.zeros((2, 3)), 0.5)
    with pytest.raises(ValueError, match="sigma must be finite and > 0"):
        m.score(np.zeros((2, 3)), 0.0)
    with pytest.raises(ValueError, match=r"shape \[n, 3\]"):
        m.score(np.zeros((2, 2)), 1.0)


# ---- sampler defaults ----------------------------------------------------------------------------


def test_ncsn_defaults_follow_ncsnv2():
    u = np.random.default_rng(0).normal(size=(300, 2))
    d = ncsn_defaults(u, sigma_min=0.01, T=100)
    brute = max(np.linalg.norm(a - b) for a in u for b in u)
    assert d["sigmas"][0] == pytest.approx(brute, rel=1e-9)
    r = np.asarray(d["sigmas"])
    np.testing.assert_allclose(r[:-1] / r[1:], d["gamma"], rtol=1e-9)
    assert r[-1] == pytest.approx(0.01) and d["gamma"] <= 2.0  # d <= 4: the cap applies
    beta = d["eps"] / (2 * 0.01**2)  # back to NCSNv2's step convention
    assert abs(_prop3_variance(beta, d["gamma"], 100) - 1) <= 0.1 + 1e-9
    assert abs(_prop3_variance(beta * 1.05, d["gamma"], 100) - 1) > 0.1  # the largest such step
    # technique 2 in high dimension: the ratio is at most the root of the NCSNv2 equation
    # (consecutive levels overlap at least as required), and one level fewer would break it
    hd = ncsn_defaults(np.random.default_rng(1).normal(size=(50, 100)), T=5)
    c = math.sqrt(200)
    phi = lambda t: 0.5 * (1 + math.erf(t / math.sqrt(2)))  # noqa: E731
    overlap = lambda g: phi(c * (g - 1) + 3 * g) - phi(c * (g - 1) - 3 * g)  # noqa: E731
    L = len(hd["sigmas"])
    assert hd["gamma"] < 2.0 and overlap(hd["gamma"]) >= 0.5
    assert overlap((hd["sigmas"][0] / hd["sigmas"][-1]) ** (1 / (L - 2))) < 0.5
    with pytest.raises(ValueError, match="sigma_max"):
        ncsn_defaults(u, sigma_max=0.001)


def test_ncsn_default_sampler_settings_recover_exact_mixture_weights():
    """The stored (sigmas, eps, T) rule, checked with the exact score: left weight 0.25."""
    x, mix = D.seed_mixture_1d(5000, seed=0, return_mixture=True)
    sh, sc = x.mean(), x.std()
    d = ncsn_defaults((x - sh) / sc)
    mu = GaussianMixture(mix.weights, (mix.means - sh) / sc, stds=np.array([1.0, 2.0]) / sc)
    y = gensamp.annealed_langevin(mu, d["sigmas"], d["eps"], d["T"], n=8000, seed=1) * sc + sh
    assert abs(np.mean(y < -2.5) - 0.25) < 0.015
    assert M.wasserstein_1d(y, mix.sample(50_000, seed=2)) < 0.12


# ---- training ------------------------------------------------------------------------------------


def test_train_score_exact_learns_the_score(two_bumps):
    x, mix = two_bumps
    m = train_score(x, "exact", hidden=(32, 32), epochs=80, lr=3e-3, seed=0, **FAST)
    h = m.history
    assert h.train_loss[-1] < h.train_loss[0] - 0.5 and len(h.val_loss) == h.epochs
    s, t = m.score(x)[:, 0], mix.score(x)[:, 0]
    assert np.corrcoef(s, t)[0, 1] > 0.95
    assert M.score_error(m, mix, x, relative=True) < 0.1
    w = gensamp.export(m)
    assert w.sampler["eps"] > 0 and w.sampler["T"] >= 100
    assert w.info["training"]["method"] == "score/exact"


def test_confinement_penalty_only_sees_outward_scores():
    g = torch.Generator().manual_seed(0)
    assert float(confinement_penalty(lambda v: -v, 256, 2.0, dim=3, generator=g)) == 0.0
    # s = c v has radial pull c per unit distance: penalised by (c + 0.1)^2 when c > -0.1
    for c in (1.0, -0.05):
        p = float(confinement_penalty(lambda v, c=c: c * v, 512, 2.0, dim=3, generator=g))
        assert p == pytest.approx((c + 0.1) ** 2, rel=1e-4)


def test_confinement_keeps_the_learned_score_pointing_inward():
    """Score matching only sees the data: without the penalty, on this seed the learned score
    points outward beyond the right mode and plain-Langevin chains run off (to ~1e21)."""
    x = D.seed_mixture_1d(5000, seed=1)
    far = np.concatenate([np.linspace(-60, -18, 8), np.linspace(17, 60, 8)])[:, None]
    for confine in (0.0, 1.0):
        m = train_score(x, "exact", seed=1, confine=confine, **FAST)
        inward = bool(np.all(m.score(far)[:, 0] * np.sign(far[:, 0]) < 0))
        assert inward == (confine > 0), confine
    assert m.history.settings["confine"] == 1.0
    y = gensamp.langevin(gensamp.export(m), n=2000, seed=0)  # its stored eps and T
    assert np.all(np.abs(y) < 40)
    with pytest.raises(ValueError, match="confine"):
        train_score(x, "exact", confine=-1.0, **FAST)


def test_langevin_uses_the_stored_defaults(two_bumps):
    x, _ = two_bumps
    w = gensamp.export(train_score(x, "exact", hidden=(16,), epochs=2, seed=0, **FAST))
    a = gensamp.langevin(w, n=50, seed=3)
    b = gensamp.langevin(w, w.sampler["eps"], w.sampler["T"], n=50, seed=3)
    np.testing.assert_array_equal(a, b)
    bare = gensamp.Weights(w.layers, w.activations, shift=w.shift, scale=w.scale)
    with pytest.raises(ValueError, match="eps, T not given"):
        gensamp.langevin(bare, n=5)


def test_train_score_sliced_2d_gaussian():
    cov = np.array([[1.0, 0.8], [0.8, 1.5]])
    mix = GaussianMixture([1], [[1.0, -2.0]], covs=[cov])
    x = mix.sample(3000, seed=1)
    m = train_score(x, "sliced", n_projections=2, hidden=(32, 32), epochs=40, seed=1, **FAST)
    assert M.score_error(m, mix, x[:1000], relative=True) < 0.1


def test_train_score_denoising_learns_the_noisy_score():
    mix = GaussianMixture([1], [[3.0]], stds=[2.0])
    x = mix.sample(3000, seed=2)
    m = train_score(x, "denoising", sigma=0.5, hidden=(32,), epochs=40, seed=2, **FAST)
    scale = float(m.scale[0])  # sigma is in model units: data-space noise is sigma * scale
    assert M.score_error(m, lambda p: mix.score(p, 0.5 * scale), x[:1000], relative=True) < 0.05
    assert m.info["dsm_sigma"] == 0.5


def test_plain_langevin_defaults_sample_a_unimodal_fit(two_bumps):
    mix = GaussianMixture([1], [[-2.0]], stds=[0.7])
    x = mix.sample(2000, seed=3)
    m = train_score(x, "exact", hidden=(32,), epochs=30, seed=3, **FAST)
    w = gensamp.export(m)
    d = langevin_defaults(m, m.to_model(x).numpy())  # all points, training used 90%
    assert d["eps"] == pytest.approx(w.sampler["eps"], rel=0.05)
    assert d["T"] == pytest.approx(w.sampler["T"], rel=0.05)
    y = gensamp.langevin(w, w.sampler["eps"], w.sampler["T"], n=3000, seed=0)
    assert abs(y.mean() + 2.0) < 0.1 and abs(y.std() - 0.7) < 0.1


def test_train_ncsn_recovers_2d_mode_weights():
    x, mix = D.ncsn_mixture_2d(2000, seed=0, return_mixture=True)
    m = train_ncsn(x, hidden=(64, 64), epochs=150, T=100, seed=0, **FAST)
    w = gensamp.export(m)
    assert np.allclose(w.scale, w.scale[0])  # isotropic normalisation
    np.testing.assert_allclose(w.sampler["sigmas"], m.sigmas.numpy(), rtol=1e-6)
    y = gensamp.annealed_langevin(w, n=2000, seed=0)  # stored defaults
    assert abs(M.mode_weights(y, mix)[0] - 0.2) < 0.04
    assert M.far_from_modes(y, mix) < 0.02
    assert m.history.epochs == 150 and m.history.kept_epoch == 149


def test_train_vae_is_bimodal_with_a_learned_variance():
    x, mix = D.seed_mixture_1d(2000, seed=1, return_mixture=True)
    m = train_vae(x, latent_dim=2, epochs=100, seed=0, **FAST)
    w = gensamp.export(m)
    y = gensamp.vae_sample(w, 4000, seed=0)[:, 0]
    left = y < -2.5
    assert 0.15 < left.mean() < 0.35
    assert abs(np.median(y[left]) + 9) < 1.0 and abs(np.median(y[~left]) - 4) < 1.0
    with torch.no_grad():  # the decoder variance is learned, not a constant
        lv = m.decode(torch.randn(500, 2, generator=torch.Generator().manual_seed(0)))[1]
    assert float(lv.std()) > 0.1
    ll = m.log_likelihood(x[:300], k=200, seed=0)
    el = m.elbo(x[:300], seed=0, samples=50)  # one draw per point is too noisy to compare
    assert ll.mean() > el.mean()
    assert ll.mean() < mix.log_prob(x[:300]).mean() + 0.1  # a bound, up to Monte Carlo noise


def test_training_is_reproducible_and_leaves_global_state(two_bumps):
    x, _ = two_bumps
    torch.manual_seed(123)
    before = torch.get_rng_state()
    np_before = np.random.get_state()[1].copy()
    threads = torch.get_num_threads()
    a = train_score(x, "sliced", hidden=(16,), epochs=3, seed=7, **FAST)
    b = train_score(x, "sliced", hidden=(16,), epochs=3, seed=7, **FAST)
    c = train_score(x, "sliced", hidden=(16,), epochs=3, seed=8, **FAST)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    assert a.history.train_loss == b.history.train_loss
    assert not torch.equal(a.net[0].weight, c.net[0].weight)
    assert torch.equal(torch.get_rng_state(), before)
    assert np.array_equal(np.random.get_state()[1], np_before)
    assert torch.get_num_threads() == threads


def test_early_stopping_keeps_the_best_epoch():
    x = D.seed_mixture_1d(80, seed=4)  # tiny: a large VAE overfits quickly
    m = train_vae(x, hidden=(128, 128), epochs=400, lr=1e-2, patience=5, seed=0, **FAST)
    h = m.history
    assert h.stopped_early and h.epochs < 400
    assert h.kept_epoch == h.best_epoch == int(np.argmin(h.val_loss))


def test_progress_bar(capsys, two_bumps):
    x, _ = two_bumps
    train_score(x[:200], "denoising", hidden=(8,), epochs=2, threads=1, progress=False)
    assert capsys.readouterr().err == ""
    train_score(x[:200], "denoising", hidden=(8,), epochs=2, threads=1, progress=True)
    assert "score/denoising" in capsys.readouterr().err


def test_data_inputs(tmp_path, two_bumps):
    x, _ = two_bumps
    np.save(tmp_path / "x.npy", x[:300])
    a = train_score(tmp_path / "x.npy", "denoising", hidden=(8,), epochs=2, **FAST)
    b = train_score(x[:300, 0], "denoising", hidden=(8,), epochs=2, **FAST)  # 1-D array
    c = train_score(torch.tensor(x[:300]), "denoising", hidden=(8,), epochs=2, **FAST)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]) and torch.equal(v, c.state_dict()[k])


def test_training_input_errors(two_bumps):
    x, _ = two_bumps
    with pytest.raises(ValueError, match="method must be"):
        train_score(x, "hutchinson")
    with pytest.raises(ValueError, match="sigma applies to method='denoising'"):
        train_score(x, "exact", sigma=0.1)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        train_vae(x, epochs=0)
    with pytest.raises(TypeError, match="lr must be a real number"):
        train_vae(x, lr="fast")
    with pytest.raises(ValueError, match="lr must be finite and > 0"):
        train_vae(x, lr=-1.0)
    with pytest.raises(ValueError, match="val_fraction"):
        train_vae(x, val_fraction=1.0)
    with pytest.raises(ValueError, match="too few"):
        train_vae(x[:3], val_fraction=0.1)
    with pytest.raises(ValueError, match="NaN or Inf"):
        train_ncsn(np.array([[0.0], [np.nan], [1.0]]))
    with pytest.raises(ValueError, match="every data column is constant"):
        train_ncsn(np.ones((len(x), 2)))
    with pytest.raises(ValueError, match="normalize"):
        train_ncsn(x, normalize="minmax")
    with pytest.raises(ValueError, match="activation"):
        train_score(x, activation="swish")
    with pytest.raises(TypeError, match="progress"):
        train_score(x, progress="yes")
    with pytest.raises(ValueError, match="spread_cap"):
        train_ncsn(x, spread_cap=0.0)
    with pytest.raises(ValueError, match="ema"):
        train_ncsn(x, ema=1.5)
    with pytest.raises(ValueError, match="target"):
        train_ncsn(x, target="clean")
    with pytest.raises(ValueError, match="strictly decreasing"):
        train_ncsn(x, sigmas=[0.1, 1.0])
    with pytest.raises(ValueError, match="threads"):
        train_vae(x, threads=0)
    with pytest.raises(ValueError, match="seed"):
        train_vae(x, seed=-1)
    with pytest.raises(ValueError, match="device"):
        train_vae(x, device="tpu")
    with pytest.raises(TypeError, match="real numbers"):
        train_vae(np.array([["a"], ["b"]]))
    with pytest.raises(ValueError, match="method='sliced'"):
        train_score(np.random.default_rng(0).normal(size=(100, 65)), "exact")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            train_vae(x, device="cuda")


def test_training_api_is_top_level_and_lazy():
    import subprocess
    import sys

    code = (
        "import sys, gensamp; assert 'torch' not in sys.modules; "
        "f = gensamp.train_ncsn; assert 'torch' in sys.modules; print(f.__module__)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "gensamp.learn.train"
    assert gensamp.train_vae is train_vae and gensamp.train_score is train_score
    with pytest.raises(AttributeError, match="no attribute"):
        gensamp.not_a_function  # noqa: B018


@pytest.mark.parametrize("kind", ["ncsn", "vae", "score"])
def test_ctrl_c_keeps_the_model_trained_so_far(kind, monkeypatch):
    """Ctrl-C in the 3rd epoch: TrainingInterrupted carries a finished, exportable model whose
    history says it was interrupted after 2 complete epochs."""
    from gensamp.learn import TrainingInterrupted
    from gensamp.learn import fit as F

    x = D.seed_mixture_1d(300, seed=0)
    real_held_out = F._held_out
    calls = {"n": 0}

    def held_out(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_held_out(*args, **kwargs)

    monkeypatch.setattr(F, "_held_out", held_out)
    train = {"ncsn": train_ncsn, "vae": train_vae, "score": train_score}[kind]
    with pytest.raises(TrainingInterrupted) as info:
        train(x, epochs=50, **FAST)
    assert isinstance(info.value, KeyboardInterrupt)
    model = info.value.model
    h = model.history
    assert h.interrupted and not h.stopped_early
    assert h.epochs == 3 and len(h.val_loss) == 2  # the 3rd epoch trained, its check was cut
    w = gensamp.export(model)
    assert w.info["training"]["interrupted"] is True
    assert np.all(np.isfinite(w.layers[0][0]))


def test_constant_columns_pass_through_exactly():
    # Real images have constant pixels (a digit's corners): not a refusal. They map to u = 0;
    # under "standard" normalisation their scale is 1, so samples keep the constant.
    x = np.c_[D.two_moons(400, seed=0), np.full(400, 3.0)]
    m = train_ncsn(x, epochs=2, seed=0, progress=False)
    w = gensamp.export(m)
    assert np.all(np.isfinite(w.scale)) and np.all(w.scale > 0)
    sm = train_score(x, "denoising", epochs=2, seed=0, progress=False, normalize="standard")
    ws = gensamp.export(sm)
    assert ws.scale[2] == 1.0 and ws.shift[2] == 3.0
    assert np.all(np.isfinite(gensamp.sample(w, n=200, seed=0)))


@pytest.mark.parametrize(
    "kw", [{"residual": True}, {"embedding": "fourier"}, {"precondition": "edm"}]
)
def test_ncsn_options_export_as_graphs_that_match_torch(kw):
    x = D.seed_mixture_1d(500, seed=0)
    m = train_ncsn(x, epochs=2, seed=0, progress=False, **kw)
    w = gensamp.export(m)
    assert w.graph is not None and w.conditioned
    xs = np.linspace(-12, 10, 60)[:, None]
    for s in (0.05, 0.5, 5.0):
        want = m.score(xs, s)
        assert np.max(np.abs(w.score(xs, s) - want) / (1 + np.abs(want))) < 1e-5
    with pytest.raises(TypeError, match="graph says how sigma enters"):
        m.to_weights(sigma_input="sigma")
    with pytest.raises(ValueError, match="embedding must be"):
        train_ncsn(x, epochs=1, embedding="sinusoid")
