"""The weights-file loader on untrusted input: named corruptions, and >= 10,000 seeded mutations.

Contract: gensamp.load(path) either returns valid Weights (whose forward pass works) or raises
ValueError; it never runs code from the file, never hangs, never crashes the interpreter. The
fuzzing loop runs in a subprocess so that a segfault is reported as a failure, with the case
number that reproduces it (FUZZ_CASE=<i> python tests/test_fuzz_loader.py).
"""

import json
import math
import os
import pickle
import random
import struct
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import gensamp
import numpy as np
import pytest

TESTS = Path(__file__).parent
PYTHON_DIR = os.path.dirname(os.path.dirname(gensamp.__file__))
N_CASES = 10_000
SEED = 20240601


# ---- valid base files --------------------------------------------------------------------------


def base_weights():
    """Three small valid files: a score net, a normalised NCSN with defaults, a VAE decoder."""
    rng = np.random.default_rng(0)

    def layer(o, i):
        return (
            rng.normal(scale=0.5, size=(o, i)).astype(np.float32),
            rng.normal(scale=0.1, size=o).astype(np.float32),
        )

    score = gensamp.Weights([layer(8, 2), layer(8, 8), layer(2, 8)], ["relu", "tanh"])
    ncsn = gensamp.Weights(
        [layer(6, 4), layer(3, 6)],
        ["silu"],
        sigma_input="log_sigma",
        divide_by_sigma=True,
        shift=[1.0, -2.0, 0.5],
        scale=[2.0, 0.5, 1.0],
        sampler={"sigmas": [2.0, 0.5, 0.1], "eps": 1e-3, "T": 10},
        info={"note": "fuzz"},
    )
    vae = gensamp.Weights([layer(6, 2), layer(4, 6)], ["gelu"], role="vae_decoder")
    return [score, ncsn, vae]


def graph_bases():
    """Three format-2 files: a residual net with a sinusoidal embedding of log sigma and a layer
    norm, output / sigma; an EDM-style preconditioned net (scalars, powers, sqrt); and a VAE
    decoder beyond version 1 (continuous Bernoulli likelihood, a 3-component mixture prior)."""
    from gensamp.graph import Graph, Node

    rng = np.random.default_rng(1)

    def lin(o, i, src):
        W = rng.normal(scale=0.4, size=(o, i)).astype(np.float32)
        return Node("linear", [src], tensors={"weight": W, "bias": np.full(o, 0.1, np.float32)})

    res = [
        Node("x"),
        Node("sigma"),
        Node("log", [1]),
        Node("const", tensors={"value": np.array([1.0, 0.3, 0.1], np.float32)}),
        Node("mul", [2, 3]),
        Node("sin", [4]),
        Node("cos", [4]),
        Node("cat", [0, 5, 6]),
        lin(8, 8, 7),
        Node("act", [8], {"name": "silu"}),
        lin(8, 8, 9),
        Node("act", [10], {"name": "tanh"}),
        Node("add", [9, 11]),
        Node(
            "layer_norm",
            [12],
            {"eps": 1e-5},
            {"weight": np.ones(8, np.float32), "bias": np.zeros(8, np.float32)},
        ),
        Node("slice", [13], {"start": 1, "stop": 7}),
        lin(2, 6, 14),
        Node("div", [15, 1]),
    ]
    edm = [
        Node("x"),
        Node("sigma"),
        Node("pow", [1], {"exponent": 2.0}),
        Node("scalar", [], {"value": 0.25}),
        Node("add", [2, 3]),
        Node("sqrt", [4]),
        Node("div", [0, 5]),
        lin(6, 3, 6),
        Node("act", [7], {"name": "gelu"}),
        lin(3, 6, 8),
        Node("mul", [9, 1]),
        Node("div", [10, 5]),
        Node("neg", [0]),
        Node("add", [11, 12]),
    ]
    diag = np.array([0.5, 1.0, 2.0])[:, None, None] * np.eye(2)
    chol = np.tril(rng.normal(scale=0.3, size=(3, 2, 2)), -1) + diag
    vae = gensamp.Weights(
        [
            (rng.normal(size=(6, 2)).astype(np.float32), np.full(6, 0.1, np.float32)),
            (rng.normal(size=(4, 6)).astype(np.float32), np.zeros(4, np.float32)),
        ],
        ["silu"],
        role="vae_decoder",
        likelihood="continuous_bernoulli",
        prior=([0.2, 0.3, 0.5], rng.normal(size=(3, 2)), chol),
        info={"note": "fuzz"},
    )
    return [
        gensamp.Weights(graph=Graph(res, 2), sampler={"sigmas": [1.0, 0.1], "eps": 1e-3, "T": 5}),
        gensamp.Weights(graph=Graph(edm, 3), shift=[0.0, 1.0, 2.0], scale=[1.0, 2.0, 0.5]),
        vae,
    ]


def split(raw):
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def join(header, body, pad=True):
    h = json.dumps(header, separators=(",", ":"), allow_nan=True).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + body


# ---- mutations ---------------------------------------------------------------------------------

DTYPES = [
    "F16",
    "BF16",
    "F64",
    "I8",
    "I16",
    "I32",
    "I64",
    "U8",
    "U16",
    "U32",
    "U64",
    "BOOL",
    "F8_E4M3",
    "F8_E5M2",
    "F32",
    "f32",
    "",
    "XYZ",
    7,
    None,
]
WEIRD_META = [
    "",
    "0",
    "1",
    "2",
    "-1",
    "1.0",
    "\u00b2",
    "\u0661",
    "1e3",
    "true",
    "false",
    "null",
    "{}",
    "[]",
    "abc",
    "none",
    "sigma",
    "log_sigma",
    "score",
    "ncsn",
    "vae_decoder",
    '["relu"]',
    '["relu", "mish"]',
    '["relu", 3]',
    '{"sigmas": [1e400]}',
    '{"T": 1e400}',
    '{"T": NaN}',
    '{"T": 0}',
    '{"T": true}',
    '{"T": "5"}',
    '{"eps": -1}',
    '{"eps": Infinity}',
    '{"sigmas": "x"}',
    '{"sigmas": [2, 1, 1]}',
    '{"sigmas": [[1]]}',
    '{"sigmas": []}',
    '{"extra": 1}',
    "[" * 3000 + "]" * 3000,
    '{"x": ' + "1" * 5000 + "}",
    "{not json",
    '"\\ud800"',
    "\x00",
    "9" * 40,
    "1000",
    "1001",
    "gensamp.weights",
]


def _tensor_keys(h):
    return [
        k
        for k, v in h.items()
        if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v and "shape" in v
    ]


def m_bitflip(rng, raw, h, body):
    b = bytearray(raw)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def m_byteset(rng, raw, h, body):
    b = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b)


def m_header_byte(rng, raw, h, body):
    """Corrupts a byte inside the JSON header specifically (most bit flips land in the body)."""
    n = struct.unpack("<Q", raw[:8])[0]
    b = bytearray(raw)
    i = 8 + rng.randrange(n)
    b[i] = rng.choice([ord(c) for c in '{}[]":,0123456789-eE. \\ntfa'] + [rng.randrange(256)])
    return bytes(b)


def m_truncate(rng, raw, h, body):
    return raw[: rng.randrange(len(raw))]


def m_extend(rng, raw, h, body):
    return raw + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))


def m_header_len(rng, raw, h, body):
    n = struct.unpack("<Q", raw[:8])[0]
    v = rng.choice(
        [
            0,
            1,
            2,
            n - 1,
            n + 1,
            n - 8,
            n + 8,
            len(raw) - 8,
            len(raw),
            100_000_001,
            2**31,
            2**32,
            2**63,
            2**64 - 1,
            rng.randrange(2**64),
            rng.randrange(64),
        ]
    )
    return struct.pack("<Q", v % 2**64) + raw[8:]


def m_dtype(rng, raw, h, body):
    k = rng.choice(_tensor_keys(h))
    h[k]["dtype"] = rng.choice(DTYPES)
    return join(h, body)


def m_shape(rng, raw, h, body):
    k = rng.choice(_tensor_keys(h))
    s = list(h[k]["shape"])
    op = rng.randrange(6)
    if op == 0:
        s.append(rng.choice([1, 2]))
    elif op == 1 and s:
        s.pop()
    elif op == 2 and s:
        s[rng.randrange(len(s))] = rng.choice([0, 1, 3, 10**12, -1, 2**63, 2**64 + 1])
    elif op == 3:
        s = s[::-1]
    elif op == 4:
        s = rng.choice([[], [0], "x", None, [1.5], [[1]]])
    else:  # a shape that is consistent with the data size but wrong for the network
        total = math.prod(s) if s else 1
        s = [total] if len(s) == 2 else [1, total]
    h[k]["shape"] = s
    return join(h, body)


def m_offsets(rng, raw, h, body):
    k = rng.choice(_tensor_keys(h))
    a, b = h[k]["data_offsets"]
    op = rng.randrange(5)
    if op == 0:
        h[k]["data_offsets"] = [a + rng.choice([-4, 4]), b + rng.choice([-4, 0, 4])]
    elif op == 1:
        h[k]["data_offsets"] = [b, a]
    elif op == 2:
        h[k]["data_offsets"] = [a, rng.choice([-1, 2**63, 2**64 - 1, len(body) + 4])]
    elif op == 3:
        h[k]["data_offsets"] = [a]
    else:
        h[k]["data_offsets"] = "0,4"
    return join(h, body)


def m_tensors(rng, raw, h, body):
    keys = _tensor_keys(h)
    k = rng.choice(keys)
    op = rng.randrange(4)
    if op == 0:
        del h[k]
    elif op == 1:
        h[k + ".copy"] = dict(h[k])
    elif op == 2:
        h[
            rng.choice(
                [
                    "layers.9.weight",
                    "norm.shift",
                    "norm.scale",
                    "layers.0.weight ",
                    "__metadata__x",
                    "Layers.0.weight",
                ]
            )
        ] = h.pop(k)
    else:
        k2 = rng.choice(keys)
        h[k], h[k2] = h[k2], h[k]
    return join(h, body)


def m_metadata(rng, raw, h, body):
    meta = h.get("__metadata__")
    if not isinstance(meta, dict):
        meta = h["__metadata__"] = {}
    op = rng.randrange(8)
    if op <= 3:
        key = rng.choice(list(meta) + ["format_version", "n_layers", "activations", "sampler"])
        meta[key] = rng.choice(WEIRD_META)
    elif op == 4 and meta:
        del meta[rng.choice(list(meta))]
    elif op == 5:
        meta[rng.choice(["extra", "", "format "])] = "1"
    elif op == 6:
        meta[rng.choice(list(meta) or ["format"])] = rng.choice([1, None, ["a"], {"a": "b"}, 1.5])
    else:
        h["__metadata__"] = rng.choice([None, [], "x", 3])
    return join(h, body)


def m_header_whole(rng, raw, h, body):
    hdr = rng.choice(
        [
            b"{}",
            b"[]",
            b"null",
            b"{",
            b"",
            b"\xff\xfe{}",
            b'{"a":1}',
            b"{" + b" " * 7,
            b'{"__metadata__":{}}',
            bytes(rng.randrange(256) for _ in range(40)),
        ]
    )
    return struct.pack("<Q", len(hdr)) + hdr + body


def m_values(rng, raw, h, body):
    n = struct.unpack("<Q", raw[:8])[0]
    b = bytearray(raw)
    vals = [math.nan, math.inf, -math.inf, 3.0e38, -3.4e38, 1e-45, 1e30, -0.0]
    for _ in range(rng.randint(1, 3)):
        i = 8 + n + 4 * rng.randrange(len(body) // 4)
        b[i : i + 4] = struct.pack("<f", rng.choice(vals))
    return bytes(b)


def m_random(rng, raw, h, body):
    size = rng.choice([0, 1, 7, 8, 9, 16, 100, 1000, rng.randrange(4000)])
    data = bytes(rng.randrange(256) for _ in range(size))
    prefix = rng.choice(
        [
            b"",
            b"",
            b"\x80\x04",
            b"\x80\x02",
            b"PK\x03\x04",
            b"\x00" * 8,
            struct.pack("<Q", max(0, size - 8)) + b"{",
        ]
    )
    return prefix + data


def m_pickle(rng, raw, h, body):
    payload = pickle.dumps({"state_dict": [1.0, 2.0]}, protocol=rng.choice([0, 1, 2, 4, 5]))
    return payload if rng.random() < 0.7 else struct.pack("<Q", len(payload)) + payload


GRAPH_OPS = [
    "x",
    "sigma",
    "const",
    "scalar",
    "linear",
    "act",
    "sin",
    "log",
    "pow",
    "add",
    "div",
    "cat",
    "slice",
    "layer_norm",
    "conv",
    "",
    3,
    None,
]
WEIRD_ATTRS = [0, 1, -1, 2, 7, 1e9, -1e-9, 1.5, None, True, "silu", "mish", [], {}, "1", 1e400]


def m_graph(rng, raw, h, body):
    """Edits the graph: ops, edges (cycles, self-loops, forward and out-of-range inputs),
    attributes, node order and count, dim."""
    meta = h.get("__metadata__", {})
    if not isinstance(meta, dict) or not isinstance(meta.get("graph"), str):
        return m_metadata(rng, raw, h, body)
    g = json.loads(meta["graph"])
    k = rng.randrange(len(g))
    op = rng.randrange(9)
    if op == 0:
        g[k]["op"] = rng.choice(GRAPH_OPS)
    elif op == 1:
        g[k]["in"] = [rng.randrange(-2, len(g) + 2) for _ in range(rng.randrange(4))]
    elif op == 2:
        g[k]["in"] = [k] if rng.random() < 0.5 else [len(g) - 1]  # a self-loop or a cycle
    elif op == 3:
        key = rng.choice(["name", "exponent", "start", "stop", "eps", "value", "extra", "in", "op"])
        g[k][key] = rng.choice(WEIRD_ATTRS)
    elif op == 4:
        del g[k]
    elif op == 5:
        g.insert(rng.randrange(len(g) + 1), dict(g[k]))
    elif op == 6:
        j = rng.randrange(len(g))
        g[k], g[j] = g[j], g[k]
    elif op == 7:
        meta["dim"] = rng.choice(WEIRD_META)
    else:
        g = rng.choice([[], {}, [None], [g[0]] * 20000, "x"])
    meta["graph"] = json.dumps(g)
    return join(h, body)


MUTATORS = [
    m_bitflip,
    m_byteset,
    m_header_byte,
    m_truncate,
    m_extend,
    m_header_len,
    m_dtype,
    m_shape,
    m_offsets,
    m_tensors,
    m_metadata,
    m_header_whole,
    m_values,
    m_random,
    m_pickle,
]


def mutate(case, bases, graphs=False):
    """The file bytes of fuzz case `case` and the names of the mutations applied (with
    graphs: format-2 bases, a third of the mutations editing the graph itself)."""
    rng = random.Random(SEED * 1_000_003 + case + (7_777_777 if graphs else 0))
    raw = rng.choice(bases)
    names = []
    for _ in range(1 if rng.random() < 0.8 else 2):
        fn = m_graph if graphs and rng.random() < 1 / 3 else rng.choice(MUTATORS)
        try:
            h, body = split(raw)
            if not isinstance(h, dict):
                raise ValueError("header is not an object")
        except Exception:  # an earlier mutation broke the header: byte-level mutations only
            fn = rng.choice([m_bitflip, m_byteset, m_truncate, m_extend, m_random])
            h, body = {}, raw
        if not raw:
            fn = m_random
        if fn in (m_dtype, m_shape, m_offsets, m_tensors) and not _tensor_keys(h):
            fn = m_metadata
        if fn is m_values and len(body) < 4:
            fn = m_bitflip
        try:
            out = fn(rng, raw, h, body)
        except Exception:  # the mutation itself did not apply to this (already odd) file
            fn = m_random
            out = fn(rng, raw, h, body)
        raw = out
        names.append(fn.__name__[2:])
    return raw, "+".join(names)


def check_loaded(w):
    """A file that loads must give working Weights. Returns None if fine, else a problem."""
    if not isinstance(w, gensamp.Weights):
        return f"load returned {type(w).__name__}"
    if w.graph is not None:
        x = np.linspace(-1, 1, 3 * w.dim, dtype=np.float32).reshape(3, w.dim)
        try:
            y = w.score(x, 0.5 if w.conditioned else None)
        except ValueError as exc:  # e.g. log of a negative constant: refused per level
            return None if "not finite" in str(exc) else f"score raised ValueError: {exc}"
        if y.shape != (3, w.dim):
            return f"score gave shape {y.shape}, expected (3, {w.dim})"
        return None
    x = np.linspace(-1, 1, 3 * w.input_dim, dtype=np.float32).reshape(3, w.input_dim)
    if w.conditioned:
        x[:, -1] = 0.5
    y = w.forward(x)
    if y.shape != (3, w.output_dim):
        return f"forward gave shape {y.shape}, expected (3, {w.output_dim})"
    big = max(float(np.max(np.abs(a))) for pair in w.layers for a in pair)
    if not np.all(np.isfinite(y)) and big < 1e3:
        return f"forward is not finite although every weight is below 1e3 (max {big:.3g})"
    if w.role == "vae_decoder":  # the engine's sampler reads the likelihood and the prior too
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", gensamp.DivergenceWarning)
            s = gensamp.vae_sample(w, 5, seed=1)
        if s.shape != (5, w.dim):
            return f"vae_sample gave shape {s.shape}, expected (5, {w.dim})"
        if w.likelihood != "gaussian" and np.any((s < 0) | (s > 1)):
            return f"a {w.likelihood} decoder sampled values outside [0, 1]"
    return None


def fuzz(first, count, workdir, progress_file=None, graphs=False):
    bases = []
    for i, w in enumerate(graph_bases() if graphs else base_weights()):
        p = os.path.join(workdir, f"base{i}.safetensors")
        w.save(p)
        bases.append(Path(p).read_bytes())
    path = os.path.join(workdir, "case.safetensors")
    outcomes = {"loaded": 0, "ValueError": 0}
    by_mutation = {}
    reasons = {}
    problems = []
    start = time.perf_counter()
    for case in range(first, first + count):
        raw, how = mutate(case, bases, graphs)
        if progress_file:
            with open(progress_file, "w") as fh:
                fh.write(f"{case} {how}")
        with open(path, "wb") as fh:
            fh.write(raw)
        stats = by_mutation.setdefault(how, [0, 0])
        try:
            w = gensamp.load(path)
        except ValueError as exc:
            outcomes["ValueError"] += 1
            stats[1] += 1
            msg = str(exc).split("not a valid gensamp weights file: ")[-1]
            key = msg.split(":")[0][:50] if "Error" in msg.split(":")[0] else msg[:40]
            reasons[key] = reasons.get(key, 0) + 1
            if not str(exc).startswith(path):
                problems.append(dict(case=case, how=how, problem=f"message lacks the path: {exc}"))
            continue
        except BaseException as exc:  # noqa: BLE001 - the contract allows only ValueError
            problems.append(dict(case=case, how=how, problem=f"{type(exc).__name__}: {exc}"[:300]))
            continue
        outcomes["loaded"] += 1
        stats[0] += 1
        try:
            bad = check_loaded(w)
        except BaseException as exc:  # noqa: BLE001
            bad = f"forward raised {type(exc).__name__}: {exc}"
        if bad:
            problems.append(dict(case=case, how=how, problem=bad[:300]))
    return dict(
        cases=count,
        outcomes=outcomes,
        problems=problems[:20],
        n_problems=len(problems),
        by_mutation=by_mutation,
        reasons=reasons,
        seconds=time.perf_counter() - start,
    )


@pytest.mark.parametrize("graphs", [False, True], ids=["format1", "format2"])
def test_fuzzed_weight_files_never_crash(tmp_path, graphs):
    progress = tmp_path / "progress.txt"
    code = (
        f"import json, sys; sys.path.insert(0, {str(TESTS)!r}); import test_fuzz_loader as t; "
        f"print(json.dumps(t.fuzz(0, {N_CASES}, {str(tmp_path)!r}, {str(progress)!r}, {graphs})))"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([PYTHON_DIR, str(TESTS)]))
    try:
        p = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the fuzzing loop hung; last case started: {progress.read_text()}")
    last = progress.read_text() if progress.exists() else "?"
    assert p.returncode == 0, (
        f"the loader crashed the interpreter (status {p.returncode}) on "
        f"case {last}; reproduce: FUZZ_CASE=<case> FUZZ_GRAPHS={int(graphs)} python "
        f"tests/test_fuzz_loader.py\n{p.stderr[-3000:]}"
    )
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["cases"] >= 10_000
    assert r["n_problems"] == 0, json.dumps(r["problems"], indent=1)
    # The harness really exercised both paths: plenty of files refused, and mutations that leave
    # a valid file (e.g. a bit flip in a weight's mantissa) still load.
    assert r["outcomes"]["ValueError"] > 0.5 * N_CASES
    assert r["outcomes"]["loaded"] > 0.02 * N_CASES
    assert len(r["by_mutation"]) >= len(MUTATORS) + graphs
    assert sum(r["outcomes"].values()) == N_CASES


# ---- named corruptions ---------------------------------------------------------------------------


@pytest.fixture
def good(tmp_path):
    p = tmp_path / "good.safetensors"
    base_weights()[1].save(p)
    return p


def _rewrite(path, header_fn=None, body_fn=None, raw_fn=None):
    raw = Path(path).read_bytes()
    if raw_fn:
        Path(path).write_bytes(raw_fn(raw))
        return
    h, body = split(raw)
    if header_fn:
        header_fn(h)
    if body_fn:
        body = body_fn(h, body)
    Path(path).write_bytes(join(h, body))


def _resave(fn):
    """Edits the tensors/metadata and writes a well-formed safetensors file again."""

    def raw_fn(raw):
        from safetensors.numpy import load, save

        tensors = load(raw)
        meta = split(raw)[0]["__metadata__"]
        fn(tensors, meta)
        return save(tensors, metadata=meta)

    return dict(raw_fn=raw_fn)


def _set_value(name, index, value):
    def fn(h, body):
        start = h[name]["data_offsets"][0] + 4 * index
        return body[:start] + struct.pack("<f", value) + body[start + 4 :]

    return fn


def _meta(**kv):
    return lambda h: h["__metadata__"].update(kv)


BAD_FILES = [
    ("truncated", dict(raw_fn=lambda r: r[:-7]), "not a valid gensamp weights file"),
    ("truncated-in-header", dict(raw_fn=lambda r: r[:40]), "does not fit"),
    ("empty", dict(raw_fn=lambda r: b""), "too short"),
    ("4 bytes", dict(raw_fn=lambda r: b"abcd"), "too short"),
    (
        "bit flip in header",
        dict(raw_fn=lambda r: r[:20] + bytes([r[20] ^ 0x40]) + r[21:]),
        "not a valid gensamp weights file",
    ),
    (
        "oversized header length",
        dict(raw_fn=lambda r: struct.pack("<Q", 2**63) + r[8:]),
        "does not fit",
    ),
    ("header length 0", dict(raw_fn=lambda r: struct.pack("<Q", 0) + r[8:]), "does not fit"),
    (
        "header > 100 MB claimed",
        dict(raw_fn=lambda r: struct.pack("<Q", 100_000_001) + r[8:]),
        "does not fit",
    ),
    (
        "header not JSON",
        dict(raw_fn=lambda r: struct.pack("<Q", 4) + b"abcd" + r[8:]),
        "not a JSON object",
    ),
    ("header JSON list", dict(raw_fn=lambda r: struct.pack("<Q", 2) + b"[]"), "not a JSON object"),
    (
        "random bytes",
        dict(raw_fn=lambda r: bytes(random.Random(1).randrange(256) for _ in range(500))),
        "not a valid gensamp weights file",
    ),
    (
        "dtype relabelled F64",
        dict(header_fn=lambda h: h["layers.0.weight"].update(dtype="F64")),
        "not a valid gensamp weights file",
    ),
    (
        "float64 tensor",
        _resave(
            lambda t, m: t.update({"layers.0.weight": t["layers.0.weight"].astype(np.float64)})
        ),
        "layers.0.weight has dtype float64, expected float32",
    ),
    (
        "float16 tensor",
        _resave(lambda t, m: t.update({"norm.shift": t["norm.shift"].astype(np.float16)})),
        "norm.shift has dtype float16",
    ),
    (
        "int32 tensor",
        _resave(lambda t, m: t.update({"layers.1.bias": t["layers.1.bias"].astype(np.int32)})),
        "layers.1.bias has dtype int32",
    ),
    (
        "wrong shape (transposed)",
        dict(header_fn=lambda h: h["layers.1.weight"].update(shape=[6, 3])),
        "b has 3 entries but W has 6 rows",
    ),
    (
        "wrong shape (layers do not chain)",
        _resave(lambda t, m: t.update({"layers.1.weight": np.ones((3, 5), np.float32)})),
        r"layers\[1\] takes 5 inputs",
    ),
    (
        "wrong shape (shift length)",
        _resave(lambda t, m: t.update({"norm.shift": np.ones(5, np.float32)})),
        "shift must have length d=3",
    ),
    (
        "wrong shape (1-D weight)",
        dict(header_fn=lambda h: h["layers.1.weight"].update(shape=[18])),
        "2 dimension",
    ),
    ("NaN weight", dict(body_fn=_set_value("layers.0.weight", 3, math.nan)), "contains NaN or Inf"),
    ("Inf bias", dict(body_fn=_set_value("layers.1.bias", 0, math.inf)), "contains NaN or Inf"),
    ("NaN scale", dict(body_fn=_set_value("norm.scale", 1, math.nan)), "contains NaN or Inf"),
    ("zero scale", dict(body_fn=_set_value("norm.scale", 1, 0.0)), "scale must be > 0"),
    ("version 3", dict(header_fn=_meta(format_version="3")), "format_version '3' is not supported"),
    (
        "version 2 without graph or likelihood",
        dict(header_fn=_meta(format_version="2")),
        r"lacks \['dim', 'graph'\] \(format 2 is a graph: dim, graph; or a VAE decoder",
    ),
    ("version '\u00b2'", dict(header_fn=_meta(format_version="\u00b2")), "format_version"),
    (
        "version missing",
        dict(header_fn=lambda h: h["__metadata__"].pop("format_version")),
        "format_version",
    ),
    ("other format", dict(header_fn=_meta(format="pytorch")), "format"),
    ("no metadata", dict(header_fn=lambda h: h.pop("__metadata__")), "format"),
    ("n_layers '\u00b2'", dict(header_fn=_meta(n_layers="\u00b2")), "n_layers"),
    ("n_layers 10**40", dict(header_fn=_meta(n_layers="1" + "0" * 40)), "n_layers"),
    ("missing tensor", _resave(lambda t, m: t.pop("layers.1.bias")), "missing or unexpected"),
    (
        "extra tensor",
        _resave(lambda t, m: t.update({"evil": np.ones(2, np.float32)})),
        "missing or unexpected",
    ),
    ("shift without scale", _resave(lambda t, m: t.pop("norm.scale")), "missing or unexpected"),
    (
        "tensor data out of bounds",
        dict(
            header_fn=lambda h: h["layers.1.bias"].update(
                data_offsets=[h["layers.1.bias"]["data_offsets"][0], 10**6]
            )
        ),
        "not a valid gensamp",
    ),
    ("unknown activation", dict(header_fn=_meta(activations='["mish"]')), "unknown activation"),
    ("bad sigma_input", dict(header_fn=_meta(sigma_input="sqrt")), "sigma_input"),
    ("bad role", dict(header_fn=_meta(role="gan")), "role"),
    ("sampler T = 1e400", dict(header_fn=_meta(sampler='{"T": 1e400}')), "OverflowError|stored T"),
    (
        "sampler sigmas increasing",
        dict(header_fn=_meta(sampler='{"sigmas": [1, 2]}')),
        "decreasing",
    ),
    ("sampler eps NaN", dict(header_fn=_meta(sampler='{"eps": NaN}')), "stored eps"),
    (
        "info nested 100k deep",
        dict(header_fn=_meta(info="[" * 100_000 + "]" * 100_000)),
        "not valid JSON",
    ),
    (
        "info with a 5000-digit number",
        dict(header_fn=_meta(info='{"x": ' + "9" * 5000 + "}")),
        "not valid JSON",
    ),
    ("divide_by_sigma 'yes'", dict(header_fn=_meta(divide_by_sigma="yes")), "divide_by_sigma"),
    (
        "overlapping tensors",
        dict(
            header_fn=lambda h: h["layers.1.bias"].update(
                data_offsets=h["layers.0.bias"]["data_offsets"]
            )
        ),
        "not a valid gensamp weights file",
    ),
]


@pytest.mark.parametrize("name,edit,match", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_corrupted_file_is_a_clear_value_error(good, name, edit, match):
    _rewrite(good, **edit)
    with pytest.raises(ValueError, match=match) as info:
        gensamp.load(good)
    assert str(info.value).startswith(str(good)), "the message names the file"


def test_torch_checkpoint_is_refused_without_unpickling(tmp_path):
    """A pickle whose loading would run code: refused by its first bytes, never unpickled."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for proto in (2, 4, 5):
        p = tmp_path / f"evil{proto}.safetensors"
        p.write_bytes(pickle.dumps(Evil(), protocol=proto))
        with pytest.raises(ValueError, match="pickle"):
            gensamp.load(p)
    import torch

    q = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2), "evil": Evil()}, q)
    with pytest.raises(ValueError, match="pickle/zip"):
        gensamp.load(q)
    assert not marker.exists(), "loading executed code from the file"


@pytest.mark.parametrize("prefix", [b"\x80", b"PK"])
def test_valid_file_whose_header_length_looks_like_a_pickle_loads(tmp_path, prefix):
    """The 8-byte header length can begin with 0x80 (pickle's first byte) or 'PK' (zip's):
    such a valid file must load, not be refused as a pickle."""
    target = prefix[0] + (prefix[1] << 8 if len(prefix) > 1 else 0)
    W = np.ones((2, 2), np.float32)
    b = np.zeros(2, np.float32)
    p = tmp_path / "w.safetensors"

    def hlen(pad):
        gensamp.Weights([(W, b)], [], info={"p": "x" * pad}).save(p)
        return struct.unpack("<Q", p.read_bytes()[:8])[0]

    mod = 256 if len(prefix) == 1 else 65536
    h0 = hlen(0)
    target += mod * max(0, -(-(h0 - target) // mod))  # the first such length >= h0
    start = max(0, target - h0 - 16)  # the header grows one byte per character
    for pad in range(start, start + 64):
        if hlen(pad) == target:
            break
    else:
        pytest.fail("could not hit the header length")
    assert p.read_bytes().startswith(prefix)
    w = gensamp.load(p)
    assert np.array_equal(w.layers[0][0], W)


def test_special_files_are_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    result = {}

    def attempt():
        try:
            gensamp.load(fifo)
        except ValueError as exc:
            result["msg"] = str(exc)

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():  # unblock the reader so the thread can end
        with open(fifo, "wb"):
            pass
        t.join(5)
        pytest.fail("gensamp.load blocked on a named pipe")
    assert "not a regular file" in result["msg"]
    with pytest.raises(ValueError, match="not a regular file"):
        gensamp.load(tmp_path)  # a directory
    if os.path.exists("/dev/zero"):
        with pytest.raises(ValueError, match="not a regular file"):
            gensamp.load("/dev/zero")
    with pytest.raises(ValueError, match="cannot read"):
        gensamp.load(tmp_path / "missing.safetensors")
    with pytest.raises(TypeError, match="path must be a str"):
        gensamp.load(b"bytes-path")


def test_oversized_file_is_refused_before_reading(tmp_path):
    p = tmp_path / "huge.safetensors"
    with open(p, "wb") as fh:  # sparse: takes no disk space
        fh.write(struct.pack("<Q", 100) + b"{")
        fh.truncate(3 << 30)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="larger than any gensamp weights file"):
        gensamp.load(p)
    assert time.perf_counter() - start < 1.0


def test_sampler_given_a_path_to_a_bad_file_raises_value_error(good):
    _rewrite(good, body_fn=_set_value("layers.0.weight", 0, math.nan))
    with pytest.raises(ValueError, match="contains NaN or Inf"):
        gensamp.annealed_langevin(str(good), n=4)


def test_huge_but_finite_weights_load_and_divergence_is_reported(good):
    """A flipped exponent bit can make a weight 1e38: the file is still well-formed, so it loads;
    sampling then reports the chains it drives to Inf."""
    _rewrite(good, body_fn=_set_value("layers.0.weight", 0, 3e38))
    w = gensamp.load(good)
    with pytest.warns(gensamp.DivergenceWarning):
        gensamp.annealed_langevin(w, x0=np.full((8, 3), 5.0), seed=1)


if __name__ == "__main__":  # reproduce one case: FUZZ_CASE=123 [FUZZ_GRAPHS=1] python tests/...
    import tempfile

    case = int(os.environ.get("FUZZ_CASE", "0"))
    with tempfile.TemporaryDirectory() as d:
        print(json.dumps(fuzz(case, 1, d, graphs=os.environ.get("FUZZ_GRAPHS") == "1"), indent=1))
