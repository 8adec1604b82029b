"""The gensamp command line: help everywhere, one-line errors with exit code 2, round trips."""

import subprocess
import sys

import gensamp
import numpy as np
import pytest
import torch

SUBCOMMANDS = ["train", "sample", "plot", "bench", "demo"]


def run(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "gensamp", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("sub", [None, *SUBCOMMANDS])
def test_help_everywhere(sub):
    r = run(*([sub] if sub else []), "--help")
    assert r.returncode == 0 and "usage: gensamp" in r.stdout


@pytest.mark.parametrize(
    "args,needle",
    [
        ([], "required"),
        (["frobnicate"], "invalid choice"),
        (["sample", "missing.safetensors", "--out", "x.npy"], "cannot read weights file"),
        (["sample", "{model}", "--n", "0", "--out", "x.npy"], "--n: must be >= 1"),
        (["sample", "{model}", "--sigmas", "1,a", "--out", "x.npy"], "not a list of numbers"),
        (["sample", "{model}", "--sigmas", "1,2", "--out", "{tmp}/x.npy"], "strictly decreasing"),
        (["sample", "{model}", "--out", "/nonexistent-dir/x.npy"], "does not exist"),
        (["sample", "{notweights}", "--out", "{tmp}/x.npy"], "not a valid gensamp weights file"),
        (["train", "ncsn", "no_such_dataset", "--out", "{tmp}/m.safetensors"], "no_such_dataset"),
        (["train", "gan", "seed_mixture_1d", "--out", "m.safetensors"], "invalid choice"),
        (["plot", "{tmp}/missing.npy", "--out", "{tmp}/p.png"], "missing.npy"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(tmp_path, args, needle):
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    model = tmp_path / "m.safetensors"
    gensamp.export(
        net, sigma_input="log_sigma", sampler={"sigmas": [1.0, 0.1], "eps": 0.001, "T": 5}
    ).save(model)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": 1}        ')
    fill = dict(model=str(model), tmp=str(tmp_path), notweights=str(bad))
    r = run(*[a.format(**fill) for a in args])
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("gensamp: error")]
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_sample_and_plot_round_trip(tmp_path):
    # A ReLU net that is exactly linear, score -x/4: the stationary law is N(0, 4/(1-eps/16)).
    W1 = np.array([[1.0], [-1.0]], np.float32)
    W2 = np.array([[-0.25, 0.25]], np.float32)
    w = gensamp.Weights(
        [(W1, np.zeros(2)), (W2, np.zeros(1))], ["relu"], sampler={"eps": 0.4, "T": 200}
    )
    model = tmp_path / "lin.safetensors"
    w.save(model)
    out = tmp_path / "s.npy"
    r = run("sample", str(model), "--n", "4000", "--seed", "3", "--threads", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    x = np.load(out)
    assert x.shape == (4000, 1)
    # Same call through the API: the CLI is a thin layer over gensamp.langevin.
    assert np.array_equal(x, gensamp.langevin(w, 0.4, 200, n=4000, seed=3))
    assert abs(np.var(x) - 4.0 / (1 - 0.4 / 16)) < 0.4
    png = tmp_path / "p.png"
    r = run("plot", str(out), "--data", "seed_mixture_1d", "--out", str(png))
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_then_sample(tmp_path):
    model = tmp_path / "ncsn.safetensors"
    r = run(
        "train",
        "ncsn",
        "ncsn_mixture_2d",
        "--n",
        "500",
        "--epochs",
        "2",
        "--quiet",
        "--out",
        str(model),
    )
    assert r.returncode == 0, r.stderr
    w = gensamp.load(model)
    assert w.role == "ncsn" and w.dim == 2 and set(w.sampler) == {"sigmas", "eps", "T"}
    out = tmp_path / "s.npy"
    r = run("sample", str(model), "--n", "100", "--T", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert np.load(out).shape == (100, 2)


def test_bench_quick_prints_a_table():
    r = run("bench", "--quick", timeout=600)
    assert r.returncode == 0, r.stderr
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith("| 1 | 128 |")]
    assert len(rows) == 2 and all(float(ln.split("|")[-2].strip().rstrip("x")) > 0 for ln in rows)
