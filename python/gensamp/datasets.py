"""Toy data sets and user data loading.

Every generator takes ``(n, seed)`` and returns a float64 array [n, d]. The Gaussian-mixture data
sets (:func:`seed_mixture_1d`, :func:`ncsn_mixture_2d`, :func:`eight_gaussians`) also return their
exact density as a :class:`~gensamp.GaussianMixture` with ``return_mixture=True`` (or through
:func:`true_mixture`), so learned scores and sample weights can be checked against the truth.
The other toys (moons, swiss roll, checkerboard, rings) have no Gaussian-mixture form.

:func:`digits` is real data: scikit-learn's 8x8 handwritten digits (64 dimensions, pixels in
[0, 1]) under a fixed train / test protocol, with a validation part carved out of the train
split for tuning (needs the ``images`` extra: ``pip install 'gensamp[images]'``).

:func:`as_array` turns user data (numpy, torch, nested lists, or a ``.npy``/``.csv`` path) into
the same [N, d] float64 layout; the training functions call it on whatever they are given. In
text files it detects the delimiter, a header row and a pandas index column (dropped, with a
:class:`DataWarning`); ``columns=`` picks columns by header name or index.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from ._validate import (
    DataWarning,
    as_array,
    as_bool,
    as_choice,
    as_int,
    as_pos_float,
    import_sklearn,
)
from .mixture import GaussianMixture

__all__ = [
    "DATASETS",
    "DIGITS_SPLITS",
    "DataWarning",
    "as_array",
    "checkerboard",
    "concentric_rings",
    "digits",
    "eight_gaussians",
    "make",
    "ncsn_mixture_2d",
    "seed_mixture_1d",
    "swiss_roll",
    "true_mixture",
    "two_moons",
]


def _rng(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, None or a numpy Generator, got {seed!r}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return np.random.default_rng(int(seed))


# ---- Gaussian mixtures (exact density and score available) ----------------------------------


def _seed_mixture() -> GaussianMixture:
    return GaussianMixture([1.0, 3.0], [[-9.0], [4.0]], stds=[1.0, 2.0])


def _ncsn_mixture() -> GaussianMixture:
    return GaussianMixture([0.2, 0.8], [[-5.0, -5.0], [5.0, 5.0]], stds=[1.0, 1.0])


def _eight_mixture(radius: float, std: float) -> GaussianMixture:
    ang = 2 * np.pi * np.arange(8) / 8
    means = radius * np.stack([np.cos(ang), np.sin(ang)], axis=1)
    return GaussianMixture(np.ones(8), means, stds=np.full(8, std))


def _draw(mix: GaussianMixture, n: Any, seed: Any, return_mixture: bool) -> Any:
    n = as_int(n, "n", 1)
    x = mix.sample(n, _rng(seed))
    return (x, mix) if return_mixture else x


def seed_mixture_1d(n: int, seed: Any = 0, *, return_mixture: bool = False) -> Any:
    """The seed experiment: 1/4 N(-9, 1) + 3/4 N(4, 2^2) in 1D. Returns x [n, 1]
    (and the exact :class:`GaussianMixture` when ``return_mixture``)."""
    return _draw(_seed_mixture(), n, seed, return_mixture)


def ncsn_mixture_2d(n: int, seed: Any = 0, *, return_mixture: bool = False) -> Any:
    """Song & Ermon (2019)'s mode-weight example: 0.2 N((-5,-5), I) + 0.8 N((5,5), I). Returns
    x [n, 2] (and the exact :class:`GaussianMixture` when ``return_mixture``)."""
    return _draw(_ncsn_mixture(), n, seed, return_mixture)


def eight_gaussians(
    n: int, seed: Any = 0, *, radius: float = 4.0, std: float = 0.5, return_mixture: bool = False
) -> Any:
    """Eight equal-weight isotropic Gaussians (std ``std``) on a circle of radius ``radius``."""
    mixture = _eight_mixture(as_pos_float(radius, "radius"), as_pos_float(std, "std"))
    return _draw(mixture, n, seed, return_mixture)


# ---- toys without a Gaussian-mixture density ----------------------------------------------


def two_moons(n: int, seed: Any = 0, *, noise: float = 0.1) -> np.ndarray:
    """Two interleaving half circles (scikit-learn's ``make_moons`` layout), Gaussian noise
    of std ``noise`` added; the two moons get n // 2 and n - n // 2 points, shuffled."""
    n = as_int(n, "n", 1)
    noise = as_pos_float(noise, "noise", allow_zero=True)
    rng = _rng(seed)
    n_out = n // 2
    t = np.pi * rng.random(n)
    outer = np.stack([np.cos(t), np.sin(t)], axis=1)
    inner = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    which = np.zeros(n, bool)
    which[n_out:] = True
    rng.shuffle(which)
    x = np.where(which[:, None], inner, outer)
    return x + noise * rng.standard_normal((n, 2))


def swiss_roll(n: int, seed: Any = 0, *, noise: float = 0.25) -> np.ndarray:
    """2D swiss roll: t ~ U(1.5 pi, 4.5 pi), x = (t cos t, t sin t) + N(0, noise^2 I)."""
    n = as_int(n, "n", 1)
    noise = as_pos_float(noise, "noise", allow_zero=True)
    rng = _rng(seed)
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.random(n))
    x = np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
    return x + noise * rng.standard_normal((n, 2))


def checkerboard(n: int, seed: Any = 0, *, cells: int = 4, size: float = 4.0) -> np.ndarray:
    """Uniform on the 'black' cells of a ``cells`` x ``cells`` board covering [-size, size]^2
    (cells with an even sum of indices): half the board, sharp edges, no density gaps to
    interpolate across."""
    n = as_int(n, "n", 1)
    cells = as_int(cells, "cells", 2)
    size = as_pos_float(size, "size")
    rng = _rng(seed)
    black = np.array([(i, j) for i in range(cells) for j in range(cells) if (i + j) % 2 == 0])
    pick = black[rng.integers(0, len(black), n)]
    w = 2.0 * size / cells
    return -size + (pick + rng.random((n, 2))) * w


def concentric_rings(
    n: int, seed: Any = 0, *, radii: Any = (1.0, 2.0, 3.0), noise: float = 0.08
) -> np.ndarray:
    """Points on concentric circles, each ring's share proportional to its radius (uniform
    density along the curves), radial Gaussian noise of std ``noise``."""
    n = as_int(n, "n", 1)
    noise = as_pos_float(noise, "noise", allow_zero=True)
    r = np.asarray(radii, dtype=np.float64).reshape(-1)
    if r.size == 0 or not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise ValueError(f"radii must be a non-empty list of finite values > 0, got {radii!r}")
    rng = _rng(seed)
    ring = rng.choice(r.size, size=n, p=r / r.sum())
    ang = 2 * np.pi * rng.random(n)
    rad = r[ring] + noise * rng.standard_normal(n)
    return np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)


DATASETS: dict[str, Callable[..., Any]] = {
    "seed_mixture_1d": seed_mixture_1d,
    "ncsn_mixture_2d": ncsn_mixture_2d,
    "eight_gaussians": eight_gaussians,
    "two_moons": two_moons,
    "swiss_roll": swiss_roll,
    "checkerboard": checkerboard,
    "concentric_rings": concentric_rings,
}

_MIXTURES: dict[str, Callable[[], GaussianMixture]] = {
    "seed_mixture_1d": _seed_mixture,
    "ncsn_mixture_2d": _ncsn_mixture,
    "eight_gaussians": lambda: _eight_mixture(4.0, 0.5),
}


def _name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"data set name must be a str, got {type(name).__name__}")
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(DATASETS)}")
    return name


def make(name: str, n: int, seed: Any = 0, **kwargs: Any) -> np.ndarray:
    """Draw n points from the data set called ``name`` (a key of :data:`DATASETS`)."""
    return DATASETS[_name(name)](n, seed, **kwargs)


def true_mixture(name: str) -> GaussianMixture:
    """The exact density of a Gaussian-mixture data set (default parameters), for checking
    learned scores (``mixture.score``) and mode weights. ValueError for the other toys."""
    if _name(name) not in _MIXTURES:
        raise ValueError(
            f"{name!r} has no Gaussian-mixture density; those that do: {', '.join(_MIXTURES)}"
        )
    return _MIXTURES[name]()


# ---- real images: scikit-learn's 8x8 digits ------------------------------------------------

DIGITS_SPLITS = ("train", "test", "all", "fit", "validation")
_DIGITS_TEST = 397  # of 1,797: 1,400 train images remain
_DIGITS_TRAIN = 1797 - _DIGITS_TEST
_DIGITS_VALIDATION = 200
_DIGITS_CLASSES = 10


@functools.lru_cache(maxsize=1)
def _digits_all() -> tuple[np.ndarray, np.ndarray]:
    bunch = import_sklearn("sklearn.datasets", "gensamp.datasets.digits").load_digits()
    x = np.asarray(bunch.data, dtype=np.float64) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    # Cached and shared by every call: read-only, so a caller cannot edit the next one's data
    # (digits() hands out copies).
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


@functools.cache
def _digits_index(split: str, validation: int) -> np.ndarray:
    """Rows of the full set that make up ``split``, in the order the split functions return."""
    _, y = _digits_all()
    every = np.arange(y.size)
    tts = import_sklearn("sklearn.model_selection", "gensamp.datasets.digits").train_test_split
    train, test = tts(every, test_size=_DIGITS_TEST, stratify=y, random_state=0)
    if split == "all":
        idx = every
    elif split in ("train", "test"):
        idx = np.asarray(train if split == "train" else test)
    else:
        fit, val = tts(train, test_size=validation, stratify=y[train], random_state=0)
        idx = np.asarray(fit if split == "fit" else val)
    idx.flags.writeable = False  # cached: shared by every later call
    return idx


def digits(split: str = "train", *, labels: bool = False, validation: int | None = None) -> Any:
    """scikit-learn's 8x8 handwritten digits (``load_digits``) under a fixed protocol.

    The 1,797 images are flattened to 64 pixels and divided by 16, so every pixel lies in
    [0, 1] (float64, like every data set here). They are split once, stratified by label with
    seed 0 (``train_test_split(..., test_size=397, stratify=labels, random_state=0)``), into
    1,400 train and 397 test images. Tune on a validation part of the train split, never on
    the test images: ``"fit"`` and ``"validation"`` divide the train split the same way
    (stratified, seed 0), so together they are exactly the ``"train"`` images.

    Parameters
    ----------
    split : {"train", "test", "all", "fit", "validation"}
        Which images: the train split (1,400), the test split (397), all 1,797 in
        scikit-learn's order, or the train split minus its validation part (``"fit"``) and
        that part (``"validation"``).
    labels : bool, default False
        Also return the digit (0..9) of every image.
    validation : int, optional
        Number of train images in the validation part (default 200, so 1,200 fit); only for
        ``split="fit"`` or ``"validation"``. Between 10 and 1,390, since both parts need
        every digit.

    Returns
    -------
    x : ndarray of float64, shape (n, 64)
        The images, row-major 8x8 pixels per row; a fresh copy on every call.
    y : ndarray of int64, shape (n,)
        The labels, only when ``labels=True`` (then the result is ``(x, y)``).

    Raises
    ------
    ImportError
        scikit-learn is not installed (``pip install 'gensamp[images]'``).
    ValueError
        An unknown split, or ``validation`` out of range or given for a split without one.
    TypeError
        ``labels`` is not a bool or ``validation`` not an integer.
    """
    split = as_choice(split, "split", DIGITS_SPLITS)
    labels = as_bool(labels, "labels")
    if validation is None:
        validation = _DIGITS_VALIDATION
    elif split not in ("fit", "validation"):
        raise ValueError(
            f"validation= sizes the validation part of the train split; it applies to "
            f"split='fit' or 'validation', not split={split!r}"
        )
    else:
        validation = as_int(
            validation, "validation", _DIGITS_CLASSES, _DIGITS_TRAIN - _DIGITS_CLASSES
        )
    # Checked on every call, not only on the first (cached) load: the message says what to do.
    import_sklearn("sklearn", "gensamp.datasets.digits")
    x, y = _digits_all()
    idx = _digits_index(split, validation)
    return (x[idx], y[idx]) if labels else x[idx]
