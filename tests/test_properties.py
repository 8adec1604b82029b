"""Property-based tests (hypothesis) over the public API: shapes, dtypes, layouts, extreme values.

Every call either succeeds with the numbers of the float32 C-order input (and of the numpy
reference sampler, where that is cheap), or fails with TypeError/ValueError/MemoryError naming
the argument; a DivergenceWarning is the only other allowed outcome, for inputs that really
drive chains to Inf.
"""

import math
import numbers
import warnings
from decimal import Decimal
from fractions import Fraction

import gensamp
import numpy as np
import pytest
import torch
from conftest import random_mlp
from gensamp import reference as ref
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# hypothesis builds a mypy_extensions.TypedDict while reporting a failure; under the project's
# filterwarnings = error that DeprecationWarning would hide the failure behind an INTERNALERROR.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.finfo(np.float32).tiny)

# One mixture per dimension, built once (hypothesis calls each test many times).
MIXTURES = {
    d: gensamp.GaussianMixture([1, 2], [[-2.0] * d, [1.5] * d], stds=[0.7, 1.3])
    for d in range(1, 5)
}
NCSN = gensamp.export(
    random_mlp(3, 40, "silu", "log_sigma", seed=2), sigma_input="log_sigma", divide_by_sigma=True
)


def assert_parity(a, b, what=""):
    """Engine (float32) against reference (float64): max |a - b| / (1 + |b|) <= 1e-4."""
    assert np.all(np.isfinite(a)), f"{what}: non-finite engine output"
    err = np.max(np.abs(a.astype(np.float64) - b) / (1.0 + np.abs(b)))
    assert err <= 1e-4, f"{what}: max rel diff {err:.3e}"


def quietly(fn):
    """Calls fn, returning (result, DivergenceWarnings raised)."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = fn()
    other = [w for w in rec if not issubclass(w.category, gensamp.DivergenceWarning)]
    assert not other, [str(w.message) for w in other]
    return out, [w.message for w in rec if issubclass(w.category, gensamp.DivergenceWarning)]


# ---- x0: dtypes and layouts -------------------------------------------------------------------

DTYPES = [
    np.float16,
    np.float32,
    np.float64,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint64,
]
LAYOUTS = ["C", "F", "strided", "reversed", "list", "torch", "torch-transposed", "torch-grad"]


@st.composite
def x0_arrays(draw):
    d = draw(st.integers(1, 4))
    n = draw(st.integers(1, 40))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if dtype.kind == "f":
        elems = st.floats(-100, 100, width=8 * dtype.itemsize, allow_nan=False)
    else:
        info = np.iinfo(dtype)
        elems = st.integers(max(info.min, -100), min(info.max, 100))
    arr = draw(hnp.arrays(dtype, (n, d), elements=elems))
    return arr, draw(st.sampled_from(LAYOUTS))


def layout(arr, how):
    if how == "C":
        return np.ascontiguousarray(arr)
    if how == "F":
        return np.asfortranarray(arr)
    if how == "strided":
        big = np.zeros((arr.shape[0], 2 * arr.shape[1]), arr.dtype)
        big[:, ::2] = arr
        return big[:, ::2]
    if how == "reversed":
        return np.ascontiguousarray(arr[::-1])[::-1]
    if how == "list":
        return arr.tolist()
    if arr.dtype in (np.uint16, np.uint64):  # torch lacks general support for these
        return arr
    t = torch.from_numpy(np.ascontiguousarray(arr))
    if how == "torch-transposed":
        return torch.from_numpy(np.ascontiguousarray(arr.T)).T  # non-contiguous tensor
    if how == "torch-grad" and t.is_floating_point():
        return t.clone().requires_grad_(True)
    return t


@SETTINGS
@given(x0_arrays(), st.integers(0, 2**64 - 1), st.sampled_from([1, 2]))
def test_x0_of_any_dtype_and_layout_gives_the_float32_result(case, seed, threads):
    arr, how = case
    d = arr.shape[1]
    gm = MIXTURES[d]
    base = arr.astype(np.float32)
    expected = gensamp.langevin(gm, 0.05, 3, x0=base, seed=seed, threads=1)
    got = gensamp.langevin(gm, 0.05, 3, x0=layout(arr, how), seed=seed, threads=threads)
    assert got.dtype == np.float32 and got.shape == arr.shape
    assert np.array_equal(got, expected), f"{arr.dtype} {how}"
    assert_parity(got, ref.langevin(gm, 0.05, 3, x0=base, seed=seed), f"{arr.dtype} {how}")


def test_bfloat16_and_half_tensors_are_accepted():
    x = torch.linspace(-3, 3, 20).reshape(10, 2)
    gm = MIXTURES[2]
    want = gensamp.langevin(gm, 0.05, 5, x0=x.to(torch.bfloat16).float().numpy(), seed=1)
    assert np.array_equal(gensamp.langevin(gm, 0.05, 5, x0=x.to(torch.bfloat16), seed=1), want)
    want = gensamp.langevin(gm, 0.05, 5, x0=x.half().float().numpy(), seed=1)
    assert np.array_equal(gensamp.langevin(gm, 0.05, 5, x0=x.half(), seed=1), want)


@SETTINGS
@given(st.integers(1, 30), st.integers(1, 4), st.data())
def test_nan_inf_or_out_of_range_x0_is_a_value_error(n, d, data):
    dtype = data.draw(st.sampled_from([np.float16, np.float32, np.float64]))
    beyond_f32 = [1e39, -1e300] if dtype == np.float64 else []
    bad = data.draw(st.sampled_from([np.nan, np.inf, -np.inf] + beyond_f32))
    arr = np.zeros((n, d), dtype)
    i, j = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, d - 1))
    arr[i, j] = bad
    wrap = data.draw(st.sampled_from(["numpy", "list", "torch", "F"]))
    x0 = {
        "numpy": arr,
        "list": arr.tolist(),
        "torch": torch.from_numpy(arr),
        "F": np.asfortranarray(arr),
    }[wrap]
    with pytest.raises(ValueError, match="x0 contains NaN or Inf"):
        gensamp.langevin(MIXTURES[d], 0.1, 2, x0=x0)
    with pytest.raises(ValueError, match="x0 contains NaN or Inf"):
        gensamp.annealed_langevin(MIXTURES[d], [1.0, 0.5], 0.1, 2, x0=x0)


@SETTINGS
@given(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5), st.integers(1, 4))
def test_wrong_x0_shapes_are_value_errors(shape, d):
    valid = (len(shape) == 2 and shape[1] == d and shape[0] >= 1) or (
        len(shape) == 1 and d == 1 and shape[0] >= 1
    )
    assume(not valid)
    with pytest.raises(ValueError, match=r"x0 must have shape \[n, \d\]|x0 is empty"):
        gensamp.langevin(MIXTURES[d], 0.1, 2, x0=np.zeros(shape))


@pytest.mark.parametrize(
    "x0,exc,match",
    [
        ([[1, 2], [3]], ValueError, "x0 must be a rectangular"),
        ([[1, None]], TypeError, "x0 must be a real numeric array"),
        ("ab", TypeError, "x0 must be a real numeric array"),
        (np.ones((3, 2), complex), TypeError, "x0 must be a real numeric array"),
        (np.ones((3, 2), bool), TypeError, "x0 must be a real numeric array"),
        (torch.ones(3, 2, dtype=torch.complex64), TypeError, "x0 must be a real numeric array"),
        (np.array([["2020-01-01"] * 2], dtype="datetime64[D]"), TypeError, "real numeric"),
    ],
)
def test_non_numeric_x0_is_refused_by_name(x0, exc, match):
    with pytest.raises(exc, match=match):
        gensamp.langevin(MIXTURES[2], 0.1, 2, x0=x0)


# ---- scalar arguments ------------------------------------------------------------------------

ODD_VALUES = [
    None,
    True,
    False,
    np.bool_(True),
    0,
    1,
    -1,
    2,
    3,
    2.0,
    2.5,
    -0.0,
    0.5,
    1e-300,
    math.nan,
    math.inf,
    -math.inf,
    1e300,
    3.5e38,
    2**31,
    2**32 + 1,
    2**63,
    2**64,
    2**64 - 1,
    -(2**63),
    10**15,
    np.int64(3),
    np.uint8(2),
    np.float32(0.25),
    np.float64(2.0),
    np.array(3),
    np.array([3]),
    "3",
    b"3",
    [3],
    (3,),
    3 + 0j,
    Fraction(1, 2),
    Fraction(4, 2),
    Decimal("0.5"),
]


def _real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _integral(v):
    if not _real(v):
        return None
    if isinstance(v, numbers.Integral):
        return int(v)
    f = float(v)
    return int(f) if math.isfinite(f) and f.is_integer() else None


VALID = {
    # float32 must hold it as a normal number (the engine's precision)
    "eps": lambda v: _real(v) and math.isfinite(float(v)) and F32_TINY <= float(v) < F32_MAX,
    "T": lambda v: _integral(v) is not None and 1 <= _integral(v) <= 2**31 - 1,
    # n chains have n distinct 64-bit indices
    "n": lambda v: v is None or (_integral(v) is not None and 1 <= _integral(v) <= 2**64),
    "seed": lambda v: _integral(v) is not None and 0 <= _integral(v) < 2**64,
    "threads": lambda v: v is None or (_integral(v) is not None and 1 <= _integral(v) <= 4096),
    "record_every": lambda v: _integral(v) is not None and 0 <= _integral(v) <= 2**31 - 1,
    "tile": lambda v: v is None or (_integral(v) is not None and 1 <= _integral(v) <= 65536),
    # with n = 20 below: the last chain index chain_offset + 19 must fit in 64 bits
    "chain_offset": lambda v: _integral(v) is not None and 0 <= _integral(v) <= 2**64 - 20,
    "sigma": lambda v: (
        v is None or (_real(v) and (float(v) == 0 or F32_TINY <= float(v) <= F32_MAX))
    ),
}


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.sampled_from(sorted(VALID)), st.sampled_from(ODD_VALUES))
def test_every_scalar_argument_is_validated_at_the_edge(name, value):
    args = dict(eps=0.05, T=2, n=20, seed=1, threads=1, record_every=0, tile=None, sigma=None)
    args["chain_offset"] = 0
    args[name] = value
    valid = VALID[name](value)
    if valid and name == "T" and _integral(value) > 50:
        return  # a valid but long run: nothing to learn here
    if valid and name == "n" and value is not None and 10**6 < _integral(value) < 10**12:
        return  # valid, and may fit in memory: gigabytes of output
    eps, T = args.pop("eps"), args.pop("T")
    try:
        quietly(lambda: gensamp.langevin(MIXTURES[2], eps, T, **args))
    except (TypeError, ValueError) as exc:
        assert not valid, f"{name}={value!r} is valid but raised {exc!r}"
        assert name in str(exc), f"{name}={value!r}: message does not name the argument: {exc}"
        return
    except MemoryError as exc:
        assert name == "n" and "would need" in str(exc)
        return
    assert valid, f"{name}={value!r} is invalid but was accepted"


@SETTINGS
@given(
    st.sampled_from(["sigmas", "eps", "T"]),
    st.sampled_from(
        ODD_VALUES
        + [
            [],
            [1.0],
            [2.0, 1.0],
            [1.0, 2.0],
            [1.0, 1.0],
            [1.0, -1.0],
            [[1.0, 0.5]],
            [1.0, math.nan],
            [1e200, 1e-200],
            "abc",
            np.geomspace(10, 0.01, 5),
            torch.tensor([2.0, 1.0]),
        ]
    ),
)
def test_annealed_schedule_arguments_are_validated(name, value):
    args = dict(sigmas=[1.0, 0.5], eps=0.01, T=2)
    args[name] = value
    try:
        quietly(lambda: gensamp.annealed_langevin(MIXTURES[1], n=10, seed=1, **args))
    except (TypeError, ValueError) as exc:
        assert name in str(exc) or "step" in str(exc), exc
        return
    if name == "sigmas":
        s = np.asarray(value, dtype=np.float64).reshape(-1)
        assert s.size >= 1 and np.all(np.isfinite(s)) and np.all(s > 0) and np.all(np.diff(s) < 0)
    else:
        assert VALID[name](value)


# ---- models ------------------------------------------------------------------------------------


@st.composite
def mixtures(draw):
    d = draw(st.integers(1, 3))
    K = draw(st.integers(1, 3))
    scale = draw(st.sampled_from([1.0, 1e3])) if K == 1 else 1.0  # far-away means: one component
    means = draw(hnp.arrays(np.float64, (K, d), elements=st.floats(-10, 10))) * scale
    stds = draw(hnp.arrays(np.float64, (K, d), elements=st.floats(0.5, 20)))
    w = draw(hnp.arrays(np.float64, K, elements=st.floats(0.1, 10)))
    return gensamp.GaussianMixture(w, means, stds=stds)


@SETTINGS
@given(
    mixtures(),
    st.integers(1, 25),
    st.integers(1, 4),
    st.floats(1e-3, 0.2),
    st.sampled_from([None, 0.0, 0.3, 2.0]),
    st.integers(0, 2**64 - 1),
    st.sampled_from([1, 2]),
)
def test_mixture_sampling_matches_the_reference(gm, n, T, eps, sigma, seed, threads):
    a = gensamp.langevin(gm, eps, T, n=n, seed=seed, threads=threads, sigma=sigma)
    b = ref.langevin(gm, eps, T, n=n, seed=seed, sigma=sigma)
    assert_parity(a, b, repr(gm))


@SETTINGS
@given(st.integers(1, 300), st.integers(1, 200), st.integers(1, 4), st.integers(0, 2**64 - 1))
def test_results_do_not_depend_on_threads_or_tiles(n, tile, threads, seed):
    sig = [1.0, 0.3]
    base = gensamp.annealed_langevin(NCSN, sig, 1e-3, 4, n=n, seed=seed, threads=1)
    got = gensamp.annealed_langevin(NCSN, sig, 1e-3, 4, n=n, seed=seed, threads=threads, tile=tile)
    assert np.array_equal(got, base)


ACT_NAMES = [
    "identity",
    "relu",
    "leaky_relu",
    "elu",
    "silu",
    "softplus",
    "tanh",
    "sigmoid",
    "gelu",
    "gelu_tanh",
]


@st.composite
def networks(draw):
    d = draw(st.integers(1, 4))
    depth = draw(st.integers(1, 3))
    mode = draw(st.sampled_from(["none", "sigma", "log_sigma"]))
    divide = draw(st.booleans()) if mode != "none" else False
    extra = 0 if mode == "none" else 1
    widths = [d + extra] + [draw(st.integers(1, 24)) for _ in range(depth - 1)] + [d]
    gain = draw(st.floats(0.1, 2.0))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    layers = [
        (
            rng.normal(scale=gain / math.sqrt(i), size=(o, i)).astype(np.float32),
            rng.normal(scale=0.1, size=o).astype(np.float32),
        )
        for i, o in zip(widths[:-1], widths[1:])
    ]
    acts = [draw(st.sampled_from(ACT_NAMES)) for _ in range(depth - 1)]
    norm = draw(st.booleans())
    shift = rng.normal(size=d) if norm else None
    scale = rng.uniform(0.5, 2.0, size=d) if norm else None
    return gensamp.Weights(
        layers, acts, sigma_input=mode, divide_by_sigma=divide, shift=shift, scale=scale
    )


@SETTINGS
@given(networks(), st.integers(1, 12), st.integers(0, 2**64 - 1))
def test_networks_survive_a_file_round_trip_and_match_the_reference(tmp_path_factory, w, n, seed):
    p = tmp_path_factory.mktemp("net") / "w.safetensors"
    w.save(p)
    v = gensamp.load(p)
    assert (v.activations, v.sigma_input, v.divide_by_sigma, v.role) == (
        w.activations,
        w.sigma_input,
        w.divide_by_sigma,
        w.role,
    )
    for (W1, b1), (W2, b2) in zip(w.layers, v.layers):
        assert np.array_equal(W1, W2) and np.array_equal(b1, b2)
    x = np.random.default_rng(seed % 2**32).normal(size=(n, v.input_dim)).astype(np.float32)
    if v.conditioned:
        x[:, -1] = np.abs(x[:, -1]) + 0.1
    out = v.forward(x)
    want = ref.forward(v, x)
    assert np.max(np.abs(out - want) / (1 + np.abs(want))) <= 1e-5
    if v.conditioned or v.divide_by_sigma:
        a = gensamp.annealed_langevin(v, [1.0, 0.5], 1e-3, 3, n=n, seed=seed)
        b = ref.annealed_langevin(v, [1.0, 0.5], 1e-3, 3, n=n, seed=seed)
    else:
        a = gensamp.langevin(v, 1e-3, 3, n=n, seed=seed)
        b = ref.langevin(v, 1e-3, 3, n=n, seed=seed)
    assert_parity(a, b, repr(v))


@SETTINGS
@given(
    st.integers(1, 4),
    st.integers(1, 6),
    st.sampled_from(
        ["nan", "inf", "ndim1", "ndim3", "zero-rows", "zero-cols", "bias-len", "chain", "object"]
    ),
    st.data(),
)
def test_bad_layer_arrays_are_refused_by_name(d, h, defect, data):
    W0, b0 = np.ones((h, d), np.float32), np.zeros(h, np.float32)
    W1, b1 = np.ones((d, h), np.float32), np.zeros(d, np.float32)
    i = data.draw(st.integers(0, h * d - 1))
    if defect in ("nan", "inf"):
        W1 = W1.copy()
        W1.flat[i] = np.nan if defect == "nan" else -np.inf
    elif defect == "ndim1":
        W1 = W1.reshape(-1)
    elif defect == "ndim3":
        W1 = W1.reshape(1, d, h)
    elif defect == "zero-rows":
        W0, b0 = np.ones((0, d), np.float32), np.zeros(0, np.float32)
    elif defect == "zero-cols":
        W0 = np.ones((h, 0), np.float32)
    elif defect == "bias-len":
        b1 = np.zeros(d + 1, np.float32)
    elif defect == "chain":
        W1 = np.ones((d, h + 1), np.float32)
    else:
        W1 = np.array([[object()] * h] * d)
    with pytest.raises((ValueError, TypeError), match=r"layers\[[01]\]"):
        gensamp.Weights([(W0, b0), (W1, b1)], ["relu"])


@SETTINGS
@given(st.integers(1, 20), st.data())
def test_score_and_forward_refuse_non_finite_inputs(n, data):
    x = np.zeros((n, 3), np.float32)
    x.flat[data.draw(st.integers(0, 3 * n - 1))] = data.draw(st.sampled_from([np.nan, np.inf]))
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        NCSN.score(x, 0.5)
    with pytest.raises(ValueError, match="inputs contains NaN or Inf"):
        NCSN.forward(np.concatenate([x, np.ones((n, 1), np.float32)], 1))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(weights=[1.0], means=[[0.0]], stds=[1e-200]),  # variance underflows to 0
        dict(weights=[1.0], means=[[0.0]], stds=[1e200]),  # variance overflows to Inf
        dict(weights=[1.0], means=np.zeros((1, 0))),  # d = 0
    ],
)
def test_mixture_parameters_beyond_float_range_are_refused(kwargs):
    """GaussianMixture validates its inputs itself (ValueError naming them) instead of accepting
    values whose square or sum is not a finite positive float (every chain then diverges)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy overflow warnings are not the API
        with pytest.raises(ValueError, match="weights|means|stds|d >= 1"):
            gensamp.GaussianMixture(**kwargs)


def test_mixture_weights_whose_sum_overflows_are_normalised_or_refused():
    """Only weight ratios matter: [1e308, 1e308] is [0.5, 0.5], not an overflow to [0, 0]."""
    try:
        gm = gensamp.GaussianMixture([1e308, 1e308], [[0.0], [1.0]])
    except ValueError as exc:
        assert "weights" in str(exc)
        return
    assert np.allclose(gm.weights, [0.5, 0.5])
    assert np.all(np.isfinite(gensamp.langevin(gm, 0.1, 5, n=10, seed=1)))


def test_trajectory_has_steps_over_record_every_entries_even_when_that_is_zero():
    """record_every > T: the docstring promises a trajectory of T // record_every = 0 states
    (as the reference sampler returns), not None."""
    gm = MIXTURES[2]
    x, traj = gensamp.langevin(gm, 0.1, 5, n=7, seed=1, record_every=10)
    _, rtraj = ref.langevin(gm, 0.1, 5, n=7, seed=1, record_every=10)
    assert traj is not None and traj.shape == rtraj.shape == (0, 7, 2)
