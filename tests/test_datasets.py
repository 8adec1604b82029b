"""gensamp.datasets: toy generators, their exact mixtures, and user-data loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gensamp import GaussianMixture
from gensamp import datasets as D

TOYS = ["two_moons", "swiss_roll", "checkerboard", "concentric_rings"]


@pytest.mark.parametrize("name", list(D.DATASETS))
def test_shape_dtype_and_seeding(name):
    a = D.make(name, 500, seed=3)
    b = D.make(name, 500, seed=3)
    c = D.make(name, 500, seed=4)
    d = 1 if name == "seed_mixture_1d" else 2
    assert a.shape == (500, d) and a.dtype == np.float64
    assert np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_seed_mixture_parameters_and_samples():
    x, mix = D.seed_mixture_1d(40_000, seed=0, return_mixture=True)
    assert isinstance(mix, GaussianMixture)
    np.testing.assert_allclose(mix.weights, [0.25, 0.75])
    np.testing.assert_allclose(mix.means[:, 0], [-9.0, 4.0])
    np.testing.assert_allclose(np.sqrt(mix.covariances[:, 0, 0]), [1.0, 2.0])
    left = x[:, 0] < -2.5
    assert abs(left.mean() - 0.25) < 0.01  # 4.6 standard errors
    assert abs(x[left, 0].mean() + 9) < 0.05 and abs(x[left, 0].std() - 1) < 0.05
    assert abs(x[~left, 0].mean() - 4) < 0.05 and abs(x[~left, 0].std() - 2) < 0.05


def test_ncsn_mixture_parameters_and_samples():
    x, mix = D.ncsn_mixture_2d(20_000, seed=1, return_mixture=True)
    np.testing.assert_allclose(mix.weights, [0.2, 0.8])
    np.testing.assert_allclose(mix.means, [[-5, -5], [5, 5]])
    k = mix.component_of(x)
    assert abs(np.mean(k == 0) - 0.2) < 0.015
    np.testing.assert_allclose(x[k == 0].mean(0), [-5, -5], atol=0.1)
    np.testing.assert_allclose(x[k == 1].std(0), [1, 1], atol=0.05)


def test_eight_gaussians_mixture():
    x, mix = D.eight_gaussians(8000, seed=0, radius=3.0, std=0.2, return_mixture=True)
    assert mix.n_components == 8
    np.testing.assert_allclose(np.linalg.norm(mix.means, axis=1), 3.0)
    np.testing.assert_allclose(
        np.bincount(mix.component_of(x), minlength=8) / 8000, 1 / 8, atol=0.02
    )


def test_true_mixture_matches_generators():
    assert D.true_mixture("seed_mixture_1d").dim == 1
    m = D.true_mixture("ncsn_mixture_2d")
    x = D.ncsn_mixture_2d(10, seed=0)
    # score of the returned density is finite and points towards the nearest mode
    assert np.all(np.sum(m.score(x) * (m.means[m.component_of(x)] - x), axis=1) > 0)
    for name in TOYS:
        with pytest.raises(ValueError, match="no Gaussian-mixture density"):
            D.true_mixture(name)


def test_toy_geometry():
    ch = D.checkerboard(5000, seed=0)
    cell = np.floor((ch + 4.0) / 2.0).astype(int)
    assert np.all((cell.sum(1) % 2) == 0) and np.all(np.abs(ch) <= 4.0)
    r = np.linalg.norm(D.concentric_rings(6000, seed=0, radii=(1, 3), noise=0.01), axis=1)
    assert np.all((np.abs(r - 1) < 0.06) | (np.abs(r - 3) < 0.06))
    assert abs(np.mean(r > 2) - 0.75) < 0.03  # share proportional to radius
    m = D.two_moons(2000, seed=0, noise=0.0)
    outer = np.abs(np.linalg.norm(m, axis=1) - 1) < 1e-9
    inner = np.abs(np.linalg.norm(m - [1.0, 0.5], axis=1) - 1) < 1e-9
    assert np.all(outer | inner) and outer.sum() == 1000
    s = D.swiss_roll(2000, seed=0, noise=0.0)
    t = np.linalg.norm(s, axis=1)
    assert np.all((t >= 1.5 * np.pi - 1e-9) & (t <= 4.5 * np.pi + 1e-9))


def test_generator_errors():
    with pytest.raises(ValueError, match="n must be"):
        D.seed_mixture_1d(0)
    with pytest.raises(TypeError, match="n must be an integer"):
        D.two_moons(1.5)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        D.swiss_roll(10, seed=-1)
    with pytest.raises(TypeError, match="seed must be"):
        D.checkerboard(10, seed="a")
    with pytest.raises(ValueError, match="noise"):
        D.two_moons(10, noise=-0.1)
    with pytest.raises(ValueError, match="radii"):
        D.concentric_rings(10, radii=[])
    with pytest.raises(ValueError, match="unknown data set 'moons'"):
        D.make("moons", 10)
    with pytest.raises(TypeError, match="name must be a str"):
        D.true_mixture(3)


def test_generator_accepts_numpy_generator():
    g1, g2 = np.random.default_rng(7), np.random.default_rng(7)
    np.testing.assert_array_equal(D.two_moons(50, g1), D.two_moons(50, g2))


# ---- as_array ------------------------------------------------------------------------------


def test_as_array_inputs(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    out = D.as_array(x)
    assert out.dtype == np.float64 and out.shape == (6, 2)
    np.testing.assert_array_equal(D.as_array(torch.tensor(x)), x)
    np.testing.assert_array_equal(D.as_array(x.tolist()), x)
    assert D.as_array(np.arange(5)).shape == (5, 1)  # 1-D means d = 1
    np.save(tmp_path / "d.npy", x)
    np.testing.assert_array_equal(D.as_array(tmp_path / "d.npy"), x)
    np.savetxt(tmp_path / "d.csv", x, delimiter=",")
    np.testing.assert_array_equal(D.as_array(str(tmp_path / "d.csv")), x)
    (tmp_path / "h.csv").write_text("a,b\n1,2\n3,4\n")
    np.testing.assert_array_equal(D.as_array(tmp_path / "h.csv"), [[1, 2], [3, 4]])


def test_as_array_errors(tmp_path):
    with pytest.raises(ValueError, match="NaN or Inf in 1 row"):
        D.as_array([[1.0, 2.0], [np.nan, 1.0], [0.0, 0.0]])
    with pytest.raises(TypeError, match="real numbers"):
        D.as_array(np.array(["a", "b"]))
    with pytest.raises(TypeError, match="array"):
        D.as_array({"x": 1})
    with pytest.raises(ValueError, match=r"shape \[N, d\]"):
        D.as_array(np.zeros((3, 2, 2)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        D.as_array(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="does not exist"):
        D.as_array(tmp_path / "missing.npy")
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="unsupported extension"):
        D.as_array(tmp_path / "x.json")
    (tmp_path / "bad.csv").write_text("a,b\nc,d\n1,2\n")
    with pytest.raises(ValueError, match="line 2, column 1: 'c' is not a number"):
        D.as_array(tmp_path / "bad.csv")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="cannot read"):
        D.as_array(tmp_path / "obj.npy")  # never unpickled


@pytest.mark.parametrize(
    "text,expected",
    [
        ("1,2\n3,4\n", [[1, 2], [3, 4]]),  # comma, no header
        ("a;b\n1;2\n3;4\n", [[1, 2], [3, 4]]),  # semicolon, header
        ("a;b\n1,5;2\n3;4,25\n", [[1.5, 2], [3, 4.25]]),  # semicolon with a decimal comma
        ("x\ty\n1\t2\n3\t4\n", [[1, 2], [3, 4]]),  # tab
        (" 1  2\n3 4\n", [[1, 2], [3, 4]]),  # whitespace
        ('"a","b"\n"1","2"\n3,4\n', [[1, 2], [3, 4]]),  # quoted
        ("\ufeffa,b\n1,2\n3,4\n", [[1, 2], [3, 4]]),  # a byte-order mark (Excel)
        ("# comment\n1.5\n\n2.5\n", [[1.5], [2.5]]),  # one column, comments, blank lines
    ],
)
def test_csv_delimiters_and_headers_are_detected(tmp_path, text, expected):
    path = tmp_path / "d.csv"
    path.write_text(text, encoding="utf-8")
    np.testing.assert_array_equal(D.as_array(path), expected)


def test_pandas_index_column_is_dropped_with_a_warning(tmp_path):
    pd_csv = tmp_path / "pd.csv"
    pd_csv.write_text(",a,b\n0,1.5,2\n1,3,4\n2,5,6\n")
    with pytest.warns(D.DataWarning, match="dropped the first column.*0..2, a row index"):
        x = D.as_array(pd_csv)
    np.testing.assert_array_equal(x, [[1.5, 2], [3, 4], [5, 6]])
    # an unnamed first column that is not 0..N-1 is data, kept without a warning
    other = tmp_path / "other.csv"
    other.write_text(",a\n5,1\n7,2\n")
    np.testing.assert_array_equal(D.as_array(other), [[5, 1], [7, 2]])


def test_csv_columns_and_clear_errors(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n")
    np.testing.assert_array_equal(D.as_array(path, columns=["c", "a"]), [[3, 1], [6, 4]])
    np.testing.assert_array_equal(D.as_array(path, columns=[1]), [[2], [5]])
    np.testing.assert_array_equal(D.as_array(np.eye(3), columns=[2]), [[0], [0], [1]])
    with pytest.raises(ValueError, match="no column named 'z'.*a, b, c"):
        D.as_array(path, columns=["z"])
    with pytest.raises(ValueError, match="index 3 is out of range"):
        D.as_array(path, columns=[3])
    with pytest.raises(ValueError, match="has no header row"):
        D.as_array(np.eye(3), columns=["a"])
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b,c\n1,2,3\n4,5\n")
    with pytest.raises(ValueError, match="line 3 has 2 values but line 2 has 3") as err:
        D.as_array(ragged)
    assert "usecols" not in str(err.value)
    header = tmp_path / "header.csv"
    header.write_text("a,b,c\n1,2\n3,4\n")
    with pytest.raises(ValueError, match="header .line 1. names 3 columns but line 2 has 2"):
        D.as_array(header)
    for name, text in (("empty.csv", "\n"), ("only.csv", "a,b\n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match="no rows of numbers"):
            D.as_array(tmp_path / name)
