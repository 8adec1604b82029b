"""gensamp.sample and the few-step samplers of gensamp.methods: parity with the numpy
reference, bit-identity for any thread count / tiling / split, closed forms, the budget, the
dispatch by model and the bad inputs."""

from __future__ import annotations

import math

import gensamp
import numpy as np
import pytest
from gensamp import _core, methods, reference, samplers
from gensamp.methods import METHODS

RNG = np.random.default_rng(7)


def _ncsn(d=2, stored=None):
    """A small noise-conditional net with normalisation, built with numpy (no torch)."""
    layers = [
        (RNG.normal(size=(16, d + 1)) * 0.4, RNG.normal(size=16) * 0.1),
        (RNG.normal(size=(16, 16)) * 0.3, np.zeros(16)),
        (RNG.normal(size=(d, 16)) * 0.2, np.zeros(d)),
    ]
    sampler = {"sigmas": [4.0, 1.0, 0.3, 0.05], "eps": 1e-4, "T": 5}
    sampler.update(stored or {})
    return gensamp.Weights(
        layers,
        ["silu", "tanh"],
        sigma_input="log_sigma",
        divide_by_sigma=True,
        shift=np.arange(d, dtype=float),
        scale=np.full(d, 2.0),
        sampler=sampler,
    )


MIX2 = gensamp.GaussianMixture([0.3, 0.7], [[-2.0, 1.0], [3.0, 0.0]], stds=[0.5, 1.0])


def _run_both(model, method, steps, n=300, seed=3, offset=0):
    smax, smin = 6.0, 0.05
    sched, denoise, _ = methods.schedule(method, steps, smax, smin)
    x, _, evals = samplers._execute(
        model, sched, smax, n, None, seed, 2, 0, denoise, None, offset, False
    )
    ref = reference.sample_method(
        model, method, steps, smax, smin, n, seed=seed, init_std=smax, chain_offset=offset
    )
    return x, ref, evals


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model", ["mixture", "net"])
def test_engine_matches_the_reference(method, model):
    m = MIX2 if model == "mixture" else _ncsn()
    x, ref, _ = _run_both(m, method, 11, offset=2**40)
    assert np.all(np.isfinite(x))
    assert np.max(np.abs(x - ref) / (1 + np.abs(ref))) <= 1e-4


@pytest.mark.parametrize("method", METHODS)
def test_bit_identical_for_threads_tiles_and_shards(method):
    net = _ncsn(stored={"method": method, "steps": 9})
    n = 203
    base = gensamp.sample(net, n, seed=11, threads=1)
    for threads, tile in ((2, 64), (7, 16), (3, 100)):
        assert np.array_equal(gensamp.sample(net, n, seed=11, threads=threads, tile=tile), base)
    # Rows [a, b) from chain_offset=a are rows a..b-1 of the whole run: no chain's update
    # depends on another's (the PC corrector's step uses each chain's own score norm).
    part = gensamp.sample(net, 70, seed=11, chain_offset=100, threads=2)
    assert np.array_equal(part, base[100:170])


def test_score_evals_are_counted_by_the_engine():
    # ald: 6 levels x 1 step + the denoising step (whole steps per level only); pc: whole
    # (corrector, predictor) pairs; heun and edm: 2N - 1 (no second evaluation at the end).
    want = {"ald": 7, "pc": 10, "cas": 11, "euler": 11, "heun": 11, "edm": 11}
    for method in METHODS:
        x, info = gensamp.sample(MIX2, 50, method=method, steps=11, return_info=True)
        sched, denoise, _ = methods.schedule(method, 11, 6.0, 0.05)
        assert info["score_evals"] == want[method] == sched.score_evals + int(denoise)
        assert info["method"] == method and info["steps"] == 11 and info["seconds"] > 0
        assert x.shape == (50, 2)


def test_ode_transports_a_gaussian_exactly():
    # For N(m, v) the probability-flow ODE is linear: u(sigma) - m scales with
    # sqrt(v + sigma^2), so each chain's end point is known in closed form.
    m, v, smax, smin = 1.5, 0.7**2, 20.0, 0.01
    g = gensamp.GaussianMixture([1.0], [[m]], stds=[math.sqrt(v)])
    x0 = np.linspace(-40, 40, 101)[:, None]
    sched, _, _ = methods.schedule("heun", 199, smax, smin)
    x = samplers._execute(g, sched, smax, None, x0, 0, 2, 0, False, None, 0, False)[0]
    at_min = m + (x0 - m) * math.sqrt((v + smin**2) / (v + smax**2))
    exact = at_min + smin**2 * (m - at_min) / (v + smin**2)  # the last step: Tweedie to 0
    assert np.max(np.abs(x - exact)) < 2e-3


def test_sampled_gaussian_has_the_right_moments():
    # N(0, s^2 + sigma_max^2) pushed through each sampler lands on N(m, s^2). PC converges
    # slowest: its predictor's excess variance per level is ~(sigma_i^2 - sigma_i+1^2)^2 / s^2.
    g = gensamp.GaussianMixture([1.0], [[2.0]], stds=[1.5])
    for method, steps in (("heun", 39), ("edm", 99), ("euler", 100), ("cas", 100), ("pc", 3000)):
        x = gensamp.sample(g, 40_000, method=method, steps=steps, seed=5)[:, 0]
        assert abs(x.mean() - 2.0) < 0.03, method
        assert abs(x.std() - 1.5) < 0.06, (method, x.std())


def test_cas_without_refresh_is_the_euler_ode():
    sig = np.geomspace(8.0, 0.05, 12).tolist()
    a = _core.cas_schedule(sig, 0.0)
    b = _core.ode_schedule(sig, False)
    opts = _core.RunOptions(seed=1, threads=2)
    xa = _core.run(MIX2._engine(), a, 64, None, 8.0, opts)[0]
    xb = _core.run(MIX2._engine(), b, 64, None, 8.0, opts)[0]
    assert np.array_equal(xa, xb)


def test_dispatch_by_model(tmp_path):
    # An NCSN: its stored method and budget.
    net = _ncsn(stored={"method": "euler", "steps": 7})
    path = tmp_path / "net.safetensors"
    net.save(path)
    _, info = gensamp.sample(path, 20, return_info=True)
    assert (info["method"], info["score_evals"]) == ("euler", 7)
    # ... an explicit method takes the package default budget, not the other method's.
    _, info = gensamp.sample(net, 20, method="heun", return_info=True)
    assert info["steps"] == methods.DEFAULT_STEPS
    # An NCSN saved before methods existed, and a mixture: the package default.
    _, info = gensamp.sample(_ncsn(), 20, return_info=True)
    assert (info["method"], info["steps"]) == (methods.DEFAULT_METHOD, methods.DEFAULT_STEPS)
    _, info = gensamp.sample(MIX2, 20, return_info=True)
    assert info["method"] == methods.DEFAULT_METHOD
    # A plain score net: Langevin with its stored settings, steps overriding T.
    score = gensamp.Weights(
        [(RNG.normal(size=(8, 2)) * 0.1, np.zeros(8)), (-np.eye(2, 8), np.zeros(2))],
        ["tanh"],
        sampler={"eps": 0.01, "T": 30},
    )
    x, info = gensamp.sample(score, 10, steps=12, return_info=True)
    assert (info["method"], info["score_evals"]) == ("langevin", 12)
    assert np.array_equal(x, gensamp.langevin(score, 0.01, 12, n=10))
    # A VAE decoder: ancestral sampling, the same draws as vae_sample.
    dec = gensamp.Weights(
        [(RNG.normal(size=(8, 2)), np.zeros(8)), (RNG.normal(size=(4, 8)), np.zeros(4))],
        ["tanh"],
        role="vae_decoder",
    )
    x, info = gensamp.sample(dec, 10, seed=4, return_info=True)
    assert info["method"] == "ancestral" and info["score_evals"] == 0
    assert np.array_equal(x, gensamp.vae_sample(dec, 10, seed=4))


def test_mixture_default_finds_the_mode_weights():
    mix = gensamp.datasets.true_mixture("seed_mixture_1d")
    x = gensamp.sample(mix, 40_000, seed=2)[:, 0]
    assert abs(np.mean(x < -2.5) - 0.25) < 0.01


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"method": "ddim"}, ValueError, "method must be one of"),
        ({"method": 3}, ValueError, "method must be one of"),
        ({"steps": 0}, ValueError, "steps"),
        ({"steps": 2.5}, TypeError, "steps"),
        ({"method": "ald", "steps": 2}, ValueError, "steps"),
        ({"method": "pc", "steps": 1}, ValueError, "steps"),
        ({"progress": "yes"}, TypeError, "progress"),
        ({"return_info": 1}, TypeError, "return_info"),
        ({"method": "langevin"}, ValueError, "method must be one of"),
        ({"method": "heun", "steps": 10**9}, ValueError, r"steps must be in \[1, 1000000\]"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        gensamp.sample(MIX2, 10, **kwargs)


def test_bad_arguments_for_other_roles():
    dec = gensamp.Weights(
        [(np.ones((4, 2)), np.zeros(4)), (np.ones((4, 4)), np.zeros(4))],
        ["tanh"],
        role="vae_decoder",
    )
    with pytest.raises(ValueError, match="ancestral"):
        gensamp.sample(dec, 10, method="heun")
    with pytest.raises(ValueError, match="steps"):
        gensamp.sample(dec, 10, steps=5)
    net = _ncsn()

    def stored(sampler, divide=True):
        return gensamp.Weights(
            net.layers,
            net.activations,
            sigma_input="log_sigma",
            divide_by_sigma=divide,
            sampler=sampler,
        )

    with pytest.raises(ValueError, match="method must be one of"):
        gensamp.sample(stored({"sigmas": [2.0, 0.1], "method": "bogus"}), 5)
    with pytest.raises(ValueError, match="stored method"):
        stored({"sigmas": [2.0, 0.1], "method": "no such"}, divide=False)
    with pytest.raises(ValueError, match="single noise level"):
        gensamp.sample(stored({"sigmas": [0.5]}), 5)
    with pytest.raises(ValueError, match="stores no noise levels"):
        gensamp.sample(
            gensamp.Weights(
                net.layers, net.activations, sigma_input="log_sigma", divide_by_sigma=True
            ),
            5,
        )


def test_schedule_builders_refuse_bad_grids():
    for bad in ([], [1.0, 2.0], [1.0, -1.0], [float("nan")]):
        with pytest.raises(ValueError, match="sigmas"):
            _core.ode_schedule(bad, True)
    with pytest.raises(ValueError, match="refresh"):
        _core.cas_schedule([2.0, 1.0], 1.5)
    with pytest.raises(ValueError, match="snr"):
        _core.pc_schedule([2.0, 1.0], 0.0, 1)


def test_progress_bar_and_its_errors(capsys):
    gensamp.sample(MIX2, 5000, steps=201, progress=True)
    err = capsys.readouterr().err
    assert "chain" in err and "5" in err  # tqdm's bar: units and the total
    gensamp.sample(MIX2, 5000, steps=201, progress=False)
    assert capsys.readouterr().err == ""

    # An exception raised by the progress callback stops the run and reaches the caller.
    class Stop(Exception):
        pass

    def boom(fraction):
        raise Stop(fraction)

    sched = _core.plain_schedule(0.0, 0.01, 200_000)
    with pytest.raises(Stop):
        _core.run(MIX2._engine(), sched, 256, None, 1.0, _core.RunOptions(threads=2), boom)


def test_progress_reports_fractions_that_grow_to_one():
    seen = []
    sched = _core.plain_schedule(0.0, 0.01, 20_000)
    _core.run(MIX2._engine(), sched, 512, None, 1.0, _core.RunOptions(threads=2), seen.append)
    assert seen and all(0 <= f <= 1 for f in seen)
    assert seen == sorted(seen)


def test_cli_method_and_steps(tmp_path, capsys):
    from gensamp import cli

    path = tmp_path / "net.safetensors"
    _ncsn(stored={"method": "cas", "steps": 12}).save(path)
    out = tmp_path / "x.npy"
    assert cli.main(["sample", str(path), "--n", "64", "--out", str(out), "--quiet"]) == 0
    assert "cas sampler (12 score evaluations each)" in capsys.readouterr().out
    assert np.array_equal(np.load(out), gensamp.sample(path, 64))
    out2 = tmp_path / "y.npy"
    args = ["sample", str(path), "--n", "64", "--method", "heun", "--steps", "9", "--quiet"]
    assert cli.main([*args, "--out", str(out2)]) == 0
    assert "heun sampler (9 score evaluations each)" in capsys.readouterr().out
    assert np.array_equal(np.load(out2), gensamp.sample(path, 64, method="heun", steps=9))
    # a budget and a Langevin schedule are two different requests
    for extra in (["--sampler", "annealed"], ["--eps", "0.1"]):
        rc = cli.main([*args, *extra, "--out", str(tmp_path / "z.npy")])
        err = capsys.readouterr().err
        assert rc == 2 and "--method" in err and "Traceback" not in err
    assert not (tmp_path / "z.npy").exists()


def test_pc_corrector_stationary_variance_on_a_gaussian():
    # One level sigma on N(0, v): where the corrector's cap binds (|u| < S^2/sigma, here 10
    # standard deviations) its step is the constant e = 2 snr^2 sigma^2, and unadjusted
    # Langevin with step e on N(0, S^2), S^2 = v + sigma^2, has stationary variance
    # S^2 / (1 - e / (2 S^2)). The predictor's last step (to sigma = 0) then scales u by
    # 1 - sigma^2 / S^2.
    v, sigma, snr = 1.0, 0.1, 3.0
    S2 = v + sigma**2
    e = 2 * snr**2 * sigma**2
    want = S2 / (1 - e / (2 * S2)) * (1 - sigma**2 / S2) ** 2
    g = gensamp.GaussianMixture([1.0], [[0.0]], stds=[math.sqrt(v)])
    sched = _core.pc_schedule([sigma], snr, 100)
    x = _core.run(g._engine(), sched, 100_000, None, 1.0, _core.RunOptions(seed=3, threads=2))[0]
    assert want > S2 * 1.07  # the discretisation's excess, which the test resolves
    assert abs(x.var() / want - 1) < 0.015, (x.var(), want)
