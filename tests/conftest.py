import gensamp
import numpy as np
import pytest
import torch

ACTS = ["relu", "leaky_relu", "elu", "silu", "softplus", "tanh", "sigmoid", "gelu", "gelu_tanh"]
TORCH_ACTS = {
    "relu": torch.nn.ReLU,
    "leaky_relu": torch.nn.LeakyReLU,
    "elu": torch.nn.ELU,
    "silu": torch.nn.SiLU,
    "softplus": torch.nn.Softplus,
    "tanh": torch.nn.Tanh,
    "sigmoid": torch.nn.Sigmoid,
    "gelu": torch.nn.GELU,
    "gelu_tanh": lambda: torch.nn.GELU(approximate="tanh"),
}


def random_mlp(d, width, act, sigma_input="none", depth=3, seed=0, gain=1.0):
    """A torch nn.Sequential with `depth` Linear layers (torch default init, scaled by gain)."""
    torch.manual_seed(seed)
    extra = 0 if sigma_input == "none" else 1
    dims = [d + extra] + [width] * (depth - 1) + [d]
    mods = []
    for i in range(depth):
        lin = torch.nn.Linear(dims[i], dims[i + 1])
        with torch.no_grad():
            lin.weight.mul_(gain)
        mods.append(lin)
        if i < depth - 1:
            mods.append(TORCH_ACTS[act]())
    return torch.nn.Sequential(*mods)


@pytest.fixture
def seed_mixture():
    return gensamp.GaussianMixture([1, 3], [[-9.0], [4.0]], stds=[1.0, 2.0])


def rel_close(a, b, rtol):
    """max |a - b| / (1 + |b|) <= rtol: absolute near zero, relative for large values."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    err = np.max(np.abs(a - b) / (1.0 + np.abs(b)))
    return err <= rtol, err
