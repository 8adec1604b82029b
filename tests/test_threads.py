"""Results depend only on (seed, chain, step): not on threads, tiling or the CPU's SIMD level."""

import os
import subprocess
import sys

import gensamp
import numpy as np
import pytest
from conftest import random_mlp


def _ncsn():
    return gensamp.export(
        random_mlp(3, 96, "silu", "log_sigma", seed=1),
        sigma_input="log_sigma",
        divide_by_sigma=True,
    )


@pytest.mark.parametrize("model", ["mlp", "mixture"])
def test_thread_count_invariance(model):
    w = _ncsn() if model == "mlp" else gensamp.GaussianMixture([1, 4], [[-3] * 3, [3] * 3])
    sig = np.geomspace(2, 0.1, 5)
    runs = [
        gensamp.annealed_langevin(w, sig, 1e-3, 40, n=1001, seed=7, threads=t, record_every=50)
        for t in (1, 2, 7)
    ]
    for x, traj in runs[1:]:
        assert np.array_equal(x, runs[0][0]) and np.array_equal(traj, runs[0][1])


def test_tiling_invariance():
    w = _ncsn()
    sig = np.geomspace(2, 0.1, 3)
    base = gensamp.annealed_langevin(w, sig, 1e-3, 30, n=333, seed=9, threads=1, tile=16)
    for tile in (1, 40, 64, 100, 1000):
        out = gensamp.annealed_langevin(w, sig, 1e-3, 30, n=333, seed=9, threads=2, tile=tile)
        assert np.array_equal(out, base), f"tile={tile}"
    # Chain j is chain j whatever n is: the first 100 of 333 chains equal a run of 100.
    part = gensamp.annealed_langevin(w, sig, 1e-3, 30, n=100, seed=9, threads=2)
    assert np.array_equal(part, base[:100])


def test_seeds_differ():
    w = _ncsn()
    a = gensamp.annealed_langevin(w, [1.0, 0.5], 1e-2, 10, n=50, seed=1)
    b = gensamp.annealed_langevin(w, [1.0, 0.5], 1e-2, 10, n=50, seed=2)
    assert not np.any(a == b)


SCRIPT = """
import sys, numpy as np, gensamp
sys.path.insert(0, {tests!r})
from conftest import random_mlp
outs = []
for act in (
    "relu", "leaky_relu", "gelu", "silu", "tanh", "softplus", "elu", "sigmoid", "gelu_tanh"
):
    w = gensamp.export(random_mlp(5, 72, act, "sigma", seed=4), sigma_input="sigma")
    for n in (90, 7):  # 7 chains take the narrow (output-vectorised) kernels
        y = gensamp.annealed_langevin(w, [1.0, 0.3, 0.1], 1e-3, 40, n=n, seed=3, threads=2)
        outs.append(y.ravel())
np.save({out!r}, np.concatenate(outs))
print(gensamp.simd_level())
"""


def test_simd_levels_are_bit_identical(tmp_path):
    """Every SIMD path computes the same FMA chain: scalar, AVX2 and AVX-512 agree bit for bit."""
    results = {}
    for level in ("scalar", "avx2", "native"):
        out = tmp_path / f"{level}.npy"
        env = dict(os.environ, GENSAMP_SIMD=level)
        got = subprocess.run(
            [sys.executable, "-c", SCRIPT.format(tests=os.path.dirname(__file__), out=str(out))],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        results[got] = np.load(out)
    assert "scalar" in results
    ref_x = results["scalar"]
    for name, x in results.items():
        assert np.array_equal(x, ref_x), f"{name} differs from scalar"
