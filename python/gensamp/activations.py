"""The activation table: the names the weights format, the engine, the exporter, gensamp's
own models and the reference sampler all agree on, with the parameters each one fixes.

Each activation is torch's with torch's default parameters; the engine implements exactly
those (``cpp/src/mlp.cpp``), so an activation module with other parameters cannot be
exported. The reference sampler keeps its own numpy forward -- an independent implementation
is its point -- but takes the names and parameters from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

#: name -> the torch module parameters the engine assumes (``torch.nn.<module>(**params)``).
#: "identity" is the linear output (no module); the others are hidden-layer activations.
SPEC: Mapping[str, tuple[str, Mapping[str, float | str]]] = MappingProxyType(
    {
        "identity": ("Identity", {}),
        "relu": ("ReLU", {}),
        "leaky_relu": ("LeakyReLU", {"negative_slope": 0.01}),
        "elu": ("ELU", {"alpha": 1.0}),
        "silu": ("SiLU", {}),
        "softplus": ("Softplus", {"beta": 1.0, "threshold": 20.0}),
        "tanh": ("Tanh", {}),
        "sigmoid": ("Sigmoid", {}),
        "gelu": ("GELU", {"approximate": "none"}),
        "gelu_tanh": ("GELU", {"approximate": "tanh"}),
    }
)

#: Every name a weights file may store.
NAMES: tuple[str, ...] = tuple(SPEC)
#: The names a hidden layer of gensamp's own models may use (all but the linear output).
HIDDEN: tuple[str, ...] = tuple(n for n in NAMES if n != "identity")

LEAKY_SLOPE = float(SPEC["leaky_relu"][1]["negative_slope"])
ELU_ALPHA = float(SPEC["elu"][1]["alpha"])
SOFTPLUS_THRESHOLD = float(SPEC["softplus"][1]["threshold"])


def check(name: object, *, hidden_only: bool = False) -> str:
    """``name`` if the engine implements it, else ValueError listing the supported ones."""
    allowed = HIDDEN if hidden_only else NAMES
    if not isinstance(name, str) or name not in allowed:
        raise ValueError(f"unknown activation {name!r}; supported: {', '.join(allowed)}")
    return name
