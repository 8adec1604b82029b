"""The PyTorch side of the throughput comparison (``gensamp bench``, ``bench/``): the
network the benchmark samples and the loop a user would write instead of the engine."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def network(d: int, hidden: int, seed: int = 0) -> torch.nn.Sequential:
    """The benchmark net: 3 Linear layers with ReLU, log-sigma appended to the input."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(d + 1, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, d),
    )
    out = net[-1]
    assert isinstance(out, torch.nn.Linear)
    with torch.no_grad():  # a small output layer keeps chains bounded over many steps
        out.weight.mul_(0.1)
    return net


def annealed_loop(
    net: torch.nn.Module,
    n: int,
    d: int,
    T: int,
    sigmas: Any,
    eps: float = 1e-3,
    threads: int | None = None,
) -> None:
    """What a user writes instead: batched annealed Langevin in PyTorch (default threads
    unless ``threads`` is given)."""
    if threads is not None:
        torch.set_num_threads(threads)
    with torch.no_grad():
        x = torch.randn(n, d)
        sL2 = float(sigmas[-1]) ** 2
        for s in sigmas:
            s = float(s)
            a = eps * s * s / sL2
            cond = torch.full((n, 1), float(np.log(s)))
            for _ in range(T):
                x = x + a / 2 * net(torch.cat([x, cond], 1)) / s + np.sqrt(a) * torch.randn_like(x)


def versions() -> dict[str, Any]:
    """torch's version and intra-op thread count, for the benchmark's machine record."""
    return {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
