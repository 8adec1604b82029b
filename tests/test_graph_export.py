"""Custom torch modules exported as graphs (weights format 2): every op, the network styles the
field writes, the engine against torch and against the reference sampler, and each refusal."""

import copy
import math
import warnings

import gensamp
import graph_nets as nets
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import ACTS, TORCH_ACTS
from gensamp import reference as ref
from gensamp.graph import Graph, Node
from gensamp.learn.tracing import ExportError

SIGMAS_CHECK = np.geomspace(0.01, 50.0, 9)


def torch_score(module, x, sigma, sigma_shape="n", output="score"):
    """The module's score in float64 where it runs in float64, else float32 (a module that
    casts with .float() inside forward)."""
    try:
        m, dt = copy.deepcopy(module).double(), torch.float64
        m(torch.zeros(2, x.shape[1], dtype=dt), *([torch.ones(2, dtype=dt)] if sigma else []))
    except RuntimeError:
        m, dt = module, torch.float32
    args = [torch.tensor(x, dtype=dt)]
    if sigma is not None:
        s = torch.full((x.shape[0],), float(sigma), dtype=dt)
        args.append(s if sigma_shape == "n" else s[:, None])
    with torch.no_grad():
        out = m(*args).double().numpy()
    if output == "denoiser":
        out = (out - x) / sigma**2
    elif output == "noise":
        out = -out / sigma
    return out


def assert_matches_torch(module, w, tol=1e-5, output="score", sigma_shape="n", sigmas=SIGMAS_CHECK):
    rng = np.random.default_rng(5)
    worst = 0.0
    for s in sigmas if w.conditioned else [None]:
        x = (rng.normal(size=(300, w.dim)) * math.sqrt(1 + (s or 0) ** 2)).astype(np.float32)
        got = w.score(x, s) if s else w.score(x)
        want = torch_score(module, x.astype(np.float64), s, sigma_shape, output)
        worst = max(worst, float(np.max(np.abs(got - want) / (1 + np.abs(want)))))
    assert worst <= tol, f"max relative error {worst:.3g}"
    return worst


# ---- whole networks in the styles of the field ---------------------------------------------

STYLES = {
    "tiny_diffusion_resmlp": (lambda: nets.ResMLP(), {}),
    "score_sde_fourier": (lambda: nets.Fourier(), {}),
    "edm_preconditioned": (lambda: nets.EDM(), {"output": "denoiser"}),
    "diffusers_embedding_layernorm": (lambda: nets.Diffusers(), {}),
    "wrapped_sequential": (lambda: nets.Wrapped(), {}),
}


def _style(name):
    torch.manual_seed(3)
    make, kw = STYLES[name]
    module = make().eval()
    return module, gensamp.export(module, **kw), kw


@pytest.mark.parametrize("name", list(STYLES))
def test_style_matches_torch(name):
    module, w, kw = _style(name)
    assert_matches_torch(module, w, output=kw.get("output", "score"))
    if name == "wrapped_sequential":  # a plain chain becomes a format-1 MLP
        assert w.graph is None and w.activations == ("tanh",)
    else:
        assert w.graph is not None and w.conditioned


@pytest.mark.parametrize("name", list(STYLES))
def test_style_sampler_parity_and_threads(name):
    _, w, _ = _style(name)
    d = w.dim
    x0 = np.random.default_rng(d).normal(size=(37, d)).astype(np.float32)
    if w.conditioned:
        sig, eps = [0.5, 0.4, 0.3, 0.2], 2e-3
        runs = [
            gensamp.annealed_langevin(w, sig, eps, 250, x0=x0, seed=7, threads=t) for t in (1, 2, 7)
        ]
        want = ref.annealed_langevin(w, sig, eps, 250, x0=x0, seed=7)
    else:
        runs = [gensamp.langevin(w, 1e-3, 1000, x0=x0, seed=7, threads=t) for t in (1, 2, 7)]
        want = ref.langevin(w, 1e-3, 1000, x0=x0, seed=7)
    assert np.std(want - x0) > 0.3  # the chains moved
    assert np.all(np.isfinite(runs[0]))
    err = np.max(np.abs(runs[0] - want) / (1 + np.abs(want)))
    assert err <= 1e-4, f"engine vs reference over 1000 steps: {err:.3g}"
    for r in runs[1:]:
        assert np.array_equal(r, runs[0]), "threads changed the bits"


def test_graph_round_trip_samples_identically(tmp_path):
    _, w, _ = _style("tiny_diffusion_resmlp")
    w = gensamp.Weights(
        graph=w.graph,
        shift=[1.0, -1.0],
        scale=[2.0, 0.5],
        sampler={"sigmas": np.geomspace(5, 0.05, 10), "method": "cas", "steps": 30},
    )
    p = tmp_path / "res.safetensors"
    w.save(p)
    w2 = gensamp.load(p)
    assert w2.graph is not None and w2.sampler == w.sampler
    a = gensamp.sample(w, n=200, seed=3)
    b = gensamp.sample(w2, n=200, seed=3)
    assert np.array_equal(a, b)
    assert np.all(np.isfinite(a))
    from safetensors import safe_open

    with safe_open(str(p), "np") as f:
        assert f.metadata()["format_version"] == "2"


def test_edm_score_is_accurate_where_denoiser_minus_x_cancels():
    # At small sigma c_skip is within sigma^2 of 1: (D - x) / sigma^2 in float32 loses ~5
    # digits at sigma = 0.002. The exporter forms ((c_skip - 1) x + c_out F) / sigma^2 with
    # c_skip - 1 per level in double; what is left is F's own float32 rounding times
    # c_out / sigma^2 ~ 1 / sigma (measured: 2.9e-5 at sigma = 0.002, 4.5e-6 at 0.01).
    module, w, _ = _style("edm_preconditioned")
    assert_matches_torch(module, w, output="denoiser", sigmas=[0.01, 0.02])
    x = np.random.default_rng(0).normal(size=(300, 2)).astype(np.float32)
    s = 0.002
    exact = torch_score(module, x.astype(np.float64), s, output="denoiser")
    with torch.no_grad():
        d32 = module(torch.tensor(x), torch.full((300,), s)).double().numpy()
    naive = (d32 - x) / s**2  # what float32 torch gives

    def err(a):
        return np.max(np.abs(a - exact) / (1 + np.abs(exact)))

    assert err(w.score(x, s)) * 100 < err(naive)


# ---- one op at a time ----------------------------------------------------------------------


class Op(nn.Module):
    def __init__(self, fn, d=3, h=8, cond=True):
        super().__init__()
        self.fn, self.cond = fn, cond
        self.a = nn.Linear(d, h)
        self.b = nn.Linear(h, d)

    def forward(self, x, sigma):
        # the output scaling keeps every case noise-conditional (else sigma would be pruned)
        return self.b(self.fn(self, self.a(x), sigma)) / (1 + sigma[:, None])


def _op_cases():
    s1 = lambda s: s[:, None]  # noqa: E731
    return {
        "add_tensor": lambda m, h, s: h + torch.tanh(h),
        "sub_tensor": lambda m, h, s: h - torch.sigmoid(h),
        "mul_tensor": lambda m, h, s: h * torch.tanh(h),
        "div_tensor": lambda m, h, s: h / (1.5 + torch.sigmoid(h)),
        "add_sigma_fn": lambda m, h, s: h + torch.sin(s1(s)),
        "sub_sigma_fn": lambda m, h, s: h - torch.cos(s1(s)),
        "mul_sigma_fn": lambda m, h, s: h * torch.exp(-s1(s)),
        "div_sigma_fn": lambda m, h, s: h / torch.sqrt(1 + s1(s) ** 2),
        "log_sigma": lambda m, h, s: h * torch.log(s).unsqueeze(1),
        "scalar_ops": lambda m, h, s: (2.0 * h - 1.0) / 3.0 + 0.5,
        "rsub_rdiv": lambda m, h, s: 1.0 - 2.0 / (3.0 + torch.sigmoid(h)),
        "pow_rsqrt_square": lambda m, h, s: (
            h.pow(3) * torch.rsqrt(s1(s) ** 2 + 1) + torch.square(h)
        ),
        "exp_base_power": lambda m, h, s: h * 2.0 ** (-s1(s)),
        "neg": lambda m, h, s: -h,
        "sin_cos_of_x": lambda m, h, s: torch.cat([torch.sin(h), torch.cos(h)], dim=-1)[:, :8],
        "cat_with_sigma": lambda m, h, s: torch.cat(
            [h[:, :6], s.view(-1, 1), torch.log(s)[:, None]], -1
        ),
        "slice_and_flip": lambda m, h, s: torch.cat([h[:, 4:], h[:, :4]], dim=1).flip(-1),
        "residual": lambda m, h, s: h + F.silu(h),
        "layer_norm_fn": lambda m, h, s: F.layer_norm(h, (8,)),
        "pad": lambda m, h, s: F.pad(h[:, :6], (1, 1)),
        "matmul_const": lambda m, h, s: h @ torch.linspace(-1, 1, 64).reshape(8, 8),
        "f_linear": lambda m, h, s: F.linear(h, torch.eye(8) * 0.5, torch.ones(8)),
        "reshape_view": lambda m, h, s: h.reshape(h.shape[0], -1).view(-1, 8).contiguous().float(),
        "expand_sigma": lambda m, h, s: h * s[:, None].expand(-1, 8),
        "chunk": lambda m, h, s: torch.cat(h.chunk(2, dim=-1)[::-1], dim=-1),
    }


OP_CASES = _op_cases()


@pytest.mark.parametrize("name", list(OP_CASES))
def test_each_op_matches_torch(name):
    torch.manual_seed(hash(name) % 1000)
    module = Op(OP_CASES[name]).eval()
    w = gensamp.export(module)
    assert w.graph is not None
    assert_matches_torch(module, w, sigmas=[0.05, 0.7, 4.0])


@pytest.mark.parametrize("act", ACTS)
def test_each_activation_module_and_function(act):
    torch.manual_seed(1)
    funcs = {
        "relu": F.relu,
        "silu": F.silu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "softplus": F.softplus,
        "elu": F.elu,
        "leaky_relu": F.leaky_relu,
        "gelu": F.gelu,
        "gelu_tanh": lambda h: F.gelu(h, approximate="tanh"),
    }
    module = Op(lambda m, h, s: m.act(h) + funcs[act](h * s[:, None]))
    module.act = TORCH_ACTS[act]()
    module.eval()
    w = gensamp.export(module)
    assert_matches_torch(module, w, sigmas=[0.3, 2.0])


def test_layer_norm_and_eval_batchnorm_modules():
    torch.manual_seed(2)
    ln, bn = nn.LayerNorm(8), nn.BatchNorm1d(8)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
    module = Op(lambda m, h, s: m.bn(m.ln(h)))
    module.ln, module.bn = ln, bn
    module.eval()
    assert_matches_torch(module, gensamp.export(module), sigmas=[1.0])


def test_unconditional_module_and_sigma_as_a_column():
    torch.manual_seed(4)

    class Score(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = nn.Linear(2, 16), nn.Linear(16, 2)

        def forward(self, x):
            return -x + 0.1 * self.l2(torch.tanh(self.l1(x)))

    class Col(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = nn.Linear(3, 16), nn.Linear(16, 2)

        def forward(self, x, sigma):  # sigma as [n, 1]
            return self.l2(F.silu(self.l1(torch.cat([x, sigma.log()], 1)))) / sigma

    score = Score()
    w = gensamp.export(score)
    assert not w.conditioned and w.graph is not None
    assert_matches_torch(score, w)
    col = Col()
    w = gensamp.export(col)
    assert_matches_torch(col, w, sigma_shape="n1")


def test_noise_prediction_output():
    torch.manual_seed(6)
    module = nets.ResMLP().eval()
    w = gensamp.export(module, output="noise")
    assert_matches_torch(module, w, output="noise")


# ---- refusals: one message each ------------------------------------------------------------


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(2, 2)

    def forward(self, x, sigma):
        if sigma.mean() > 1:
            return self.l(x)
        return -x


REFUSALS = {
    "state_dict": (lambda: nets.Wrapped().state_dict(), "state_dict: it holds the weights but not"),
    "torchscript": (lambda: _scripted(), "TorchScript module"),
    "control_flow": (
        lambda: Branchy(),
        r"(?s)Branchy.*test_graph_export.py.*data-dependent control flow",
    ),
    "batchnorm_training": (
        lambda: Op(lambda m, h, s: m.bn(h)).train(),
        r"BatchNorm in training mode.*call module.eval\(\)",
    ),
    "dropout_training": (lambda: Op(lambda m, h, s: m.do(h)).train(), r"Dropout in training mode"),
    "random": (
        lambda: Op(lambda m, h, s: h + torch.randn_like(h)),
        "random numbers inside forward",
    ),
    "unsupported_function": (
        lambda: Op(lambda m, h, s: torch.abs(h)),
        r"node 'abs\w*' \(call_function abs\) at File .*test_graph_export.py.*"
        r"abs has no engine counterpart",
    ),
    "reduction": (
        lambda: Op(lambda m, h, s: h - h.sum(-1, keepdim=True)),
        "reductions over features",
    ),
    "unsupported_module": (
        lambda: Op(lambda m, h, s: m.conv(h)),
        "module Softmax has no engine counterpart",
    ),
    "inplace_reuse": (
        lambda: Op(lambda m, h, s: h.mul_(2) + h),
        "in-place operation on a value that is also used",
    ),
    "int_cast": (lambda: Op(lambda m, h, s: h + h.to(torch.int64)), "non-float dtype|int64 tensor"),
    "mixes_chains": (
        lambda: Op(lambda m, h, s: h.flip(0)),
        "mixes chains .the batch must stay",
    ),
    "batch_dependent_constant": (
        lambda: Op(lambda m, h, s: h + torch.arange(h.shape[0], dtype=torch.float32)[:, None]),
        "differs from chain to chain",
    ),
    "act_parameters": (
        lambda: Op(lambda m, h, s: F.leaky_relu(h, 0.2)),
        "leaky_relu with negative_slope=0.2",
    ),
    "three_arguments": (lambda: Three(), "takes 3 required arguments"),
    "not_a_score": (lambda: NotScore(), "could not run NotScore.forward"),
    "not_a_module": (lambda: lambda x: x, "export needs a torch nn.Module"),
}


def _scripted():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script is deprecated
        return torch.jit.script(nets.Wrapped())


class Three(nn.Module):
    def forward(self, x, sigma, t):
        return x


class NotScore(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(2, 5)

    def forward(self, x):
        return self.l(x)


@pytest.mark.parametrize("name", list(REFUSALS))
def test_refusal_message(name):
    make, match = REFUSALS[name]
    module = make()
    if isinstance(module, Op):
        module.bn, module.do, module.conv = (
            nn.BatchNorm1d(8),
            nn.Dropout(0.1),
            nn.Softmax(dim=-1),
        )
    with pytest.raises(TypeError, match=match):
        gensamp.export(module)


def test_refusals_are_export_errors_with_node_and_source_line():
    module = Op(lambda m, h, s: torch.clamp(h, 0, 1))
    with pytest.raises(ExportError) as info:
        gensamp.export(module)
    text = str(info.value)
    assert "node 'clamp'" in text and "call_function clamp" in text
    assert "test_graph_export.py" in text and "torch.clamp(h, 0, 1)" in text
    assert "hint:" in text


def test_sequential_options_are_refused_for_modules():
    with pytest.raises(TypeError, match="forward.x, sigma. says itself"):
        gensamp.export(nets.ResMLP(), sigma_input="log_sigma")


# ---- the graph container and the loader ----------------------------------------------------


def _lin(o, i, src):
    return Node(
        "linear",
        [src],
        tensors={"weight": np.ones((o, i), np.float32), "bias": np.zeros(o, np.float32)},
    )


@pytest.mark.parametrize(
    "nodes,dim,match",
    [
        ([Node("x"), Node("add", [0, 2]), Node("neg", [1])], 2, "input 2 is not an earlier node"),
        ([Node("x"), Node("neg", [1])], 2, "input 1 is not an earlier node"),  # a self-loop
        ([Node("x"), Node("conv", [0])], 2, "unknown op 'conv'"),
        ([Node("x"), _lin(3, 2, 0)], 2, "has width 3"),
        ([Node("x"), _lin(2, 3, 0)], 2, "do not fit an input of width 2"),
        (
            [Node("x"), Node("sigma"), Node("neg", [0])],
            2,
            r"node\(s\) \[1\] do not feed the output",
        ),
        ([Node("sigma"), Node("neg", [0])], 1, "does not depend on x"),
        ([Node("x"), Node("x"), Node("add", [0, 1])], 2, "at most one 'x'"),
        ([Node("x"), Node("slice", [0], {"start": 1, "stop": 1})], 2, "is not a range"),
        ([Node("x"), Node("act", [0], {"name": "mish"})], 2, "unknown activation 'mish'"),
        ([Node("x"), Node("pow", [0], {"exponent": float("nan")})], 2, "must be finite"),
        ([Node("x"), Node("neg", [0], {"extra": 1})], 2, "attributes must be"),
        ([Node("x"), Node("add", [0, 0, 0])], 2, "takes 2 inputs"),
        (
            [
                Node("x"),
                Node("const", tensors={"value": np.ones(3, np.float32)}),
                Node("add", [0, 1]),
            ],
            2,
            "do not broadcast",
        ),
    ],
)
def test_graph_validation(nodes, dim, match):
    with pytest.raises(ValueError, match=match):
        Graph(nodes, dim)


def test_graph_size_is_bounded():
    nodes = [Node("x")] + [Node("neg", [i]) for i in range(10_000)]
    with pytest.raises(ValueError, match="1 to 10000 nodes"):
        Graph(nodes, 1)


def test_level_values_that_are_not_finite_are_refused():
    g = Graph(
        [
            Node("x"),
            Node("sigma"),
            Node("scalar", [], {"value": -1.0}),
            Node("mul", [1, 2]),
            Node("log", [3]),
            Node("add", [0, 4]),
        ],
        1,
    )
    w = gensamp.Weights(graph=g)
    with pytest.raises(ValueError, match=r"graph node 4 \(log\) is not finite at noise level"):
        w.score(np.zeros((2, 1)), 0.5)


def test_graph_networks_refuse_what_only_mlps_have():
    _, w, _ = _style("score_sde_fourier")
    with pytest.raises(AttributeError, match="graph network has no layers"):
        _ = w.layers
    with pytest.raises(TypeError, match="use Weights.score"):
        w.forward(np.zeros((1, 2)))
    with pytest.raises((NotImplementedError, ValueError), match="graph"):
        gensamp.log_prob(w, np.zeros((3, 2)))
