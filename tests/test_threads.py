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


def _splits(n):
    """Cuts of [0, n): one piece, halves at a tile boundary, ragged pieces, single chains."""
    return [[0, n], [0, 64, n], [0, 1, 2, 65, 200, n - 1, n], [0, 37, 100, 101, 290, n]]


@pytest.mark.parametrize("model", ["mlp", "mixture"])
def test_chain_offset_slices_are_rows_of_the_full_run(model):
    """Chains [a, b) run with chain_offset=a are rows a..b-1 of the whole run, bit for bit, for
    any split, thread count and tiling: default starting points, noise, trajectory, denoising."""
    w = _ncsn() if model == "mlp" else gensamp.GaussianMixture([1, 4], [[-3] * 3, [3] * 3])
    sig = np.geomspace(2, 0.1, 3)
    n = 333
    full, traj = gensamp.annealed_langevin(
        w, sig, 1e-3, 20, n=n, seed=5, threads=2, denoise=True, record_every=7
    )
    for i, cuts in enumerate(_splits(n)):
        for a, b in zip(cuts[:-1], cuts[1:]):
            run = dict(n=b - a, seed=5, denoise=True, record_every=7, chain_offset=a)
            run.update(threads=1 + (a + i) % 2, tile=(16, 64, 40, 1000)[i])
            x, t = gensamp.annealed_langevin(w, sig, 1e-3, 20, **run)
            assert np.array_equal(x, full[a:b]), f"split {cuts}: [{a}, {b})"
            assert np.array_equal(t, traj[:, a:b]), f"split {cuts}: [{a}, {b}) trajectory"
    plain = gensamp.langevin(w, 1e-3, 30, n=n, seed=8, sigma=0.5, threads=2)
    for a, b in zip(_splits(n)[2][:-1], _splits(n)[2][1:]):
        part = gensamp.langevin(w, 1e-3, 30, n=b - a, seed=8, sigma=0.5, chain_offset=a)
        assert np.array_equal(part, plain[a:b])


def test_chain_offset_slices_of_vae_sampling():
    torch = pytest.importorskip("torch")
    net = random_mlp(3, 48, "silu", seed=6)
    net[-1] = torch.nn.Linear(48, 8)  # latent 3 -> [mean | log-variance] for d = 4
    dec = gensamp.export(net, role="vae_decoder")
    n = 333
    full = gensamp.vae_sample(dec, n, seed=2, threads=2)
    for i, cuts in enumerate(_splits(n)):
        for a, b in zip(cuts[:-1], cuts[1:]):
            part = gensamp.vae_sample(
                dec, b - a, seed=2, threads=1 + i % 2, tile=(16, 64, 40, 1000)[i], chain_offset=a
            )
            assert np.array_equal(part, full[a:b]), f"split {cuts}: [{a}, {b})"


def test_chain_offset_reaches_the_top_of_the_64_bit_range():
    """Chain indices above 2^32 and up to 2^64 - 1 use both counter words; a run that ends there
    is rows of the run that starts a little earlier."""
    gm = gensamp.GaussianMixture([1, 4], [[-3] * 2, [3] * 2])
    for start in (2**32 - 50, 2**63 - 50, 2**64 - 100):
        full = gensamp.annealed_langevin(
            gm, [2.0, 0.1], 1e-3, 10, n=100, seed=1, chain_offset=start
        )
        tail = gensamp.annealed_langevin(
            gm, [2.0, 0.1], 1e-3, 10, n=30, seed=1, chain_offset=start + 70
        )
        assert np.array_equal(tail, full[70:])
        assert np.all(np.isfinite(full)) and len(np.unique(full[:, 0])) == 100


def test_divergence_reports_rows_and_global_chains():
    gm = gensamp.GaussianMixture([1], [[0.0]])
    x0 = np.zeros((5, 1), np.float32)
    x0[3] = 1e30
    with pytest.warns(gensamp.DivergenceWarning) as rec:
        gensamp.langevin(gm, 1e6, 40, x0=x0, seed=1, chain_offset=1000)
    w = rec[0].message
    assert w.count == 5 and list(w.indices) == [0, 1, 2, 3, 4]
    assert w.chains == [1000, 1001, 1002, 1003, 1004]
    assert "rows 0, 1, 2, 3, 4; chains 1000, 1001" in str(w)


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
