"""gensamp: learn a generative model from samples, then draw millions of samples fast.

Training (VAE, score matching, NCSN) runs in PyTorch; exported weights are sampled by a C++
engine (OpenMP over tiles of chains). :mod:`gensamp.reference` re-implements the samplers in
numpy to check the engine.
"""

from . import reference
from ._core import simd_level
from .export import export
from .mixture import GaussianMixture
from .samplers import DivergenceWarning, annealed_langevin, langevin, vae_sample
from .weights import FORMAT_NAME, FORMAT_VERSION, Weights, load

__version__ = "0.1.0"

# Training needs torch, which takes seconds to import: load it on first use, so that sampling
# from saved weights never pays for it.
_LAZY = {"train_vae": "train", "train_score": "train", "train_ncsn": "train",
         "datasets": None, "metrics": None, "models": None, "train": None}


def __getattr__(name: str):  # PEP 562
    if name not in _LAZY:
        raise AttributeError(f"module 'gensamp' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f".{_LAZY[name] or name}", __name__)
    return module if _LAZY[name] is None else getattr(module, name)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "DivergenceWarning",
    "GaussianMixture",
    "Weights",
    "annealed_langevin",
    "export",
    "langevin",
    "load",
    "reference",
    "simd_level",
    "train_ncsn",
    "train_score",
    "train_vae",
    "vae_sample",
]
