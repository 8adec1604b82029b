"""Weights: export from torch, forward parity with torch, the file format and its validation."""

import json
import struct
from pathlib import Path

import gensamp
import numpy as np
import pytest
import torch
from conftest import ACTS, random_mlp, rel_close
from gensamp import reference as ref

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("sigma_input", ["none", "sigma", "log_sigma"])
@pytest.mark.parametrize("d,width", [(1, 16), (2, 64), (8, 128), (64, 256)])
def test_forward_matches_torch(act, sigma_input, d, width):
    net = random_mlp(d, width, act, sigma_input, seed=d + width)
    w = gensamp.export(net, sigma_input=sigma_input)
    g = torch.Generator().manual_seed(1)
    inp = 3 * torch.randn(300, w.input_dim, generator=g)
    if sigma_input != "none":
        inp[:, -1] = inp[:, -1].abs() + 0.01  # sigma (or log sigma) column
    with torch.no_grad():
        expected = net(inp).double().numpy()
    ok, err = rel_close(w.forward(inp.numpy()), expected, 1e-5)
    assert ok, f"C++ forward vs torch: {err:.2e}"
    ok, err = rel_close(ref.forward(w, inp.numpy()), expected, 1e-5)
    assert ok, f"reference forward vs torch: {err:.2e}"


@pytest.mark.parametrize("mode", ["sigma", "log_sigma"])
@pytest.mark.parametrize("divide", [False, True])
def test_score_conditioning_matches_torch(mode, divide):
    net = random_mlp(2, 32, "silu", mode, seed=3)
    w = gensamp.export(net, sigma_input=mode, divide_by_sigma=divide)
    x = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    sigma = 0.37
    feat = sigma if mode == "sigma" else np.log(sigma)
    with torch.no_grad():
        out = net(torch.cat([torch.from_numpy(x), torch.full((50, 1), feat)], 1)).double().numpy()
    expected = out / sigma if divide else out
    ok, err = rel_close(w.score(x, sigma), expected, 1e-5)
    assert ok, err


def test_normalisation_maps_scores_to_data_space():
    net = random_mlp(2, 16, "tanh", seed=4)
    shift, scale = np.array([3.0, -1.0]), np.array([2.0, 0.5])
    w = gensamp.export(net, shift=shift, scale=scale)
    x = np.random.default_rng(1).normal(size=(20, 2)) * 3
    u = (x - shift) / scale
    with torch.no_grad():
        su = net(torch.tensor(u, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(w.score(x), su / scale, rtol=1e-5, atol=1e-6)


def test_export_structure_rules():
    L, R = torch.nn.Linear, torch.nn.ReLU
    # Nested Sequentials flatten; Identity/Dropout are no-ops; Linear-Linear gets "identity".
    net = torch.nn.Sequential(
        L(2, 8), torch.nn.Sequential(R(), torch.nn.Dropout(0.1)), L(8, 8), L(8, 2)
    )
    w = gensamp.export(net.eval())
    assert w.activations == ("relu", "identity")
    with pytest.raises(TypeError, match="BatchNorm1d"):
        gensamp.export(torch.nn.Sequential(L(2, 8), torch.nn.BatchNorm1d(8), L(8, 2)))
    with pytest.raises(TypeError, match="after the last Linear"):
        gensamp.export(torch.nn.Sequential(L(2, 8), R(), L(8, 2), R()))
    with pytest.raises(TypeError, match="two activations"):
        gensamp.export(torch.nn.Sequential(L(2, 8), R(), torch.nn.Tanh(), L(8, 2)))
    with pytest.raises(TypeError, match="negative_slope"):
        gensamp.export(torch.nn.Sequential(L(2, 8), torch.nn.LeakyReLU(0.2), L(8, 2)))
    with pytest.raises(TypeError, match="module GRU has no engine counterpart"):
        gensamp.export(torch.nn.GRU(2, 2))
    with pytest.raises(ValueError, match="d=2 inputs to d outputs"):
        gensamp.export(torch.nn.Sequential(L(2, 8), R(), L(8, 3)))


def test_weights_validation():
    W, b = np.ones((2, 2), np.float32), np.zeros(2, np.float32)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        gensamp.Weights([(W, b), (W, b)], ["swish"])
    with pytest.raises(ValueError, match="NaN or Inf"):
        gensamp.Weights([(W * np.nan, b)], [])
    with pytest.raises(ValueError, match=r"layers\[1\] takes 3 inputs"):
        gensamp.Weights([(W, b), (np.ones((2, 3)), b)], ["relu"])
    with pytest.raises(ValueError, match="one activation per hidden layer"):
        gensamp.Weights([(W, b), (W, b)], [])
    with pytest.raises(ValueError, match="b has 3 entries"):
        gensamp.Weights([(W, np.zeros(3))], [])
    with pytest.raises(ValueError, match="strictly decreasing"):
        gensamp.Weights([(W, b)], [], sampler={"sigmas": [1, 2]})
    w = gensamp.Weights([(W, b)], [])
    with pytest.raises(ValueError, match="read-only"):
        w.layers[0][0][0, 0] = 5.0


def test_save_load_roundtrip(tmp_path):
    net = random_mlp(3, 24, "elu", "log_sigma", seed=9)
    w = gensamp.export(
        net,
        sigma_input="log_sigma",
        divide_by_sigma=True,
        shift=[1, 2, 3],
        scale=[1, 2, 4],
        sampler={"sigmas": [5.0, 1.0, 0.2], "eps": 0.004, "T": 50},
        info={"note": "test"},
    )
    p = tmp_path / "net.safetensors"
    w.save(p)
    v = gensamp.load(p)
    assert (v.activations, v.sigma_input, v.divide_by_sigma, v.role) == (
        w.activations,
        w.sigma_input,
        w.divide_by_sigma,
        "ncsn",
    )
    assert v.sampler == w.sampler and v.info == {"note": "test"}
    for (W1, b1), (W2, b2) in zip(w.layers, v.layers):
        assert np.array_equal(W1, W2) and np.array_equal(b1, b2)
    assert np.array_equal(v.shift, w.shift) and np.array_equal(v.scale, w.scale)
    # A path works wherever weights do, and stored defaults drive the sampler.
    a = gensamp.annealed_langevin(p, n=10, seed=3)
    b = gensamp.annealed_langevin(w, n=10, seed=3)
    assert np.array_equal(a, b)


def test_committed_fixture_still_loads():
    """A v1 file written by gensamp 0.1.0: old files must keep loading to the same numbers."""
    w = gensamp.load(FIXTURES / "ncsn_v1.safetensors")
    assert w.role == "ncsn" and w.sigma_input == "log_sigma" and w.dim == 2
    expected = json.loads((FIXTURES / "ncsn_v1_expected.json").read_text())
    out = w.score(np.array(expected["x"]), expected["sigma"])
    np.testing.assert_allclose(out, expected["score"], rtol=1e-6, atol=1e-7)


def _header(path):
    raw = Path(path).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _write(path, header, body):
    h = json.dumps(header).encode()
    Path(path).write_bytes(struct.pack("<Q", len(h)) + h + body)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda h: h["__metadata__"].update(format="other"), "format"),
        (
            lambda h: h["__metadata__"].update(format_version="3"),
            "format_version .3. is not supported",
        ),
        (lambda h: h["__metadata__"].update(format_version="2"), "metadata lacks .*dim.*graph"),
        (lambda h: h["__metadata__"].update(activations='["relu", "mish"]'), "unknown activation"),
        (lambda h: h["__metadata__"].update(n_layers="4"), "missing or unexpected"),
        (lambda h: h["__metadata__"].pop("role"), "lacks"),
        (lambda h: h["__metadata__"].update(sampler="{not json"), "JSON"),
    ],
)
def test_loader_refuses_bad_files(tmp_path, mutate, match):
    w = gensamp.export(random_mlp(2, 8, "relu", seed=1))
    p = tmp_path / "w.safetensors"
    w.save(p)
    header, body = _header(p)
    mutate(header)
    _write(p, header, body)
    with pytest.raises(ValueError, match=match):
        gensamp.load(p)


def test_loader_refuses_pickles_and_garbage(tmp_path):
    p = tmp_path / "model.pt"
    torch.save(random_mlp(2, 8, "relu"), p)
    with pytest.raises(ValueError, match="pickle"):
        gensamp.load(p)
    q = tmp_path / "trunc.safetensors"
    gensamp.export(random_mlp(2, 8, "relu")).save(q)
    q.write_bytes(q.read_bytes()[:-10])
    with pytest.raises(ValueError, match="not a valid gensamp weights file"):
        gensamp.load(q)
    with pytest.raises(ValueError, match="cannot read"):
        gensamp.load(tmp_path / "missing.safetensors")


def test_loader_refuses_wrong_dtype(tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    p = tmp_path / "w.safetensors"
    gensamp.export(random_mlp(2, 8, "relu", seed=1)).save(p)
    with safe_open(str(p), framework="numpy") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    tensors["layers.1.weight"] = tensors["layers.1.weight"].astype(np.float64)
    save_file(tensors, str(p), metadata=meta)
    with pytest.raises(ValueError, match="layers.1.weight has dtype float64"):
        gensamp.load(p)


# ---- VAE decoders: likelihood and prior (format version 2) ----------------------------------


def _vae(likelihood="bernoulli", prior=True, k=2, d=3, **kw):
    rng = np.random.default_rng(7)
    out = 2 * d if likelihood == "gaussian" else d
    layers = [
        (rng.normal(size=(6, k)).astype(np.float32), np.zeros(6, np.float32)),
        (rng.normal(size=(out, 6)).astype(np.float32), np.zeros(out, np.float32)),
    ]
    mix = None
    if prior:
        mix = ([0.25, 0.75], [[-1.0, 0.0], [2.0, 1.0]], [[[1.0, 0], [0.5, 0.2]], np.eye(2)])
    return gensamp.Weights(
        layers, ["tanh"], role="vae_decoder", likelihood=likelihood, prior=mix, **kw
    )


V1_KEYS = {"format", "format_version", "n_layers", "activations", "sigma_input"}
V1_KEYS |= {"divide_by_sigma", "role", "sampler", "info"}


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli", "continuous_bernoulli"])
def test_vae_decoder_format_2_round_trip(tmp_path, likelihood):
    w = _vae(likelihood)
    assert w.likelihood == likelihood and w.dim == 3 and w.latent_dim == 2
    p = tmp_path / "vae.safetensors"
    w.save(p)
    header, _ = _header(p)
    meta = header["__metadata__"]
    assert meta["format_version"] == "2" and meta["likelihood"] == likelihood
    assert set(meta) == V1_KEYS | {"likelihood"}
    assert {k for k in header if k.startswith("prior.")} == {
        "prior.weights",
        "prior.means",
        "prior.chol",
    }
    v = gensamp.load(p)
    assert v.likelihood == likelihood
    for a, b in zip(v.prior, w.prior):
        assert a.dtype == np.float32 and np.array_equal(a, b)
    with pytest.raises(ValueError, match="read-only"):
        v.prior[2][0, 0, 0] = 3.0
    z = np.random.default_rng(0).normal(size=(9, 2)).astype(np.float32)
    assert np.array_equal(v.forward(z), w.forward(z))
    assert np.array_equal(gensamp.vae_sample(p, 50, seed=2), gensamp.vae_sample(w, 50, seed=2))
    assert "likelihood=" in repr(v) and "mixture of 2" in repr(v)


def test_gaussian_normal_vae_decoder_stays_version_1(tmp_path):
    """What version 1 holds is written as version 1, exactly as before (no new keys)."""
    w = _vae("gaussian", prior=False, shift=[1.0, 2.0, 3.0], scale=[1.0, 2.0, 0.5])
    assert w.likelihood == "gaussian" and w.prior is None
    p = tmp_path / "v1.safetensors"
    w.save(p)
    header, _ = _header(p)
    assert header["__metadata__"]["format_version"] == "1"
    assert set(header["__metadata__"]) == V1_KEYS
    assert {k for k in header if k != "__metadata__"} == {
        "layers.0.weight",
        "layers.0.bias",
        "layers.1.weight",
        "layers.1.bias",
        "norm.shift",
        "norm.scale",
    }
    assert gensamp.load(p).likelihood == "gaussian"
    # a score network has no likelihood or prior
    assert gensamp.export(random_mlp(2, 8, "relu")).likelihood is None
    assert gensamp.export(random_mlp(2, 8, "relu")).prior is None


def _rewrite_vae(path, meta_fn=None, tensors_fn=None):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(path), framework="numpy") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    if meta_fn:
        meta_fn(meta)
    if tensors_fn:
        tensors_fn(tensors)
    save_file(tensors, str(path), metadata=meta)


def _set(name, fn):
    def edit(t):
        t[name] = fn(t[name].copy()).astype(np.float32)

    return edit


@pytest.mark.parametrize(
    "meta_fn,tensors_fn,match",
    [
        (lambda m: m.update(likelihood="poisson"), None, "likelihood is 'poisson'"),
        (lambda m: m.update(role="score"), None, "format 2 without a graph is a VAE decoder"),
        (lambda m: m.pop("likelihood"), None, "lacks .*graph.*or a VAE decoder"),
        (lambda m: m.update(graph="[]"), None, r"lacks \[.dim.\] \(format 2 is a graph"),
        (lambda m: m.update(format_version="1"), None, "unexpected metadata keys .*likelihood"),
        (None, lambda t: t.pop("prior.chol"), "missing or unexpected: 'prior.chol'"),
        (None, lambda t: t.update({"norm.shift": np.zeros(3, np.float32)}), "missing or unexp"),
        (
            None,
            lambda t: t.update(
                {"norm.shift": np.zeros(3, np.float32), "norm.scale": np.ones(3, np.float32)}
            ),
            "takes no shift/scale",
        ),
        (None, _set("prior.weights", lambda a: a * 1.01), "sum to 1"),
        (None, _set("prior.weights", lambda a: a[::-1] - 0.5), "must all be > 0"),
        (None, _set("prior.chol", lambda a: a + np.triu(np.ones(2), 1)), "upper triangle"),
        (None, _set("prior.chol", lambda a: -a), "positive diagonal"),
        (None, _set("prior.chol", lambda a: a * np.nan), "NaN or Inf"),
        (None, _set("prior.means", lambda a: a[:, :1]), r"shape \[K, latent_dim\] = \[2, 2\]"),
        (None, _set("prior.chol", lambda a: a[:1]), r"shape \[K, latent_dim, latent_dim\]"),
        (None, _set("prior.weights", lambda a: a.reshape(1, 2)), "1 dimension"),
    ],
)
def test_vae_format_2_loader_refusals(tmp_path, meta_fn, tensors_fn, match):
    p = tmp_path / "vae.safetensors"
    _vae("continuous_bernoulli").save(p)
    _rewrite_vae(p, meta_fn, tensors_fn)
    with pytest.raises(ValueError, match=match):
        gensamp.load(p)


def test_version_2_gaussian_decoder_without_prior_is_refused(tmp_path):
    """One file form per model: what version 1 holds must not appear as version 2."""
    p = tmp_path / "vae.safetensors"
    _vae("gaussian").save(p)
    gensamp.load(p)  # Gaussian with a mixture prior: a valid version-2 file
    _rewrite_vae(p, tensors_fn=lambda t: [t.pop(k) for k in list(t) if k.startswith("prior.")])
    with pytest.raises(ValueError, match="is a format_version 1 file, not 2"):
        gensamp.load(p)


def test_vae_weights_arguments_refused_with_clear_messages():
    W, b = np.ones((4, 2), np.float32), np.zeros(4, np.float32)
    good = ([1.0], [[0.0, 0.0]], [np.eye(2)])
    with pytest.raises(ValueError, match="likelihood must be one of"):
        gensamp.Weights([(W, b)], [], role="vae_decoder", likelihood="poisson")
    with pytest.raises(ValueError, match="belong to a VAE decoder"):
        gensamp.Weights([(np.ones((2, 2)), b[:2])], [], likelihood="bernoulli")
    with pytest.raises(ValueError, match="belong to a VAE decoder"):
        gensamp.Weights([(np.ones((2, 2)), b[:2])], [], prior=good)
    with pytest.raises(ValueError, match="takes no shift/scale"):
        gensamp.Weights(
            [(W, b)],
            [],
            role="vae_decoder",
            likelihood="bernoulli",
            shift=np.zeros(4),
            scale=np.ones(4),
        )
    with pytest.raises(ValueError, match="Gaussian VAE decoder outputs"):
        gensamp.Weights([(np.ones((3, 2)), b[:3])], [], role="vae_decoder")
    with pytest.raises(TypeError, match="prior must be None or a"):
        gensamp.Weights([(W, b)], [], role="vae_decoder", prior=([1.0], [[0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"prior means must have shape \[K, latent_dim\]"):
        gensamp.Weights([(W, b)], [], role="vae_decoder", prior=([1.0], [[0.0]], [np.eye(2)]))
    w = gensamp.Weights([(W, b)], [], role="vae_decoder", likelihood="bernoulli", prior=good)
    assert w.dim == 4 and w.latent_dim == 2
