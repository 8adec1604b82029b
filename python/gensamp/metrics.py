"""Sample-quality metrics: exact 1D Wasserstein-1 and KS, energy distance and RBF-MMD^2 in any
d, mixture mode weights, the fraction of samples far from every mode, score error against a
known true score, and, for data without a known density (images), the memorisation check
(:func:`nearest_neighbour_ratio`), a classifier's view of the samples (:func:`fit_classifier`,
:func:`classifier_report`), a Gaussian-mixture baseline (:func:`gmm_baseline`) and all of them
at once next to their train-vs-test floor (:func:`report`).

Distances between samples are computed exactly on the empirical distributions (no binning,
no subsampling), in float64. 1D results match ``scipy.stats.wasserstein_distance``,
``scipy.stats.ks_2samp(...).statistic`` and ``scipy.stats.energy_distance``. The classifier
and the baseline use scikit-learn (the ``images`` extra), imported on first use.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import numpy as np

from ._validate import _from_torch, as_array, as_int, as_pos_float, import_sklearn
from .mixture import GaussianMixture

__all__ = [
    "ClassifierReport",
    "NearestNeighbourReport",
    "classifier_report",
    "energy_distance",
    "far_from_modes",
    "fit_classifier",
    "gmm_baseline",
    "ks_statistic",
    "mmd_rbf",
    "mode_weight_error",
    "mode_weights",
    "nearest_neighbour_ratio",
    "rbf_bandwidth",
    "report",
    "score_error",
    "wasserstein_1d",
]


def _samples(a: Any, name: str, d: int | None = None) -> np.ndarray:
    """Samples as float64 [n, d]: datasets.as_array's conversion and checks, plus the width."""
    arr = as_array(a, name, min_rows=1)
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"{name} must have d={d} columns, got {arr.shape[1]}")
    return arr


def _one_d(a: Any, name: str) -> np.ndarray:
    arr = _samples(a, name)
    if arr.shape[1] != 1:
        raise ValueError(f"{name} must be 1-D samples ([n] or [n, 1]), got shape {arr.shape}")
    return np.sort(arr[:, 0])


def _cdfs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both empirical CDFs on the merged sorted support, and the gaps between its points."""
    allv = np.sort(np.concatenate([x, y]))
    fx = np.searchsorted(x, allv[:-1], side="right") / x.size
    fy = np.searchsorted(y, allv[:-1], side="right") / y.size
    return fx, fy, np.diff(allv)


def wasserstein_1d(x: Any, y: Any) -> float:
    """Exact Wasserstein-1 distance between two 1-D empirical distributions,
    W1 = integral |F_x(t) - F_y(t)| dt (sample sizes may differ)."""
    x, y = _one_d(x, "x"), _one_d(y, "y")
    fx, fy, gaps = _cdfs(x, y)
    return float(np.sum(np.abs(fx - fy) * gaps))


def ks_statistic(x: Any, y: Any) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup_t |F_x(t) - F_y(t)| (1-D)."""
    x, y = _one_d(x, "x"), _one_d(y, "y")
    allv = np.concatenate([x, y])
    fx = np.searchsorted(x, allv, side="right") / x.size
    fy = np.searchsorted(y, allv, side="right") / y.size
    return float(np.max(np.abs(fx - fy)))


def _mean_dist(a: np.ndarray, b: np.ndarray, chunk: int) -> float:
    """Mean Euclidean distance over all pairs (a_i, b_j), computed in row chunks to bound
    memory at about chunk * len(b) doubles."""
    total = 0.0
    bb = np.sum(b * b, axis=1)
    for i in range(0, a.shape[0], chunk):
        ai = a[i : i + chunk]
        # Expanding |a-b|^2 is one matrix product; clip the small negatives its rounding makes.
        sq = np.sum(ai * ai, axis=1)[:, None] + bb[None, :] - 2.0 * ai @ b.T
        total += float(np.sum(np.sqrt(np.maximum(sq, 0.0))))
    return total / (a.shape[0] * b.shape[0])


def energy_distance(x: Any, y: Any, *, chunk: int = 1024) -> float:
    """Energy distance sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|) between two empirical distributions
    in any dimension (Euclidean norm; V-statistics, i.e. scipy's convention in 1D).

    1-D input uses the exact CDF form sqrt(2 * integral (F_x - F_y)^2), O(n log n). In d > 1
    all pairs are visited (O(n m d) time, chunked memory): subsample very large sets first.
    """
    xa = _samples(x, "x")
    ya = _samples(y, "y", xa.shape[1])
    chunk = as_int(chunk, "chunk", 1)
    if xa.shape[1] == 1:
        fx, fy, gaps = _cdfs(np.sort(xa[:, 0]), np.sort(ya[:, 0]))
        return float(math.sqrt(2.0 * np.sum((fx - fy) ** 2 * gaps)))
    e2 = 2.0 * _mean_dist(xa, ya, chunk) - _mean_dist(xa, xa, chunk) - _mean_dist(ya, ya, chunk)
    return float(math.sqrt(max(e2, 0.0)))


def _mixture(m: Any) -> GaussianMixture:
    if not isinstance(m, GaussianMixture):
        raise TypeError(f"mixture must be a gensamp.GaussianMixture, got {type(m).__name__}")
    return m


def mode_weights(x: Any, mixture: GaussianMixture) -> np.ndarray:
    """Fraction of samples [K] assigned to each mixture component (highest responsibility,
    :meth:`GaussianMixture.component_of`); compare with ``mixture.weights``."""
    mix = _mixture(mixture)
    xa = _samples(x, "x", mix.dim)
    k = mix.component_of(xa)
    return np.bincount(k, minlength=mix.n_components) / xa.shape[0]


def mode_weight_error(x: Any, mixture: GaussianMixture) -> float:
    """max_k |recovered weight_k - true weight_k| (see :func:`mode_weights`)."""
    mix = _mixture(mixture)
    return float(np.max(np.abs(mode_weights(x, mix) - mix.weights)))


def far_from_modes(x: Any, mixture: GaussianMixture, n_std: float = 4.0) -> float:
    """Fraction of samples whose Mahalanobis distance to *every* component exceeds ``n_std``
    (spurious samples between or beyond the modes; about 1e-4 for exact samples in 1D/2D at
    the default 4)."""
    mix = _mixture(mixture)
    xa = _samples(x, "x", mix.dim)
    n_std = as_pos_float(n_std, "n_std")
    P = np.linalg.inv(mix.covariances)  # [K, d, d]
    diff = xa[:, None, :] - mix.means[None]  # [n, K, d]
    m2 = np.einsum("nki,kij,nkj->nk", diff, P, diff)
    return float(np.mean(np.all(m2 > float(n_std) ** 2, axis=1)))


def _score_of(model: Any, x: np.ndarray, sigma: float | None, name: str) -> np.ndarray:
    d = x.shape[1]
    if hasattr(model, "score") and callable(model.score):
        s = model.score(x) if sigma is None else model.score(x, sigma)
    elif callable(model):
        s = model(x) if sigma is None else model(x, sigma)
    else:
        raise TypeError(
            f"{name} must have a .score(x[, sigma]) method (Weights, GaussianMixture, gensamp "
            f"models) or be a callable x -> score, got {type(model).__name__}"
        )
    s = np.asarray(_from_torch(s), dtype=np.float64)
    if s.ndim == 1 and d == 1:
        s = s[:, None]
    if s.shape != x.shape:
        raise ValueError(f"{name} returned a score of shape {s.shape}, expected {x.shape}")
    return s


def score_error(
    model: Any, truth: Any, x: Any, *, sigma: float | None = None, relative: bool = False
) -> float:
    """Mean squared score error E_x ||s_model(x) - s_true(x)||^2 over the points x (data space).

    ``model`` and ``truth`` are anything with ``.score(x)`` / ``.score(x, sigma)`` returning
    [n, d] data-space scores (:class:`~gensamp.Weights`, :class:`~gensamp.GaussianMixture`,
    gensamp models) or a callable ``f(x[, sigma])``. ``sigma`` compares the noise-conditional
    scores at that level (the truth then is the mixture convolved with N(0, sigma^2 I)).
    ``relative=True`` divides by E||s_true(x)||^2.
    """
    xa = _samples(x, "x")
    if sigma is not None:
        if (
            isinstance(sigma, bool)
            or not isinstance(sigma, numbers.Real)
            or not (math.isfinite(sigma) and sigma > 0)
        ):
            raise ValueError(f"sigma must be finite and > 0, got {sigma!r}")
        sigma = float(sigma)
    s_model = _score_of(model, xa, sigma, "model")
    s_true = _score_of(truth, xa, sigma, "truth")
    if not np.all(np.isfinite(s_model)):
        raise ValueError("model returned NaN or Inf scores")
    err = float(np.mean(np.sum((s_model - s_true) ** 2, axis=1)))
    if relative:
        norm = float(np.mean(np.sum(s_true**2, axis=1)))
        if norm == 0:
            raise ValueError("the true score is zero on all points: relative error undefined")
        err /= norm
    return err


# ---- data without a known density (images): kernel two-sample test, memorisation, classes ----


def _blocks(n: int, chunk: int) -> range:
    return range(0, n, chunk)


def _sq_dists(a: np.ndarray, b: np.ndarray, bb: np.ndarray) -> np.ndarray:
    """|a_i - b_j|^2 [len(a), len(b)] as one matrix product; ``bb`` is sum(b * b, axis=1)."""
    sq = np.sum(a * a, axis=1)[:, None] + bb[None, :] - 2.0 * a @ b.T
    return np.maximum(sq, 0.0)  # the expansion's rounding can dip below zero


_BANDWIDTH_POINTS = 2000  # the median heuristic's O(n^2) pairs: 2 million at most
_PAIR_ROWS = 32  # rows per block of exact pair differences: 32 x 2,000 x d doubles


def rbf_bandwidth(y: Any) -> float:
    """Median heuristic: the median Euclidean distance between two distinct points of ``y``.

    :func:`mmd_rbf` takes its kernel width from the *reference* set with this rule, so the
    samples being judged cannot move the yardstick: every model (and the train-vs-test floor)
    is measured with the same kernel. Distances are exact differences, not the dot-product
    expansion, so coinciding points count as 0. A set of more than 2,000 points is subsampled
    to 2,000 (seeded: the value is reproducible) to bound the O(n^2) pairs.

    Parameters
    ----------
    y : array_like, shape (m, d)
        The reference points, m >= 2.

    Returns
    -------
    float
        The bandwidth h > 0 of the kernel exp(-|a - b|^2 / (2 h^2)).

    Raises
    ------
    ValueError
        Fewer than 2 points, or a median of 0 (more than half of the pairs coincide).
    """
    ya = _samples(y, "y")
    m = ya.shape[0]
    if m < 2:
        raise ValueError("y needs at least 2 rows for the median distance between its points")
    if m > _BANDWIDTH_POINTS:
        ya = ya[np.random.default_rng(0).choice(m, _BANDWIDTH_POINTS, replace=False)]
        m = _BANDWIDTH_POINTS
    cols = np.arange(m)
    dists = []
    for i in _blocks(m, _PAIR_ROWS):
        blk = ya[i : i + _PAIR_ROWS]
        d = np.sqrt(np.sum((blk[:, None, :] - ya[None, :, :]) ** 2, axis=2))
        dists.append(d[cols[None, :] > (i + np.arange(blk.shape[0]))[:, None]])
    h = float(np.median(np.concatenate(dists)))
    if h == 0.0:
        raise ValueError(
            "the median distance between points of y is 0 (more than half of its pairs "
            "coincide): pass bandwidth= explicitly"
        )
    return h


def _kernel_sum(a: np.ndarray, b: np.ndarray, gamma: float, chunk: int, same: bool) -> float:
    """Sum of exp(-gamma |a_i - b_j|^2) over all pairs, the diagonal i == j left out when
    ``same`` (a is b); row chunks bound memory at about chunk * len(b) doubles."""
    total = 0.0
    bb = np.sum(b * b, axis=1)
    for i in _blocks(a.shape[0], chunk):
        ai = a[i : i + chunk]
        k = np.exp(-gamma * _sq_dists(ai, b, bb))
        if same:
            r = np.arange(ai.shape[0])
            k[r, i + r] = 0.0  # exactly: the expansion leaves ~1e-16 where |a - a| is 0
        total += float(np.sum(k))
    return total


def mmd_rbf(x: Any, y: Any, *, bandwidth: float | None = None, chunk: int = 1024) -> float:
    """Unbiased squared maximum mean discrepancy (MMD^2) between samples ``x`` and a reference
    set ``y`` with the Gaussian (RBF) kernel k(a, b) = exp(-|a - b|^2 / (2 h^2)).

    MMD^2 = E k(X, X') + E k(Y, Y') - 2 E k(X, Y), each mean over distinct pairs (the
    U-statistic of Gretton et al. 2012): its expectation is the population MMD^2, 0 if and
    only if the distributions are equal, so two samples of one distribution give values
    scattered around 0, slightly negative ones included. Where the energy distance weighs
    every scale alike (a shift or a wrong spread dominates it), the kernel looks at distances
    around h: it catches wrong local structure -- blurred or noisy samples, modes with the
    wrong shares -- at the scale of the typical gap between reference points.

    Parameters
    ----------
    x : array_like, shape (n, d)
        The samples, n >= 2.
    y : array_like, shape (m, d)
        The reference set (e.g. held-out test data), m >= 2.
    bandwidth : float, optional
        The kernel width h. Default: :func:`rbf_bandwidth` of ``y``, the median distance
        between reference points, fixed by the reference set alone so that every set of
        samples compared with the same ``y`` is measured with the same kernel.
    chunk : int, default 1024
        Rows per block: memory is about chunk * max(n, m) doubles; time is O((n + m)^2 d).

    Returns
    -------
    float
        The unbiased MMD^2 estimate (may be slightly negative).
    """
    xa = _samples(x, "x")
    ya = _samples(y, "y", xa.shape[1])
    chunk = as_int(chunk, "chunk", 1)
    for arr, name in ((xa, "x"), (ya, "y")):
        if arr.shape[0] < 2:
            raise ValueError(f"{name} needs at least 2 rows for the unbiased MMD^2")
    h = rbf_bandwidth(ya) if bandwidth is None else as_pos_float(bandwidth, "bandwidth")
    gamma = 1.0 / (2.0 * h * h)
    n, m = xa.shape[0], ya.shape[0]
    kxx = _kernel_sum(xa, xa, gamma, chunk, True) / (n * (n - 1))
    kyy = _kernel_sum(ya, ya, gamma, chunk, True) / (m * (m - 1))
    kxy = _kernel_sum(xa, ya, gamma, chunk, False) / (n * m)
    return float(kxx + kyy - 2.0 * kxy)


def _nearest(a: np.ndarray, b: np.ndarray, chunk: int) -> np.ndarray:
    """Euclidean distance from every row of a to its nearest row of b [len(a)]."""
    out = np.empty(a.shape[0])
    bb = np.sum(b * b, axis=1)
    for i in _blocks(a.shape[0], chunk):
        ai = a[i : i + chunk]
        # |a|^2 is the same along a row, so the expansion without it finds the neighbour; the
        # distance itself is then taken exactly, so a copy of a train point is at 0, not 1e-8.
        j = np.argmin(bb[None, :] - 2.0 * ai @ b.T, axis=1)
        out[i : i + chunk] = np.sqrt(np.sum((ai - b[j]) ** 2, axis=1))
    return out


@dataclasses.dataclass(frozen=True)
class NearestNeighbourReport:
    """What :func:`nearest_neighbour_ratio` returns.

    Attributes
    ----------
    ratio : float
        median over samples of the distance to the nearest train point, divided by the same
        median for the test points (``sample_median / test_median``).
    near_copies : float
        Fraction of samples closer to a train point than ``test_median / 2``.
    sample_median, test_median : float
        The two medians.
    """

    ratio: float
    near_copies: float
    sample_median: float
    test_median: float


def nearest_neighbour_ratio(
    samples: Any, train: Any, test: Any, *, chunk: int = 1024
) -> NearestNeighbourReport:
    """Memorisation check: how close samples sit to the training points, compared with how
    close unseen data from the same distribution (the test points) sits to them.

    ``ratio`` = median distance from a sample to its nearest train point / the same median
    for the test points. About 1 for a model that generalises as well as fresh data does;
    << 1 for a model that reproduces (near) copies of its training set, which the distances
    to the test set alone can reward; >> 1 for samples off the data manifold (blurry, noisy).
    ``near_copies`` = fraction of samples closer to a train point than half the test points'
    median: a handful of memorised points can hide in the median, not in this fraction.

    Parameters
    ----------
    samples : array_like, shape (n, d)
    train : array_like, shape (n_train, d)
        The points the model was fitted to.
    test : array_like, shape (n_test, d)
        Held-out points of the same distribution.
    chunk : int, default 1024
        Rows per block: memory is about chunk * n_train doubles.

    Returns
    -------
    NearestNeighbourReport
        ``ratio``, ``near_copies`` and the two medians.

    Raises
    ------
    ValueError
        Mismatched widths, or a test median of 0 (most test points are copies of train
        points: the scale is undefined).
    """
    sa = _samples(samples, "samples")
    tr = _samples(train, "train", sa.shape[1])
    te = _samples(test, "test", sa.shape[1])
    chunk = as_int(chunk, "chunk", 1)
    d_test = _nearest(te, tr, chunk)
    test_median = float(np.median(d_test))
    if test_median == 0.0:
        raise ValueError(
            "the median distance from a test point to its nearest train point is 0 (most test "
            "points are copies of train points): the ratio has no scale"
        )
    d_samp = _nearest(sa, tr, chunk)
    sample_median = float(np.median(d_samp))
    return NearestNeighbourReport(
        ratio=sample_median / test_median,
        near_copies=float(np.mean(d_samp < 0.5 * test_median)),
        sample_median=sample_median,
        test_median=test_median,
    )


def _labels(labels: Any, n: int | None, name: str) -> np.ndarray:
    """Class labels: a non-empty 1-D array of integers or strings, n entries if n is given."""
    arr = np.asarray(_from_torch(labels))
    if arr.size and arr.dtype.kind not in "iuU":  # [] is float64 to numpy: empty, not wrong
        raise TypeError(f"{name} must be integers or strings (class names), got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] == 0 or (n is not None and arr.shape[0] != n):
        want = "a non-empty 1-D array" if n is None else f"shape ({n},), one label per point"
        raise ValueError(f"{name} must be {want}, got shape {arr.shape}")
    return arr


def fit_classifier(x: Any, labels: Any, *, seed: int = 0, max_iter: int = 1000) -> Any:
    """A multinomial logistic regression (scikit-learn's ``LogisticRegression``, default L2
    penalty C = 1) fitted to labelled points, the judge :func:`classifier_report` uses.

    Fit it on the train split only: the test points then measure what it makes of unseen
    real data. On the 8x8 digits (:func:`gensamp.datasets.digits`) it reaches about 0.97 test
    accuracy.

    Parameters
    ----------
    x : array_like, shape (n, d)
    labels : array_like of int or str, shape (n,)
        At least two distinct classes.
    seed : int, default 0
        scikit-learn's ``random_state`` (the default lbfgs solver is deterministic anyway).
    max_iter : int, default 1000
        Solver iterations; scikit-learn warns (ConvergenceWarning) if they do not suffice.

    Returns
    -------
    sklearn.linear_model.LogisticRegression
        The fitted classifier (``predict_proba``, ``classes_``).
    """
    xa = _samples(x, "x")
    y = _labels(labels, xa.shape[0], "labels")
    seed = as_int(seed, "seed", 0, 2**32 - 1)
    max_iter = as_int(max_iter, "max_iter", 1)
    if np.unique(y).size < 2:
        raise ValueError("labels must hold at least 2 distinct classes to fit a classifier")
    lm = import_sklearn("sklearn.linear_model", "gensamp.metrics.fit_classifier")
    return lm.LogisticRegression(max_iter=max_iter, random_state=seed).fit(xa, y)


@dataclasses.dataclass(frozen=True)
class ClassifierReport:
    """What :func:`classifier_report` returns.

    Attributes
    ----------
    classes : tuple
        The classifier's classes, the order of the share tuples.
    class_shares : tuple of float
        Fraction of samples assigned to each class (highest probability).
    train_shares : tuple of float
        Fraction of train points with each label.
    max_share_deviation : float
        max over classes of |class_shares - train_shares|.
    test_max_share_deviation : float
        The same for the classifier's assignments of the test points: the deviation that
        real data of the test set's size shows.
    confidence : float
        Mean top-class probability on the samples.
    test_confidence : float
        Mean top-class probability on the test points.
    test_accuracy : float or None
        Accuracy on the test points, when their labels were given.
    """

    classes: tuple[Any, ...]
    class_shares: tuple[float, ...]
    train_shares: tuple[float, ...]
    max_share_deviation: float
    test_max_share_deviation: float
    confidence: float
    test_confidence: float
    test_accuracy: float | None


def _proba(classifier: Any, x: np.ndarray, k: int, name: str) -> np.ndarray:
    p = np.asarray(classifier.predict_proba(x), dtype=np.float64)
    if p.shape != (x.shape[0], k):
        raise ValueError(
            f"classifier.predict_proba({name}) returned shape {p.shape}, expected "
            f"{(x.shape[0], k)} (one column per entry of classifier.classes_)"
        )
    return p


def classifier_report(
    samples: Any,
    classifier: Any,
    *,
    train_labels: Any,
    test: Any,
    test_labels: Any = None,
) -> ClassifierReport:
    """A classifier trained on real labelled data (:func:`fit_classifier`) as a judge of
    samples from a model of that data.

    The class histogram of the samples against the train split's class shares catches
    dropped or over-produced classes (mode collapse, wrong mode weights) that distances
    between sets dilute. The mean top-class probability catches samples that look like no
    class in particular (blends of two digits, noise): compare it with the same mean on the
    real test points, which is what "recognisable" means for this classifier.

    Parameters
    ----------
    samples : array_like, shape (n, d)
    classifier : fitted classifier
        Anything with ``predict_proba(x)`` and ``classes_``, e.g. a scikit-learn estimator
        fitted on the train split.
    train_labels : array_like, shape (n_train,)
        The labels of the train split, for the class shares to compare with.
    test : array_like, shape (n_test, d)
        Real held-out points.
    test_labels : array_like, shape (n_test,), optional
        Their labels, for the classifier's test accuracy.

    Returns
    -------
    ClassifierReport
    """
    if not callable(getattr(classifier, "predict_proba", None)) or not hasattr(
        classifier, "classes_"
    ):
        raise TypeError(
            "classifier must be fitted and have predict_proba(x) and classes_ (a scikit-learn "
            f"classifier, e.g. from fit_classifier), got {type(classifier).__name__}"
        )
    sa = _samples(samples, "samples")
    te = _samples(test, "test", sa.shape[1])
    classes = np.asarray(classifier.classes_)
    k = classes.shape[0]
    ytr = _labels(train_labels, None, "train_labels")
    unknown = np.setdiff1d(ytr, classes)
    if unknown.size:
        raise ValueError(
            f"train_labels holds classes the classifier does not know: {unknown[:10].tolist()}"
        )
    train_shares = np.array([np.mean(ytr == c) for c in classes])
    p_samp = _proba(classifier, sa, k, "samples")
    p_test = _proba(classifier, te, k, "test")
    shares = np.bincount(np.argmax(p_samp, axis=1), minlength=k) / sa.shape[0]
    test_shares = np.bincount(np.argmax(p_test, axis=1), minlength=k) / te.shape[0]
    accuracy = None
    if test_labels is not None:
        yte = _labels(test_labels, te.shape[0], "test_labels")
        accuracy = float(np.mean(classes[np.argmax(p_test, axis=1)] == yte))
    return ClassifierReport(
        classes=tuple(classes.tolist()),
        class_shares=tuple(float(v) for v in shares),
        train_shares=tuple(float(v) for v in train_shares),
        max_share_deviation=float(np.max(np.abs(shares - train_shares))),
        test_max_share_deviation=float(np.max(np.abs(test_shares - train_shares))),
        confidence=float(np.mean(np.max(p_samp, axis=1))),
        test_confidence=float(np.mean(np.max(p_test, axis=1))),
        test_accuracy=accuracy,
    )


def gmm_baseline(
    train: Any,
    n: int,
    *,
    n_components: int = 40,
    seed: int = 0,
    reg_covar: float = 5e-3,
) -> np.ndarray:
    """Samples from a Gaussian mixture fitted to ``train``: the baseline a learned model has
    to beat (scikit-learn's ``GaussianMixture``, full covariances, k-means initialisation).

    On the 8x8 digits (1,400 train images, 64 pixels) 40 components fit in seconds. Each
    component then sees about 35 images in 64 dimensions, so its covariance is singular;
    ``reg_covar``, added to every covariance's diagonal, sets how far samples spread off
    those few images. The default 5e-3 (a pixel standard deviation of about 0.07) is where
    the validation likelihood peaks when fitting the digits' ``"fit"`` part and scoring on
    its ``"validation"`` part (1e-3 and 3e-2 score lower; 1e-6 collapses onto the images).

    Parameters
    ----------
    train : array_like, shape (n_train, d)
        The points to fit, n_train >= n_components.
    n : int
        Number of samples.
    n_components : int, default 40
    seed : int, default 0
        Seeds the fit (k-means initialisation), the draw and the shuffle.
    reg_covar : float, default 5e-3
        Added to the diagonal of every covariance.

    Returns
    -------
    ndarray of float64, shape (n, d)
        The samples in random order (scikit-learn draws them grouped by component), not
        clipped to the data's range.
    """
    tr = _samples(train, "train")
    n = as_int(n, "n", 1)
    n_components = as_int(n_components, "n_components", 1)
    seed = as_int(seed, "seed", 0, 2**32 - 1)
    reg_covar = as_pos_float(reg_covar, "reg_covar")
    if n_components > tr.shape[0]:
        raise ValueError(
            f"n_components={n_components} exceeds the {tr.shape[0]} train points to fit"
        )
    mixture = import_sklearn("sklearn.mixture", "gensamp.metrics.gmm_baseline")
    gm = mixture.GaussianMixture(
        n_components,
        covariance_type="full",
        reg_covar=reg_covar,
        max_iter=500,
        random_state=seed,
    ).fit(tr)
    x, _ = gm.sample(n)
    return np.asarray(x, dtype=np.float64)[np.random.default_rng(seed).permutation(n)]


def report(
    samples: Any,
    train: Any,
    test: Any,
    *,
    train_labels: Any = None,
    test_labels: Any = None,
    classifier: Any = None,
    bandwidth: float | None = None,
    chunk: int = 1024,
) -> dict[str, Any]:
    """Every sample-quality number for data without a known density, each next to what
    real data scores (the floor): the train split measured against the test split.

    Parameters
    ----------
    samples : array_like, shape (n, d)
        The model's samples.
    train : array_like, shape (n_train, d)
        The points the model was fitted to.
    test : array_like, shape (n_test, d)
        Held-out points: the reference of the distances.
    train_labels, test_labels : array_like, optional
        Labels of train and test. ``train_labels`` adds the classifier's numbers
        (:func:`classifier_report`; a :func:`fit_classifier` on train unless ``classifier``
        is given); ``test_labels`` adds its test accuracy.
    classifier : fitted classifier, optional
        The judge to use instead of fitting one (needs ``train_labels``).
    bandwidth : float, optional
        The MMD kernel width; default :func:`rbf_bandwidth` of ``test``.
    chunk : int, default 1024
        Rows per block of the pairwise computations.

    Returns
    -------
    dict
        ``energy_distance`` and ``energy_distance_floor`` (samples vs test, train vs test;
        :func:`energy_distance`), ``mmd``, ``mmd_floor`` and the ``bandwidth`` they share
        (:func:`mmd_rbf`), ``nn_ratio``, ``near_copies`` and ``near_copies_floor`` (the
        fraction of test points that are "near copies" of train points by the same rule;
        :func:`nearest_neighbour_ratio`), the set sizes, and with labels the fields of
        :class:`ClassifierReport`. Plain floats, ints and lists: ready for ``json.dump``.
    """
    sa = _samples(samples, "samples")
    tr = _samples(train, "train", sa.shape[1])
    te = _samples(test, "test", sa.shape[1])
    chunk = as_int(chunk, "chunk", 1)
    if classifier is not None and train_labels is None:
        raise ValueError("classifier= needs train_labels= (the train class shares to compare)")
    if test_labels is not None and train_labels is None:
        raise ValueError("test_labels= needs train_labels= (the classifier is fitted on train)")
    h = rbf_bandwidth(te) if bandwidth is None else as_pos_float(bandwidth, "bandwidth")
    nn = nearest_neighbour_ratio(sa, tr, te, chunk=chunk)
    out: dict[str, Any] = {
        "n_samples": sa.shape[0],
        "n_train": tr.shape[0],
        "n_test": te.shape[0],
        "energy_distance": energy_distance(sa, te, chunk=chunk),
        "energy_distance_floor": energy_distance(tr, te, chunk=chunk),
        "mmd": mmd_rbf(sa, te, bandwidth=h, chunk=chunk),
        "mmd_floor": mmd_rbf(tr, te, bandwidth=h, chunk=chunk),
        "bandwidth": h,
        "nn_ratio": nn.ratio,
        "near_copies": nn.near_copies,
        "near_copies_floor": float(np.mean(_nearest(te, tr, chunk) < 0.5 * nn.test_median)),
    }
    if train_labels is not None:
        if classifier is None:
            classifier = fit_classifier(tr, train_labels)
        cr = classifier_report(
            sa, classifier, train_labels=train_labels, test=te, test_labels=test_labels
        )
        for key, value in dataclasses.asdict(cr).items():
            out[key] = list(value) if isinstance(value, tuple) else value
    return out
