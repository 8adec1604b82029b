"""Everything that needs PyTorch: gensamp's models, their training and the exporter.

* :mod:`~gensamp.learn.models` -- ScoreNet, NCSN, VAE (torch modules that carry their data
  normalisation and export exactly);
* :mod:`~gensamp.learn.objectives` -- the losses (ELBO/IWAE, implicit/sliced/denoising score
  matching, the NCSN objective);
* :mod:`~gensamp.learn.fit` -- :class:`FitConfig` and the shared fit loop;
* :mod:`~gensamp.learn.train` -- the public training calls;
* :mod:`~gensamp.learn.exporter` -- torch network -> :class:`gensamp.Weights`.

Nothing outside this subpackage imports torch: sampling, loading weights, mixtures, metrics
and data sets work where torch is not installed. The names here are also importable from
``gensamp`` itself (loaded on first use).
"""

from .exporter import export
from .fit import FitConfig, History, TrainingInterrupted
from .models import NCSN, VAE, ScoreNet
from .train import langevin_defaults, train_ncsn, train_score, train_vae

__all__ = [
    "NCSN",
    "VAE",
    "FitConfig",
    "History",
    "ScoreNet",
    "TrainingInterrupted",
    "export",
    "langevin_defaults",
    "train_ncsn",
    "train_score",
    "train_vae",
]
