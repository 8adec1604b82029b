"""Reliability, round 2 (Python side): files changing under load, FIFO swaps, immutability,
float32 survival, typed metadata, pickling, save errors, bounded set-up memory, thread caps."""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys
import textwrap
import tracemalloc

import gensamp
import numpy as np
import pytest
from gensamp import _resources, schedules


def _net(seed=0, d=2, h=32):
    rng = np.random.default_rng(seed)
    layers = [
        (rng.normal(size=(h, d + 1)) * 0.3, rng.normal(size=h) * 0.1),
        (rng.normal(size=(d, h)) * 0.1, np.zeros(d)),
    ]
    return gensamp.Weights(
        layers,
        ["silu"],
        sigma_input="log_sigma",
        divide_by_sigma=True,
        sampler={"sigmas": [3.0, 1.0, 0.3], "eps": 0.01, "T": 10},
    )


def _run(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# ---- 1, 2: the file changes, or the path is swapped, while load reads it ---------------------

CHANGING_FILE = """
    import os, sys, threading, numpy as np, gensamp
    path = sys.argv[1]
    rng = np.random.default_rng(0)
    big = gensamp.Weights([(rng.normal(size=(1024, 1024)), np.zeros(1024)),
                           (rng.normal(size=(1024, 1024)), np.zeros(1024)),
                           (rng.normal(size=(1024, 1024)), np.zeros(1024))], ["relu", "relu"])
    data = big.to_bytes()
    stop = False
    def churn():
        i = 0
        while not stop:
            with open(path, "r+b" if os.path.exists(path) else "wb") as fh:
                if i % 2:
                    fh.truncate(len(data) // (3 + i % 5))
                else:
                    fh.seek(0); fh.write(data)
            i += 1
    with open(path, "wb") as fh:
        fh.write(data)
    t = threading.Thread(target=churn); t.start()
    ok = bad = 0
    for _ in range(200):
        try:
            gensamp.load(path); ok += 1
        except ValueError:
            bad += 1
    stop = True; t.join()
    print(ok, bad)
"""


def test_a_file_truncated_while_loading_never_crashes(tmp_path):
    r = _run(CHANGING_FILE, str(tmp_path / "w.safetensors"), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]  # a mapped file would die of SIGBUS (-7)
    ok, bad = map(int, r.stdout.split())
    assert ok + bad == 200 and bad > 0  # the churn did hit some loads, each refused cleanly


FIFO_SWAP = """
    import os, sys, threading, gensamp
    folder = sys.argv[1]
    real, fifo, link = (os.path.join(folder, n) for n in ("real.safetensors", "pipe", "link"))
    os.mkfifo(fifo)
    os.symlink(real, link)
    stop = False
    def swap():
        while not stop:
            for target in (real, fifo):
                tmp = link + ".tmp"
                os.symlink(target, tmp)
                os.replace(tmp, link)
    t = threading.Thread(target=swap, daemon=True); t.start()
    outcomes = set()
    for _ in range(300):
        try:
            gensamp.load(link); outcomes.add("loaded")
        except ValueError as exc:
            outcomes.add("refused" if "not a regular file" in str(exc) else str(exc))
    stop = True
    print(sorted(outcomes))
"""


def test_a_path_swapped_for_a_fifo_never_blocks(tmp_path):
    _net().save(tmp_path / "real.safetensors")
    r = _run(FIFO_SWAP, str(tmp_path), timeout=120)  # a blocking open would hang to the timeout
    assert r.returncode == 0, r.stderr[-2000:]
    assert set(eval(r.stdout)) <= {"loaded", "refused"}


# ---- 4: thread counts ----------------------------------------------------------------------


def test_omp_num_threads_beyond_the_cap_is_capped():
    code = "from gensamp import _resources; print(_resources.resolve_threads(None))"
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "100000"},
    )
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == _resources.MAX_THREADS


def test_training_threads_are_bounded():
    from gensamp.learn import FitConfig

    with pytest.raises(ValueError, match=r"threads must be in \[1, 4096\]"):
        FitConfig(threads=10**6)


# ---- 6: set-up memory grows with the data, not its square -----------------------------------


def test_schedule_set_up_memory_is_bounded():
    u = np.random.default_rng(0).normal(size=(300_000, 1))
    tracemalloc.start()
    try:
        schedules.ncsn_defaults(u)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # 2.4 MB of data; the old all-candidates-at-once product needed ~1.2 GB here
    assert peak < 120 * 2**20, peak


# ---- 9: immutability -----------------------------------------------------------------------


def test_weights_cannot_be_changed_through_what_they_return():
    w = _net()
    s = w.sampler
    s["sigmas"].append(0.01)
    s["eps"] = 1.0
    assert w.sampler == {"sigmas": [3.0, 1.0, 0.3], "eps": 0.01, "T": 10}
    info = w.info
    info["x"] = 1
    assert "x" not in w.info
    W = w.layers[0][0]
    with pytest.raises(ValueError):
        W[0, 0] = 1.0
    with pytest.raises(ValueError):
        W.setflags(write=True)  # read-only for good, not just flagged


# ---- 10: values that do not survive float32 ------------------------------------------------


@pytest.mark.parametrize("eps", [1e-300, 1e-46, 1e39])
def test_eps_that_does_not_survive_float32_is_refused(eps, seed_mixture):
    with pytest.raises(ValueError, match="eps.*float32"):
        gensamp.langevin(seed_mixture, eps, 3, n=2)
    with pytest.raises(ValueError, match="eps.*float32"):
        gensamp.annealed_langevin(_net(), eps=eps, n=2)


def test_sigma_that_does_not_survive_float32_is_refused(seed_mixture):
    w = _net()
    with pytest.raises(ValueError, match="sigma.*float32"):
        w.score(np.zeros((2, 2)), 1e-300)
    with pytest.raises(ValueError, match="sigma.*float32"):
        gensamp.langevin(w, 0.01, 3, n=2, sigma=1e-40)
    with pytest.raises(ValueError, match=r"sigmas\[2\].*float32"):
        gensamp.annealed_langevin(w, [1.0, 1e-10, 1e-300], 0.01, 2, n=2)
    assert np.all(np.isfinite(w.score(np.zeros((2, 2)), 1e-30)))  # tiny but normal: fine


# ---- 11: silently dropped components, loosely typed metadata --------------------------------


def test_mixture_weights_beyond_float_range_are_refused_not_dropped():
    with pytest.raises(ValueError, match=r"component\(s\) \[1\] would get weight 0"):
        gensamp.GaussianMixture([1e308, 1e-20], [[0.0], [1.0]])
    m = gensamp.GaussianMixture([1e300, 1e-5], [[0.0], [1.0]])  # representable: kept
    assert m.weights[1] > 0


def _rewrite_meta(src, dst, **changes):
    data = src.read_bytes()
    hlen = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + hlen])
    header["__metadata__"].update(changes)
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    dst.write_bytes(len(new).to_bytes(8, "little") + new + data[8 + hlen :])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("sampler", json.dumps({"sigmas": {"1": 2}}), "stored sigmas must be a JSON list"),
        (
            "sampler",
            json.dumps({"sigmas": [3, 1], "eps": "0.1"}),
            "stored eps must be a JSON number",
        ),
        ("sampler", json.dumps({"T": 150.0}), "stored T must be a JSON integer"),
        ("sampler", json.dumps({"T": True}), "stored T must be a JSON integer"),
        ("format_version", "01", "format_version '01' is not supported"),
        ("n_layers", "02", "n_layers '02'"),
    ],
)
def test_stored_metadata_has_exactly_the_documented_types(tmp_path, key, value, message):
    src = tmp_path / "ok.safetensors"
    _net().save(src)
    bad = tmp_path / "bad.safetensors"
    _rewrite_meta(src, bad, **{key: value})
    with pytest.raises(ValueError, match=message):
        gensamp.load(bad)


# ---- 14: pickle and deepcopy after use --------------------------------------------------------


def test_weights_and_mixtures_pickle_and_deepcopy_after_use(seed_mixture):
    w = _net()
    x = gensamp.annealed_langevin(w, n=50, seed=3)  # builds the engine's copy
    y = gensamp.langevin(seed_mixture, 0.1, 20, n=50, seed=3)
    for clone in (pickle.loads(pickle.dumps(w)), copy.deepcopy(w)):
        assert repr(clone) == repr(w) and clone.sampler == w.sampler and clone.info == w.info
        for (W1, b1), (W2, b2) in zip(clone.layers, w.layers):
            np.testing.assert_array_equal(W1, W2)
            np.testing.assert_array_equal(b1, b2)
        np.testing.assert_array_equal(gensamp.annealed_langevin(clone, n=50, seed=3), x)
    for clone in (pickle.loads(pickle.dumps(seed_mixture)), copy.deepcopy(seed_mixture)):
        np.testing.assert_array_equal(clone.weights, seed_mixture.weights)
        np.testing.assert_array_equal(gensamp.langevin(clone, 0.1, 20, n=50, seed=3), y)
    full = gensamp.GaussianMixture([1, 2], [[0, 0], [3, 3]], covs=[np.eye(2), [[2, 0.5], [0.5, 1]]])
    clone = pickle.loads(pickle.dumps(full))
    np.testing.assert_array_equal(clone.covariances, full.covariances)


def test_unpickling_validates_the_bytes():
    payload = pickle.dumps(_net())
    corrupt = payload.replace(b"log_sigma", b"log_sigmb")  # inside the file's bytes
    assert corrupt != payload
    with pytest.raises(ValueError, match="not a valid gensamp weights file.*sigma_input"):
        pickle.loads(corrupt)


def test_a_spawn_pool_receives_models(seed_mixture):
    import multiprocessing as mp

    w = _net()
    with mp.get_context("spawn").Pool(1) as pool:
        out = pool.starmap(gensamp.annealed_langevin, [(w,)])
    np.testing.assert_array_equal(out[0], gensamp.annealed_langevin(w))


# ---- 15: save and load errors that name the path, briefly -----------------------------------


def test_save_into_a_directory_names_the_path(tmp_path):
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        _net().save(tmp_path)
    with pytest.raises(OSError, match="no-such-folder"):
        _net().save(tmp_path / "no-such-folder" / "w.safetensors")
    assert os.listdir(tmp_path) == []  # no temporary file left behind


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    _net(0).save(path)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        _net(1).save(path)
    assert path.read_bytes() == before  # the old file is intact
    assert os.listdir(tmp_path) == ["w.safetensors"]


def test_a_file_with_300000_tensors_gets_a_short_message(tmp_path):
    from safetensors.numpy import save_file

    tensors = {f"t{i}": np.zeros(0, np.float32) for i in range(300_000)}
    path = tmp_path / "many.safetensors"
    save_file(
        tensors,
        str(path),
        metadata={
            "format": "gensamp.weights",
            "format_version": "1",
            "n_layers": "1",
            "activations": "[]",
            "sigma_input": "none",
            "divide_by_sigma": "false",
            "role": "score",
            "sampler": "{}",
            "info": "{}",
        },
    )
    with pytest.raises(ValueError) as info:
        gensamp.load(path)
    assert len(str(info.value)) < 600
    assert "more" in str(info.value)
