"""Shared pieces of the bench scripts: the benchmark network, the PyTorch peer, machine info."""

from __future__ import annotations

import json
import os
import platform
import time

import numpy as np
import torch

import gensamp

L_LEVELS = 10
SIGMAS = np.geomspace(10.0, 0.1, L_LEVELS)


def network(d: int, hidden: int, seed: int = 0) -> torch.nn.Sequential:
    """The benchmark net: 3 Linear layers with ReLU, log-sigma appended to the input."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(d + 1, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, d),
    )
    with torch.no_grad():  # small output layer keeps chains bounded over many steps
        net[-1].weight.mul_(0.1)
    return net


def export(net: torch.nn.Sequential) -> gensamp.Weights:
    return gensamp.export(net, sigma_input="log_sigma", divide_by_sigma=True)


def flops_per_step(d: int, hidden: int) -> float:
    """Multiply-adds x 2 of one network evaluation (the update's O(d) work is not counted)."""
    return 2.0 * ((d + 1) * hidden + hidden * hidden + hidden * d)


@torch.no_grad()
def torch_peer(net: torch.nn.Sequential, n: int, d: int, T: int, eps: float = 1e-3) -> None:
    """What a user writes instead: batched annealed Langevin in PyTorch, default threads."""
    x = torch.randn(n, d)
    sL2 = float(SIGMAS[-1]) ** 2
    for s in SIGMAS:
        s = float(s)
        a = eps * s * s / sL2
        cond = torch.full((n, 1), np.log(s))
        for _ in range(T):
            x = x + a / 2 * net(torch.cat([x, cond], 1)) / s + np.sqrt(a) * torch.randn_like(x)


def engine(w: gensamp.Weights, n: int, T: int, threads: int, eps: float = 1e-3) -> None:
    gensamp.annealed_langevin(w, SIGMAS, eps, T, n=n, threads=threads, seed=1)


def timed(fn, reps: int = 3) -> float:
    """Best wall time of `reps` runs (the least disturbed by other processes)."""
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def sgemm_ceiling(size: int = 4096, reps: int = 5) -> float:
    """Achieved GFLOP/s of torch's float32 matrix product at size^3 (all threads)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    t = timed(lambda: torch.mm(a, b), reps)
    return 2.0 * size**3 / t / 1e9


def machine() -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gensamp": gensamp.__version__,
        "simd": gensamp.simd_level(),
        "numpy": np.__version__,
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def write_json(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=1)
