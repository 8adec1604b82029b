"""gensamp: learn a generative model from samples, then draw millions of samples fast.

Training (VAE, score matching, NCSN) runs in PyTorch (:mod:`gensamp.learn`, the only part
that imports torch); exported weights are sampled by a C++ engine (OpenMP over tiles of
chains), which also evaluates log-densities (:func:`log_prob`, the probability-flow ODE).
:mod:`gensamp.reference` re-implements both in numpy to check the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import methods, reference
from ._core import __version__ as __version__
from ._core import simd_level
from ._validate import DataWarning
from .density import DensityWarning, log_prob
from .mixture import GaussianMixture
from .samplers import DivergenceWarning, annealed_langevin, langevin, sample, vae_sample
from .weights import FORMAT_NAME, FORMAT_VERSION, Weights, load

if TYPE_CHECKING:
    from . import datasets, learn, metrics
    from . import distributed as distributed  # not in __all__: `import *` must not need dask
    from .learn import FitConfig, TrainingInterrupted, export, train_ncsn, train_score, train_vae

# torch takes seconds to import: the names that need it load on first use, so sampling from
# saved weights never pays for it (and works where torch is not installed).
_LAZY = {
    "FitConfig": "gensamp.learn",
    "TrainingInterrupted": "gensamp.learn",
    "export": "gensamp.learn",
    "train_ncsn": "gensamp.learn",
    "train_score": "gensamp.learn",
    "train_vae": "gensamp.learn",
}
_LAZY_MODULES = {
    "datasets": "gensamp.datasets",
    "distributed": "gensamp.distributed",  # dask: loaded on first use only
    "metrics": "gensamp.metrics",
    "learn": "gensamp.learn",
    "models": "gensamp.learn.models",
    "train": "gensamp.learn.train",
}


def __getattr__(name: str) -> Any:  # PEP 562
    if name in _LAZY_MODULES:
        return importlib.import_module(_LAZY_MODULES[name])
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gensamp' has no attribute {name!r}")


__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "DataWarning",
    "DensityWarning",
    "DivergenceWarning",
    "FitConfig",
    "GaussianMixture",
    "TrainingInterrupted",
    "Weights",
    "annealed_langevin",
    "datasets",
    "export",
    "langevin",
    "learn",
    "load",
    "methods",
    "log_prob",
    "metrics",
    "reference",
    "sample",
    "simd_level",
    "train_ncsn",
    "train_score",
    "train_vae",
    "vae_sample",
]
