"""Throughput measurement: the benchmark network and the PyTorch loop a user would write
instead, run side by side. Used by ``gensamp bench`` and the scripts under bench/ (which add
the reference ceilings from bench/common.py)."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _core
from .learn import export as _export
from .learn import peer
from .learn.peer import network as network
from .samplers import annealed_langevin
from .weights import Weights

L_LEVELS = 10
SIGMAS = np.geomspace(10.0, 0.1, L_LEVELS)


def export(net: Any) -> Weights:
    return _export(net, sigma_input="log_sigma", divide_by_sigma=True)


def flops_per_step(d: int, hidden: int) -> float:
    """Multiply-adds x 2 of one network evaluation (the O(d) update is not counted)."""
    return 2.0 * ((d + 1) * hidden + hidden * hidden + hidden * d)


def residual_flops_per_step(d: int, hidden: int) -> float:
    """The same for :class:`~gensamp.learn.peer.ResidualNet`, counting its embedding columns
    (which the engine folds into a per-level bias) as torch computes them."""
    return 2.0 * ((d + peer.EMBED) * hidden + hidden * hidden + hidden * d)


def compare_graph(
    d: int, hidden: int, n: int, threads: int, budget: float, reps: int
) -> dict[str, Any]:
    """The residual net (a format-2 graph) against the plain benchmark net (format 1), the
    same schedule, timed alternately in one run."""
    plain = export(peer.network(d, hidden))
    res = _export(peer.ResidualNet(d, hidden))
    T = steps_for(n, flops_per_step(d, hidden), budget)
    steps = n * L_LEVELS * T
    tp, tr = [], []
    for _ in range(reps):
        tp.append(timed(lambda: engine(plain, n, T, threads), 1))
        tr.append(timed(lambda: engine(res, n, T, threads), 1))
    gp = steps * flops_per_step(d, hidden) / min(tp) / 1e9
    gr = steps * residual_flops_per_step(d, hidden) / min(tr) / 1e9
    return dict(
        d=d,
        hidden=hidden,
        n=n,
        threads=threads,
        T=T,
        plain_gflops=gp,
        residual_gflops=gr,
        gflops_ratio=gr / gp,
        time_ratio=min(tr) / min(tp),
        plain_seconds=tp,
        residual_seconds=tr,
    )


def torch_peer(net: Any, n: int, d: int, T: int, eps: float = 1e-3) -> None:
    """What a user writes instead: batched annealed Langevin in PyTorch, default threads."""
    peer.annealed_loop(net, n, d, T, SIGMAS, eps)


def engine(w: Weights, n: int, T: int, threads: int, eps: float = 1e-3) -> None:
    annealed_langevin(w, SIGMAS, eps, T, n=n, threads=threads, seed=1)


def timed_all(fn: Callable[[], Any], reps: int = 3) -> list[float]:
    """Wall time of each of `reps` runs."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def timed(fn: Callable[[], Any], reps: int = 3) -> float:
    """Best wall time of `reps` runs (the one least disturbed by other processes)."""
    return min(timed_all(fn, reps))


def steps_for(n: int, flops: float, budget: float) -> int:
    """T per level so that one run does about `budget` FLOPs (1 to 2000)."""
    return int(np.clip(round(budget / (flops * n * L_LEVELS)), 1, 2000))


def compare(d: int, hidden: int, n: int, threads: int, budget: float, reps: int) -> dict[str, Any]:
    """One row: the engine and the PyTorch peer on the same network and schedule."""
    net = peer.network(d, hidden)
    w = export(net)
    fl = flops_per_step(d, hidden)
    T = steps_for(n, fl, budget)
    steps = n * L_LEVELS * T
    peer.annealed_loop(net, 1, d, 1, SIGMAS[:1], threads=threads)  # sets torch's threads
    cpp_s = timed_all(lambda: engine(w, n, T, threads), reps)
    peer_s = timed_all(lambda: torch_peer(net, n, d, T), reps if n < 100_000 else 1)
    t_cpp, t_peer = min(cpp_s), min(peer_s)
    return dict(
        d=d,
        hidden=hidden,
        n=n,
        threads=threads,
        T=T,
        levels=L_LEVELS,
        cpp_chain_steps_s=steps / t_cpp,
        torch_chain_steps_s=steps / t_peer,
        cpp_gflops=steps * fl / t_cpp / 1e9,
        torch_gflops=steps * fl / t_peer / 1e9,
        speedup=t_peer / t_cpp,
        cpp_seconds=cpp_s,
        torch_seconds=peer_s,
    )


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        **peer.versions(),
        "numpy": np.__version__,
        "gensamp": _core.__version__,
        "simd": _core.simd_level(),
        "openmp": bool(_core.have_openmp),
        "omp_max_threads": int(_core.max_threads()),
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
