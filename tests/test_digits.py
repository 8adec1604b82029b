"""gensamp.datasets.digits: the fixed protocol (pixels / 16, a stratified 1,400 / 397 split with
seed 0, a validation part inside train), and the image metrics on the real data."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from gensamp import datasets as D
from gensamp import metrics as M

sk_datasets = pytest.importorskip("sklearn.datasets")


def _rows(x):
    """The set of images, as bytes: order-free equality and overlap of splits."""
    return {r.tobytes() for r in x}


def test_all_is_sklearn_scaled_to_unit_range():
    bunch = sk_datasets.load_digits()
    x, y = D.digits("all", labels=True)
    assert x.shape == (1797, 64) and x.dtype == np.float64
    np.testing.assert_array_equal(x * 16.0, bunch.data)  # / 16 exactly (a power of two)
    np.testing.assert_array_equal(y, bunch.target)
    assert y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    assert np.array_equal(x * 16, np.round(x * 16))  # 17 grey levels, nothing rescaled
    # The top-left corner pixel is blank in every image: a model must learn it is constant.
    assert np.all(x[:, 0] == 0.0)


def test_split_sizes_disjoint_and_complete():
    x_all = D.digits("all")
    tr, te = D.digits("train"), D.digits("test")
    assert tr.shape == (1400, 64) and te.shape == (397, 64)
    assert len(_rows(x_all)) == 1797  # no duplicate images, so row sets identify images
    assert not _rows(tr) & _rows(te)
    assert _rows(tr) | _rows(te) == _rows(x_all)
    fit, val = D.digits("fit"), D.digits("validation")
    assert fit.shape == (1200, 64) and val.shape == (200, 64)
    assert not _rows(fit) & _rows(val)
    assert _rows(fit) | _rows(val) == _rows(tr)  # tuning never sees a test image
    fit3, val3 = D.digits("fit", validation=300), D.digits("validation", validation=300)
    assert fit3.shape[0] == 1100 and val3.shape[0] == 300
    assert _rows(fit3) | _rows(val3) == _rows(tr)


def test_splits_are_stratified():
    _, y = D.digits("all", labels=True)
    share = np.bincount(y) / y.size
    for split, n in (("train", 1400), ("test", 397)):
        _, ys = D.digits(split, labels=True)
        assert ys.size == n
        # Stratified: every class count within one image of its exact proportional share.
        assert np.all(np.abs(np.bincount(ys, minlength=10) - n * share) <= 1.0)
    _, ytr = D.digits("train", labels=True)
    _, yval = D.digits("validation", labels=True)
    assert np.all(np.abs(np.bincount(yval, minlength=10) - 200 * np.bincount(ytr) / 1400) <= 1.0)


def test_split_is_the_documented_train_test_split():
    from sklearn.model_selection import train_test_split

    x, y = D.digits("all", labels=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=397, stratify=y, random_state=0)
    xt, yt = D.digits("train", labels=True)
    np.testing.assert_array_equal(xt, xtr)
    np.testing.assert_array_equal(yt, ytr)
    np.testing.assert_array_equal(D.digits("test"), xte)


def test_deterministic_and_copies():
    a = D.digits("train")
    a[:] = -1.0  # the caller's copy: the next call must not see it
    b, c = D.digits("train"), D.digits("train")
    np.testing.assert_array_equal(b, c)
    assert b.min() == 0.0
    x, y = D.digits("validation", labels=True)
    x2, y2 = D.digits("validation", labels=True)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)


def test_digits_errors(monkeypatch):
    with pytest.raises(ValueError, match="split must be one of"):
        D.digits("val")
    with pytest.raises(ValueError, match="split must be one of"):
        D.digits(0)
    with pytest.raises(TypeError, match="labels must be a bool"):
        D.digits("train", labels=1)
    with pytest.raises(ValueError, match="applies to split='fit' or 'validation'"):
        D.digits("train", validation=100)
    with pytest.raises(ValueError, match="validation"):
        D.digits("fit", validation=5)  # fewer than one image per digit
    with pytest.raises(ValueError, match="validation"):
        D.digits("fit", validation=1395)
    with pytest.raises(TypeError, match="validation"):
        D.digits("fit", validation=2.5)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # as on a machine without it
    with pytest.raises(ImportError, match=r"digits needs scikit-learn.*gensamp\[images\]"):
        D.digits("train")
    with pytest.raises(ImportError, match=r"fit_classifier needs scikit-learn"):
        M.fit_classifier(np.eye(3), [0, 1, 1])
    with pytest.raises(ImportError, match=r"gmm_baseline needs scikit-learn"):
        M.gmm_baseline(np.eye(3), 5, n_components=2)


def test_classifier_on_digits():
    xtr, ytr = D.digits("train", labels=True)
    xte, yte = D.digits("test", labels=True)
    clf = M.fit_classifier(xtr, ytr)
    r = M.classifier_report(xte, clf, train_labels=ytr, test=xte, test_labels=yte)
    assert r.test_accuracy == pytest.approx(0.97, abs=0.015)  # the figure
    assert r.classes == tuple(range(10))
    # The test images as "samples": every number equals its real-data counterpart.
    assert r.confidence == r.test_confidence
    assert r.max_share_deviation == r.test_max_share_deviation
    assert 0.8 < r.test_confidence < 1.0
    np.testing.assert_allclose(sum(r.class_shares), 1.0)


def test_gmm_baseline_on_digits_is_near_the_floor():
    # 10 components instead of the default 40 keep the test under a second.
    xtr, xte = D.digits("train"), D.digits("test")
    s = M.gmm_baseline(xtr, 2000, n_components=10, seed=0)
    assert s.shape == (2000, 64)
    nn = M.nearest_neighbour_ratio(s, xtr, xte)
    # Neither copies (<< 1) nor noise far off the images (>> 1).
    assert 0.8 < nn.ratio < 1.6
    assert nn.near_copies < 0.01
    floor = M.energy_distance(xtr, xte)
    assert floor < M.energy_distance(s, xte) < 2.5 * floor
    # Uniform noise in the pixel cube is far worse on every count.
    noise = np.random.default_rng(0).random((2000, 64))
    assert M.energy_distance(noise, xte) > 5 * floor
    assert M.nearest_neighbour_ratio(noise, xtr, xte).ratio > 2.0
