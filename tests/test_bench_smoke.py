"""The bench scripts run end to end (tiny sizes); their targets are checked by the full runs."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from gensamp import _core

BENCH = os.path.join(os.path.dirname(__file__), "..", "bench")


def _run(script, *args):
    return subprocess.run([sys.executable, os.path.join(BENCH, script), *args], capture_output=True,
                          text=True, check=True, timeout=600).stdout


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
    rows = json.loads((tmp_path / "scaling_smoke.json").read_text())["rows"]
    assert rows[0]["threads"] == 1 and rows[0]["speedup"] == 1.0
    _run("memory.py", "--n", "200000", "--out", str(tmp_path))
    mem = json.loads((tmp_path / "memory.json").read_text())
    # Per-tile buffers only: nothing proportional to N beyond the output itself.
    assert mem["ok"] and mem["output_bytes"] == 200000 * 2 * 4


def test_fma_peak_arguments():
    assert _core.fma_peak_gflops(1, 0.01) > 0
    for bad in ((0, 0.1), (1, 0.0), (1, 61.0), (1, float("nan"))):
        with pytest.raises(ValueError):
            _core.fma_peak_gflops(*bad)


def test_relu_skip_probe_matches_the_engine_kernel(tmp_path):
    """The probe behind the README's "the engine does not skip ReLU zeros": its skipping
    kernels must reproduce the engine kernel's bits, or its timings would compare different work."""
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    root = os.path.join(BENCH, "..")
    exe = str(tmp_path / "relu_skip")
    subprocess.run([cxx, "-O2", "-std=c++17", "-fopenmp", "-I", os.path.join(root, "cpp", "include"),
                    "-I", os.path.join(root, "cpp", "src"),
                    os.path.join(BENCH, "probes", "relu_skip.cpp"),
                    os.path.join(root, "cpp", "src", "gemm.cpp"),
                    os.path.join(root, "cpp", "src", "cpu_features.cpp"),
                    os.path.join(root, "cpp", "src", "peak.cpp"), "-o", exe],
                   check=True, capture_output=True, timeout=300)
    r = subprocess.run([exe, "128", "48", "32", "0.5"], capture_output=True, text=True, timeout=120)
    if r.returncode == 77:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("(same bits)") == 3 and "DIFFERENT" not in r.stdout
    assert subprocess.run([exe, "100", "48", "32", "0.5"], capture_output=True).returncode == 2
