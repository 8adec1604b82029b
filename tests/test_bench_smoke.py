"""The bench scripts run end to end (tiny sizes); their targets are checked by the full runs."""

import importlib.util
import json
import os
import subprocess
import sys

import gensamp
import pytest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench")


def _bench_module(name):
    # Loaded by path, not by putting bench/ on sys.path: a bench script's name would otherwise
    # shadow any package of that name for every test collected after this one.
    spec = importlib.util.spec_from_file_location(f"gensamp_bench_{name}", f"{BENCH}/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = _bench_module("common")  # the probes' build helper

needs_compiler = pytest.mark.skipif(common.compiler() is None, reason="no C++ compiler")


def _run(script, *args):
    return subprocess.run(
        [sys.executable, os.path.join(BENCH, script), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout


def test_throughput_smoke(tmp_path):
    out = _run("throughput.py", "--smoke", "--out", str(tmp_path))
    data = json.loads((tmp_path / "throughput_smoke.json").read_text())
    assert data["sgemm_gflops"] > 0 and "speed-up vs torch" in out
    # The FMA peak bounds any kernel doing the counted FLOPs; passing it by a wide margin would
    # mean the FLOP accounting (or the peak kernel) is wrong. The margin covers clock drift
    # between the two measurements.
    peak = data["fma_peak_gflops"]
    assert peak > 0 and "FP32 FMA peak" in out
    assert all(r["cpp_gflops"] <= 1.25 * peak for r in data["rows"])
    assert {r["n"] for r in data["rows"]} == {1, 100, 1000}
    for r in data["rows"]:
        assert r["cpp_chain_steps_s"] > 0 and r["torch_chain_steps_s"] > 0
    assert (tmp_path / "throughput_smoke.png").stat().st_size > 10_000


def test_scaling_and_memory_smoke(tmp_path):
    _run("scaling.py", "--smoke", "--out", str(tmp_path))
    data = json.loads((tmp_path / "scaling_smoke.json").read_text())
    rows = data["rows"]
    # One row per thread count 1..cores, and the derived columns follow from the measured rates
    # (speed-up over the one-thread row, efficiency per thread), so the table and its targets
    # report what was timed.
    assert [r["threads"] for r in rows] == list(range(1, (os.cpu_count() or 1) + 1))
    one = rows[0]["chain_steps_s"]
    for r in rows:
        assert r["chain_steps_s"] > 0 and r["T"] >= 1 and r["n"] == 2000
        assert r["speedup"] == pytest.approx(r["chain_steps_s"] / one, rel=1e-12)
        assert r["efficiency"] == pytest.approx(r["speedup"] / r["threads"], rel=1e-12)
    two = [r for r in rows if r["threads"] == 2]
    assert [t["measured"] for t in data["targets"]] == [r["speedup"] for r in two]
    _run("memory.py", "--n", "200000", "--out", str(tmp_path))
    mem = json.loads((tmp_path / "memory.json").read_text())
    # Per-tile buffers only: nothing proportional to N beyond the output itself.
    assert mem["ok"] and mem["output_bytes"] == 200000 * 2 * 4


@needs_compiler
def test_fma_peak_probe():
    """bench/probes/peak.cpp, built by bench/common.py: a positive rate, on the engine's SIMD
    path, and refused arguments as ValueError."""
    from gensamp import simd_level

    assert common.fma_peak(1, 0.01) > 0
    out = subprocess.run(
        [common.build_probe("peak"), "1", "0.01"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[1] == simd_level()
    for bad in ((0, 0.1), (1, 0.0), (1, 61.0), (1, float("nan")), ("x", 0.1)):
        with pytest.raises(ValueError):
            common.fma_peak(*bad)


@needs_compiler
def test_relu_skip_probe_matches_the_engine_kernel():
    """The probe behind the README's "the engine does not skip ReLU zeros": its skipping
    kernels must reproduce the engine kernel's bits, or its timings would compare different work."""
    exe = common.build_probe("relu_skip")
    r = subprocess.run([exe, "128", "48", "32", "0.5"], capture_output=True, text=True, timeout=120)
    if r.returncode == 77:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("(same bits)") == 3 and "DIFFERENT" not in r.stdout
    assert subprocess.run([exe, "100", "48", "32", "0.5"], capture_output=True).returncode == 2


def test_samplers_smoke(tmp_path):
    """bench/samplers.py end to end at tiny sizes: every method at each budget, next to the
    floor of exact draws, the annealed-Langevin sweep, and a (barely) trained NCSN."""
    _run("samplers.py", "--smoke", "--out", str(tmp_path))
    data = json.loads((tmp_path / "samplers_smoke.json").read_text())
    for part in data["exact"].values():
        assert part["floor"]["dist"] > 0
        got = {(r["method"], r["steps"]) for r in part["rows"]}
        assert got == {(m, s) for m in gensamp.methods.METHODS for s in (10, 50)}
        for r in part["rows"]:
            assert r["score_evals"] <= r["steps"] and r["dist"] > 0 and r["seconds"] > 0
    assert {r["steps"] for r in data["ald_sweep"]} == {10, 50}
    model = data["trained"]["models"][0]
    assert model["default"]["method"] == data["default"]["method"]
    assert model["ald_3000"]["dist"] > 0
    for key in ("continuous", "levels_only"):
        assert set(data["continuous"][key]) == {"cas_100", "heun_49", "ald_3001"}
    assert data["trained_2d"]["ncsn_mixture_2d"]["mean"]["floor"] > 0
    assert (tmp_path / "samplers_smoke.png").stat().st_size > 10_000
