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


EMBED = 16  # sinusoidal features of log sigma in the residual benchmark net


class ResidualNet(torch.nn.Module):
    """The benchmark net's residual twin, the same widths: [x, sin/cos embedding of log sigma]
    -> Linear -> ReLU, one residual block h + ReLU(Linear(h)), Linear out, divided by sigma."""

    def __init__(self, d: int, hidden: int, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, 4.0, EMBED // 2)))
        self.inp = torch.nn.Linear(d + EMBED, hidden)
        self.block = torch.nn.Linear(hidden, hidden)
        self.out = torch.nn.Linear(hidden, d)
        with torch.no_grad():
            self.out.weight.mul_(0.1)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        freqs: torch.Tensor = self.freqs  # type: ignore[assignment]  # a registered buffer
        e = torch.log(sigma)[:, None] * freqs[None, :]
        h = torch.relu(self.inp(torch.cat([x, torch.sin(e), torch.cos(e)], -1)))
        h = h + torch.relu(self.block(h))
        return self.out(h) / sigma[:, None]


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
