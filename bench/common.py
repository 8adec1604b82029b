"""Bench-only helpers, kept out of the installed package: the reference ceilings a throughput
run is read against (torch's sgemm, the FP32 FMA peak), the C++ probes under bench/probes/
built with the system compiler, and JSON output. The measurement itself (the benchmark
network, the PyTorch peer, compare()) is gensamp.benchmark, shared with `gensamp bench`."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
from typing import Any

from gensamp.benchmark import timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Each probe with the engine sources it links; cpu_features.cpp makes it take the engine's SIMD
# path (GENSAMP_SIMD included).
PROBES = {
    "peak": ["bench/probes/peak.cpp", "bench/probes/fma_peak.cpp", "cpp/src/cpu_features.cpp"],
    "relu_skip": [
        "bench/probes/relu_skip.cpp",
        "bench/probes/fma_peak.cpp",
        "cpp/src/gemm.cpp",
        "cpp/src/cpu_features.cpp",
    ],
}
# The engine's code-generation flags and warnings (CMakeLists.txt), so the engine kernels a
# probe links compile as they do in the extension.
CXXFLAGS = [
    "-O3",
    "-std=c++17",
    "-fopenmp",
    "-DGENSAMP_HAVE_OPENMP=1",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-Wall",
    "-Wextra",
    "-Wconversion",
    "-Icpp/include",
    "-Icpp/src",
    "-Ibench/probes",
]
PROBE_EXIT_USAGE = 2  # a probe's exit status for arguments it refuses


def compiler() -> str | None:
    """The system C++ compiler: $CXX, else c++, g++ or clang++ on PATH; None if there is none."""
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def build_probe(name: str) -> str:
    """Compiles bench/probes/<name>.cpp with the engine sources it uses; returns the executable.

    Cached under build/probes/, keyed by the compiler, the flags and every C++ source and header
    a probe can include, so an edit to the engine rebuilds it."""
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found: install one or set CXX")
    key = hashlib.sha256("\0".join([cxx, *CXXFLAGS, *PROBES[name]]).encode())
    for pattern in ("cpp/include/gensamp/*", "cpp/src/*", "bench/probes/*"):
        for path in sorted(glob.glob(os.path.join(ROOT, pattern))):
            with open(path, "rb") as fh:
                key.update(fh.read())
    out_dir = os.path.join(ROOT, "build", "probes")
    exe = os.path.join(out_dir, f"{name}-{key.hexdigest()[:16]}")
    if not os.path.exists(exe):
        os.makedirs(out_dir, exist_ok=True)
        tmp = f"{exe}.{os.getpid()}.tmp"
        r = subprocess.run(
            [cxx, *CXXFLAGS, *PROBES[name], "-o", tmp],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if r.returncode != 0:
            raise RuntimeError(f"building probe {name} failed:\n{r.stderr[-4000:]}")
        os.replace(tmp, exe)  # atomic: a concurrent bench run never sees half a binary
    return exe


def fma_peak(threads: int, seconds: float = 0.5) -> float:
    """The machine's FP32 arithmetic peak in GFLOP/s: independent FMAs on the engine's own SIMD
    path, on ``threads`` threads at once (bench/probes/peak.cpp). No kernel that does the
    network's FLOPs can pass it. ValueError for arguments the probe refuses."""
    r = subprocess.run(
        [build_probe("peak"), str(threads), repr(float(seconds))],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if r.returncode == PROBE_EXIT_USAGE:
        raise ValueError(r.stderr.strip())
    if r.returncode != 0:
        raise RuntimeError(f"peak probe failed (status {r.returncode}): {r.stderr.strip()}")
    return float(r.stdout.split()[0])


def sgemm_ceiling(size: int = 4096, reps: int = 5) -> float:
    """Achieved GFLOP/s of torch's float32 matrix product at size^3 (current torch threads)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    return 2.0 * size**3 / timed(lambda: torch.mm(a, b), reps) / 1e9


def write_json(path: str, payload: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=1)
