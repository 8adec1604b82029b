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
    "vae_sample",
]
