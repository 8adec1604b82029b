"""The gensamp command line: help and defaults everywhere, one-line errors with exit status 2
(usage) / 1 (runtime) / 130 (Ctrl-C), outputs checked up front and written atomically, CSV
variants, divergence, threads, progress, and the advice it prints actually working."""

import argparse
import copy
import fcntl
import inspect
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import time

import gensamp
import numpy as np
import pytest
import torch
from gensamp import cli, learn

SUBCOMMANDS = ["train", "sample", "plot", "bench", "demo"]


def run(*args, timeout=300, env=None):
    return subprocess.run(
        [sys.executable, "-m", "gensamp", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def call(capsys, *args):
    """gensamp.cli.main in this process: (status, stdout, stderr)."""
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def error_line(err):
    """The one error line of a failed run (and nothing that looks like a traceback)."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("gensamp: error")]
    assert len(lines) == 1, err
    return lines[0]


# ---- models -----------------------------------------------------------------------------------


def linear_score(eps=0.4, T=200):
    """A ReLU net that is exactly linear, score -x/4: the stationary law is N(0, 4/(1-eps/16))."""
    W1 = np.array([[1.0], [-1.0]], np.float32)
    W2 = np.array([[-0.25, 0.25]], np.float32)
    return gensamp.Weights(
        [(W1, np.zeros(2)), (W2, np.zeros(1))], ["relu"], sampler={"eps": eps, "T": T}
    )


def kinked_score(a, b, c, eps, T):
    """s(x) = a relu(x) + b relu(-x) + c (1D, plain Langevin defaults stored)."""
    W1 = np.array([[1.0], [-1.0]], np.float32)
    W2 = np.array([[a, b]], np.float32)
    return gensamp.Weights(
        [(W1, np.zeros(2)), (W2, np.array([c]))], ["relu"], sampler={"eps": eps, "T": T}
    )


def conditional_net(sampler=None):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    return gensamp.export(net, sigma_input="log_sigma", sampler=sampler)


def vae_decoder():
    rng = np.random.default_rng(0)
    layers = [
        (rng.standard_normal((8, 2)).astype(np.float32), np.zeros(8)),
        (0.1 * rng.standard_normal((2, 8)).astype(np.float32), np.zeros(2)),
    ]
    return gensamp.Weights(layers, ["tanh"], role="vae_decoder")


@pytest.fixture
def models(tmp_path_factory):
    where = tmp_path_factory.mktemp("models")
    paths = {}
    for name, w in (
        ("lin", linear_score()),
        ("cond", conditional_net({"sigmas": [1.0, 0.1], "eps": 0.001, "T": 5})),
        ("bare", conditional_net()),
        ("vae", vae_decoder()),
    ):
        paths[name] = where / f"{name}.safetensors"
        w.save(paths[name])
    return paths


@pytest.fixture(scope="module")
def tiny_ncsn():
    """A real (barely trained) NCSN, for the tests that replace the training call."""
    x = np.random.default_rng(0).standard_normal((200, 1))
    return learn.train_ncsn(x, epochs=1, progress=False, threads=1)


@pytest.fixture
def fake_training(monkeypatch, tiny_ncsn):
    """Replace every training call with one that records its arguments and returns a real
    model at once: what the CLI hands to training, without the minutes of training."""
    seen = {}

    def fake(data, *args, **kwargs):
        seen.update(data=np.array(data), args=args, kwargs=kwargs)
        return copy.deepcopy(tiny_ncsn)

    for name in ("train_ncsn", "train_vae", "train_score"):
        monkeypatch.setattr(learn, name, fake)
    return seen


# ---- help, version, conventions -------------------------------------------------------------


@pytest.mark.parametrize("sub", [None, *SUBCOMMANDS])
def test_help_everywhere(sub):
    r = run(*([sub] if sub else []), "--help")
    assert r.returncode == 0 and "usage: gensamp" in r.stdout


def _subparsers():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_every_option_has_help_and_says_its_default(sub):
    sp = _subparsers()[sub]
    fmt = cli._Help(sp.prog)
    for act in sp._actions:
        if isinstance(act, argparse._HelpAction):
            continue
        assert act.help, (sub, act.dest)
        takes_value = act.option_strings and act.nargs != 0 and not act.required
        if takes_value:
            # a value default is printed; a default decided at run time is explained
            assert "default" in fmt._get_help_string(act), (sub, act.dest)
    text = " ".join(sp.format_help().split())
    for act in sp._actions:
        shown = act.option_strings and act.nargs != 0 and act.default is not None
        if shown and isinstance(act.default, (int, str)) and act.default != argparse.SUPPRESS:
            assert f"default: {act.default}" in text, (sub, act.dest, text)


def test_defaults_agree_with_the_python_api():
    sp = _subparsers()
    n = next(a for a in sp["sample"]._actions if a.dest == "n")
    assert n.default == 1000 == inspect.signature(gensamp.vae_sample).parameters["n"].default
    from gensamp.learn import train as T

    library = {"vae": T.VAE_FIT.epochs, "sm": T.SCORE_FIT.epochs, "ncsn": T.NCSN_FIT.epochs}
    assert library == cli.TRAIN_EPOCHS
    for model, fn in (("sm", T.train_score), ("ncsn", T.train_ncsn)):
        assert tuple(cli.TRAIN_HIDDEN[model]) == inspect.signature(fn).parameters["hidden"].default
    # train_vae's default depends on the likelihood; the CLI trains the Gaussian one
    assert inspect.signature(T.train_vae).parameters["hidden"].default is None
    assert tuple(cli.TRAIN_HIDDEN["vae"]) == T.VAE_DEFAULTS["hidden"]
    assert T.VAE_DEFAULTS["latent_dim"] == cli.VAE_LATENT
    assert T.IMAGE_VAE["latent_dim"] == cli.IMAGE_VAE_LATENT
    assert tuple(cli.IMAGE_VAE_HIDDEN) == T.IMAGE_VAE["hidden"]
    assert T.IMAGE_VAE_FIT.epochs == cli.IMAGE_VAE_EPOCHS
    assert T.SCORE_FIT.patience == 30  # the --epochs help says so


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"gensamp {gensamp.__version__}"


def test_bare_gensamp_lists_the_commands():
    r = run()
    assert r.returncode == 0, r.stderr
    for sub in SUBCOMMANDS:
        assert f"\n    {sub} " in r.stdout, r.stdout


# ---- one line per failure --------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,status,needle",
    [
        (["frobnicate"], 2, "invalid choice"),
        (["sample", "missing.safetensors", "--out", "{tmp}/x.npy"], 2, "cannot read weights file"),
        (["sample", "{lin}", "--n", "0", "--out", "x.npy"], 2, "--n: must be >= 1"),
        (["sample", "{lin}", "--sigmas", "1,a", "--out", "x.npy"], 2, "not a list of numbers"),
        (["sample", "{cond}", "--sigmas", "1,2", "--out", "{tmp}/x.npy"], 2, "strictly decreasing"),
        (["sample", "{lin}", "--out", "/nonexistent-dir/x.npy"], 2, "does not exist"),
        (["sample", "{notweights}", "--out", "{tmp}/x.npy"], 2, "not a valid gensamp weights"),
        (["sample", "{lin}", "--threads", "0", "--out", "{tmp}/x.npy"], 2, "--threads: must be"),
        (["sample", "{lin}", "--threads", "5000", "--out", "{tmp}/x.npy"], 2, "[1, 4096]"),
        (["sample", "{lin}", "--eps", "-1", "--out", "{tmp}/x.npy"], 2, "--eps: must be finite"),
        # issue 14 item 12: was a MemoryError traceback
        (
            ["sample", "{cond}", "--sigmas", "geom:20:0.1:100000000", "--out", "{tmp}/x.npy"],
            2,
            "level count must be in [1, 100000]",
        ),
        (["train", "ncsn", "no_such_dataset", "--out", "{tmp}/m.safetensors"], 2, "no_such_data"),
        (["train", "gan", "seed_mixture_1d", "--out", "m.safetensors"], 2, "invalid choice"),
        (["train", "ncsn", "seed_mixture_1d", "--out", "{tmp}/m.npy"], 2, "unknown suffix"),
        (["train", "ncsn", "seed_mixture_1d", "--out", "{tmp}"], 2, "is a directory"),
        (["train", "ncsn", "seed_mixture_1d", "--out", "{tmp}/m"], 2, "unknown suffix '(none)'"),
        (["plot", "{tmp}/missing.npy", "--out", "{tmp}/p.png"], 2, "missing.npy"),
        (["plot", "{tmp}/s.npy", "--out", "{tmp}/p.jpg"], 2, "unknown suffix '.jpg'"),
        (["demo", "--out", "{lin}"], 2, "is a file"),
    ],
)
def test_bad_arguments_give_one_line_and_a_status(tmp_path, models, args, status, needle):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": 1}        ')
    np.save(tmp_path / "s.npy", np.zeros((10, 2)))
    fill = dict(tmp=str(tmp_path), notweights=str(bad), **{k: str(v) for k, v in models.items()})
    r = run(*[a.format(**fill) for a in args])
    assert r.returncode == status, r.stderr
    assert needle in error_line(r.stderr), r.stderr
    assert not (tmp_path / "x.npy").exists()


def test_huge_network_is_refused_before_torch_allocates(tmp_path, monkeypatch, capsys):
    # issue 14 item 12: was a torch allocator RuntimeError traceback. The check runs before
    # any allocation; the machine's memory is pinned so the test never depends on (or uses) it.
    monkeypatch.setattr(cli, "_available_memory", lambda: 8 * 2**30)
    out = tmp_path / "m.safetensors"
    rc, _, err = call(
        capsys, "train", "ncsn", "seed_mixture_1d", "--hidden", "100000,100000", "--out", out
    )
    assert rc == 1
    line = error_line(err)
    assert "1e+10 parameters" in line and "use smaller --hidden" in line
    assert not out.exists()


def test_runtime_failures_in_training_are_one_line(tmp_path, monkeypatch, capsys):
    def oom(*a, **k):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:116] DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 40000000000 bytes.\nmore"
        )

    monkeypatch.setattr(learn, "train_ncsn", oom)
    out = tmp_path / "m.safetensors"
    rc, _, err = call(capsys, "train", "ncsn", "seed_mixture_1d", "--out", out)
    assert rc == 1 and "training failed: [enforce fail" in error_line(err)
    assert not out.exists()


def test_an_unforeseen_error_is_still_one_line(tmp_path, monkeypatch, capsys):
    np.save(tmp_path / "s.npy", np.zeros((10, 2)))

    def broken(*a, **k):
        raise IndexError("index 1 is out of bounds")

    monkeypatch.setattr(gensamp.plots, "samples", broken)
    rc, _, err = call(capsys, "plot", tmp_path / "s.npy", "--out", tmp_path / "p.png")
    assert rc == 1
    assert "IndexError: index 1 is out of bounds" in error_line(err)
    assert os.listdir(tmp_path) == ["s.npy"]  # no image, no temporary file


def test_plot_with_data_of_another_dimension(tmp_path):
    # issue 14 item 12: 2D samples over 1D data was an IndexError traceback
    np.save(tmp_path / "s.npy", np.zeros((10, 2)))
    r = run("plot", tmp_path / "s.npy", "--data", "seed_mixture_1d", "--out", tmp_path / "p.png")
    assert r.returncode == 2
    assert "has d=1 but SAMPLES has d=2" in error_line(r.stderr)
    assert not (tmp_path / "p.png").exists()


# ---- outputs: suffixes, overwrite protection, atomic writes ---------------------------------


def test_sample_writes_what_the_suffix_says(tmp_path, models):
    npy, csv = tmp_path / "s.npy", tmp_path / "s.CSV"
    r = run("sample", models["lin"], "--n", "300", "--out", npy)
    assert r.returncode == 0, r.stderr
    r = run("sample", models["lin"], "--n", "300", "--out", csv)
    assert r.returncode == 0, r.stderr
    assert f"to {csv}" in r.stdout
    x = np.load(npy)
    assert x.shape == (300, 1)
    text = csv.read_text().splitlines()
    assert text[0] == "x0" and len(text) == 301
    np.testing.assert_array_equal(np.loadtxt(csv, skiprows=1, ndmin=2).astype(np.float32), x)
    assert sorted(os.listdir(tmp_path)) == ["s.CSV", "s.npy"]  # no s.csv.npy
    r = run("sample", models["lin"], "--out", tmp_path / "s.txt")
    assert r.returncode == 2 and "unknown suffix '.txt'" in error_line(r.stderr)
    assert not (tmp_path / "s.txt").exists()


def test_existing_outputs_are_kept_unless_forced(tmp_path, models):
    out = tmp_path / "s.npy"
    out.write_bytes(b"precious")
    r = run("sample", models["lin"], "--n", "10", "--out", out)
    assert r.returncode == 2 and "exists; pass --force" in error_line(r.stderr)
    assert out.read_bytes() == b"precious"
    r = run("sample", models["lin"], "--n", "10", "--out", out, "--force")
    assert r.returncode == 0, r.stderr
    assert np.load(out).shape == (10, 1)
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)  # a normal file, not mkstemp's mode


def test_an_input_is_never_overwritten(tmp_path, models, capsys):
    # an output that is (a link to) an input is refused even with --force
    data = tmp_path / "data.npy"
    np.save(data, np.zeros((50, 1)))
    link = tmp_path / "weights.safetensors"
    link.symlink_to(data)
    rc, _, err = call(capsys, "train", "ncsn", data, "--out", link, "--force")
    assert rc == 2 and "also an input" in error_line(err)
    assert np.load(data).shape == (50, 1)
    alias = tmp_path / "alias.npy"
    alias.symlink_to(models["lin"])
    model_copy = models["lin"].read_bytes()
    rc, _, err = call(capsys, "sample", alias, "--out", alias, "--force")
    assert rc == 2 and "also an input" in error_line(err)
    assert models["lin"].read_bytes() == model_copy


def test_train_checks_the_output_before_training(tmp_path, monkeypatch, capsys):
    def never(*a, **k):
        raise AssertionError("training started although the output cannot be written")

    monkeypatch.setattr(learn, "train_ncsn", never)
    (tmp_path / "dir.safetensors").mkdir()
    existing = tmp_path / "old.safetensors"
    existing.write_bytes(b"old")
    for out, needle in (
        (tmp_path / "dir.safetensors", "is a directory"),
        (tmp_path / "missing" / "m.safetensors", "does not exist"),
        (existing, "exists; pass --force"),
    ):
        rc, _, err = call(capsys, "train", "ncsn", "seed_mixture_1d", "--out", out)
        assert rc == 2 and needle in error_line(err), err
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):  # root writes anywhere
            rc, _, err = call(
                capsys, "train", "ncsn", "seed_mixture_1d", "--out", ro / "m.safetensors"
            )
            assert rc == 2 and "not writable" in error_line(err)
    finally:
        ro.chmod(0o700)


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch, capsys, fake_training):
    def half_then_full_disk(self, path):
        with open(path, "wb") as fh:
            fh.write(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gensamp.Weights, "save", half_then_full_disk)
    out = tmp_path / "m.safetensors"
    rc, _, err = call(capsys, "train", "ncsn", "seed_mixture_1d", "--n", "100", "--out", out)
    assert rc == 1 and "No space left on device" in error_line(err)
    assert os.listdir(tmp_path) == []
    out.write_bytes(b"the previous model")
    rc, _, err = call(
        capsys, "train", "ncsn", "seed_mixture_1d", "--n", "100", "--out", out, "--force"
    )
    assert rc == 1
    assert out.read_bytes() == b"the previous model"  # replaced only by a complete file
    assert os.listdir(tmp_path) == ["m.safetensors"]


# ---- Ctrl-C ------------------------------------------------------------------------------------


def test_ctrl_c_during_training_saves_the_model(tmp_path, monkeypatch, capsys, tiny_ncsn):
    def interrupted(data, **kwargs):
        model = copy.deepcopy(tiny_ncsn)
        model.history.interrupted = True
        raise learn.TrainingInterrupted(model)

    monkeypatch.setattr(learn, "train_ncsn", interrupted)
    out = tmp_path / "m.safetensors"
    rc, stdout, err = call(capsys, "train", "ncsn", "seed_mixture_1d", "--n", "100", "--out", out)
    assert rc == 130
    assert "Traceback" not in err
    saved = [ln for ln in err.splitlines() if "interrupted after" in ln]
    assert len(saved) == 1 and str(out) in saved[0], err
    w = gensamp.load(out)
    assert w.role == "ncsn" and w.info["training"]["interrupted"] is True
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_a_real_ctrl_c_during_training(tmp_path):
    out = tmp_path / "m.safetensors"
    p = subprocess.Popen(
        [sys.executable, "-m", "gensamp", "train", "ncsn", "seed_mixture_1d", "--n", "500",
         "--epochs", "100000", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        for line in p.stderr:  # wait until training has started
            if "training ncsn" in line:
                break
        # past the set-up (data, schedule, network) into the epochs, with room for a busy machine
        time.sleep(8.0)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert "Traceback" not in err and "saved the model trained so far" in err
    w = gensamp.load(out)
    assert w.info["training"]["interrupted"] is True and w.info["training"]["epochs"] >= 1


def test_ctrl_c_elsewhere_is_one_line_and_writes_nothing(tmp_path, models, monkeypatch, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(gensamp.samplers, "langevin", interrupted)
    out = tmp_path / "s.npy"
    rc, _, err = call(capsys, "sample", models["lin"], "--out", out)
    assert rc == 130 and "interrupted" in error_line(err)
    assert not out.exists()


# ---- divergence ------------------------------------------------------------------------------


def test_all_chains_diverging_is_an_error_and_writes_nothing(tmp_path):
    model = tmp_path / "out.safetensors"
    kinked_score(2.0, -2.0, 0.0, 1.0, 300).save(model)  # s = 2x: every chain runs off
    out = tmp_path / "s.npy"
    r = run("sample", model, "--out", out)
    assert r.returncode == 1
    line = error_line(r.stderr)
    assert "all 1000 chains diverged" in line and "nothing written" in line
    assert "--eps" in line and "Warning" not in r.stderr and "warnings.warn" not in r.stderr
    assert not out.exists()


def test_some_chains_diverging_is_written_and_counted(tmp_path):
    model = tmp_path / "kink.safetensors"
    w = kinked_score(20.0, 1.0, -10.0, 0.01, 1000)  # runs off right of x = 0.5 only
    w.save(model)
    with pytest.warns(gensamp.DivergenceWarning) as rec:
        expected = gensamp.langevin(w, n=1000, seed=0)
    k = rec[0].message.count
    assert 0 < k < 1000
    out = tmp_path / "s.npy"
    r = run("sample", model, "--out", out)
    assert r.returncode == 0, r.stderr
    assert f"{k} of 1000 chains diverged" in r.stderr
    assert "DivergenceWarning" not in r.stderr and "warnings.warn" not in r.stderr
    np.testing.assert_array_equal(np.load(out), expected)
    png = tmp_path / "p.png"
    r = run("plot", out, "--out", png)  # the diverged rows are left out, with a note
    assert r.returncode == 0, r.stderr
    assert f"{k} of 1000 rows" in r.stderr and f"{1000 - k} samples" in r.stdout


# ---- advice in CLI words, and it works --------------------------------------------------------


def test_advice_for_a_plain_score_model_with_annealed_works(tmp_path, models):
    r = run("sample", models["lin"], "--sampler", "annealed", "--out", tmp_path / "x.npy")
    assert r.returncode == 2
    line = error_line(r.stderr)
    assert "--sampler langevin" in line and "np." not in line and "=" not in line
    r = run("sample", models["lin"], "--sampler", "langevin", "--out", tmp_path / "x.npy")
    assert r.returncode == 0 and "diverged" not in r.stderr, r.stderr


def test_advice_for_a_model_without_a_schedule_works(tmp_path, models):
    r = run("sample", models["bare"], "--out", tmp_path / "x.npy")
    assert r.returncode == 2
    line = error_line(r.stderr)
    assert "np." not in line and "sigmas=" not in line
    flags = line.split("pass ", 1)[1].split(" (")[0].split()
    assert flags == ["--sigmas", "geom:10:0.1:10", "--eps", "0.002", "--T", "100"], line
    r = run("sample", models["bare"], *flags, "--out", tmp_path / "x.npy")
    assert r.returncode == 0 and "diverged" not in r.stderr, r.stderr


def test_advice_works_for_a_trained_ncsn_without_stored_defaults(tmp_path):
    x = gensamp.datasets.ncsn_mixture_2d(1000, seed=0)
    w = gensamp.export(learn.train_ncsn(x, epochs=60, progress=False, threads=1))
    bare = gensamp.Weights(
        w.layers,
        w.activations,
        sigma_input=w.sigma_input,
        divide_by_sigma=w.divide_by_sigma,
        shift=w.shift,
        scale=w.scale,
        role=w.role,
    )
    bare.save(tmp_path / "bare.safetensors")
    r = run("sample", tmp_path / "bare.safetensors", "--out", tmp_path / "x.npy")
    flags = error_line(r.stderr).split("pass ", 1)[1].split(" (")[0].split()
    r = run("sample", tmp_path / "bare.safetensors", *flags, "--out", tmp_path / "x.npy")
    assert r.returncode == 0 and "diverged" not in r.stderr, r.stderr

    def on_the_data(y):  # share of samples within 3 of a mode, (-5,-5) or (5,5)
        return np.mean(np.min([np.linalg.norm(y - m, axis=1) for m in (-5, 5)], axis=0) < 3)

    # the advice does about as well as the schedule train_ncsn stores (0.998 when measured)
    stored = on_the_data(gensamp.annealed_langevin(w, n=1000))
    assert on_the_data(np.load(tmp_path / "x.npy")) > stored - 0.03


def test_vae_and_wrong_sampler_advice(tmp_path, models):
    r = run("sample", models["vae"], "--sampler", "annealed", "--out", tmp_path / "x.npy")
    line = error_line(r.stderr)
    assert r.returncode == 2 and "--sampler vae" in line and "gensamp.vae_sample" not in line
    r = run("sample", models["vae"], "--n", "50", "--out", tmp_path / "x.npy")
    assert r.returncode == 0 and np.load(tmp_path / "x.npy").shape == (50, 1)
    r = run("sample", models["cond"], "--sampler", "vae", "--out", tmp_path / "y.npy")
    assert r.returncode == 2 and "needs a VAE decoder" in error_line(r.stderr)


def test_a_data_file_given_as_the_model(tmp_path):
    csv = tmp_path / "data.csv"
    csv.write_text("x,y\n" + "\n".join(f"{i},{i * 2}" for i in range(100)))
    r = run("sample", csv, "--out", tmp_path / "x.npy")
    line = error_line(r.stderr)
    assert r.returncode == 2 and "is not a gensamp weights file" in line
    assert "text file" in line and "header length" not in line
    np.save(tmp_path / "d.npy", np.zeros((4, 2)))
    r = run("sample", tmp_path / "d.npy", "--out", tmp_path / "x.npy")
    assert "numpy .npy array" in error_line(r.stderr)


def test_library_phrasing_is_translated():
    assert "np." not in cli._cli_words(
        "sigmas not given; pass e.g. sigmas=np.geomspace(10, 0.1, 10), eps=0.2 * 0.1**2, T=100"
    )
    assert cli._cli_words("use method='sliced'") == "use --method sliced"
    assert "val_fraction" not in cli._cli_words(
        "4 points are too few for a validation split of 0.1; pass more data or val_fraction=0 "
        "(no early stopping)"
    )


# ---- CSV input ---------------------------------------------------------------------------------

CSV_CASES = {
    "semicolon, decimal comma, header": (
        "a;b\n1,5;2\n3;4,25\n5;6\n",
        [[1.5, 2], [3, 4.25], [5, 6]],
    ),
    "tab, header": ("x\ty\n1\t2\n3\t4\n5\t6\n", [[1, 2], [3, 4], [5, 6]]),
    "whitespace, no header": ("1 2\n 3   4\n5 6\n", [[1, 2], [3, 4], [5, 6]]),
    "pandas index column": (",a,b\n0,1,2\n1,3,4\n2,5,6\n", [[1, 2], [3, 4], [5, 6]]),
}


@pytest.mark.parametrize("case", CSV_CASES)
def test_csv_variants_reach_training_as_numbers(tmp_path, capsys, fake_training, case):
    text, expected = CSV_CASES[case]
    path = tmp_path / "data.csv"
    path.write_text(text)
    rc, out, err = call(capsys, "train", "ncsn", path, "--out", tmp_path / "m.safetensors")
    assert rc == 0, err
    np.testing.assert_array_equal(fake_training["data"], expected)
    notes = [ln for ln in err.splitlines() if "dropped the first column" in ln]
    assert len(notes) == (1 if case == "pandas index column" else 0), err


def test_csv_columns_by_name_or_index(tmp_path, capsys, fake_training):
    path = tmp_path / "data.csv"
    path.write_text(",a,b,c\n0,1,2,3\n1,4,5,6\n2,7,8,9\n")
    rc, _, err = call(
        capsys, "train", "ncsn", path, "--columns", "c,a", "--out", tmp_path / "m.safetensors"
    )
    assert rc == 0, err
    np.testing.assert_array_equal(fake_training["data"], [[3, 1], [6, 4], [9, 7]])
    rc, _, err = call(
        capsys, "train", "ncsn", path, "--columns", "1", "--out", tmp_path / "n.safetensors"
    )
    assert rc == 0, err
    np.testing.assert_array_equal(fake_training["data"], [[2], [5], [8]])
    rc, _, err = call(
        capsys, "train", "ncsn", path, "--columns", "z", "--out", tmp_path / "o.safetensors"
    )
    assert rc == 2 and "no column named 'z'" in error_line(err) and "a, b, c" in err


def test_ragged_csv_names_the_line(tmp_path, capsys, fake_training):
    path = tmp_path / "data.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n7,8\n")
    rc, _, err = call(capsys, "train", "ncsn", path, "--out", tmp_path / "m.safetensors")
    line = error_line(err)
    assert rc == 2 and "line 4 has 2 values but line 2 has 3" in line
    assert "usecols" not in line
    assert "data" not in fake_training  # training never started


# ---- threads, progress, summaries -----------------------------------------------------------


def test_training_threads_flag_reaches_training(tmp_path, capsys, fake_training):
    rc, out, _ = call(
        capsys,
        "train",
        "ncsn",
        "seed_mixture_1d",
        "--n",
        "100",
        "--out",
        tmp_path / "a.safetensors",
    )
    assert rc == 0 and fake_training["kwargs"]["threads"] == 1
    assert "on 1 torch thread;" in out
    rc, out, _ = call(
        capsys,
        "train",
        "vae",
        "seed_mixture_1d",
        "--threads",
        "3",
        "--n",
        "100",
        "--out",
        tmp_path / "b.safetensors",
    )
    assert rc == 0 and fake_training["kwargs"]["threads"] == 3
    assert "on 3 torch threads;" in out


def test_sampling_threads_flag_reaches_the_engine(tmp_path, models, monkeypatch, capsys):
    seen = {}
    real = gensamp.samplers.langevin

    def spy(*a, **k):
        seen.update(k)
        return real(*a, **k)

    monkeypatch.setattr(gensamp.samplers, "langevin", spy)
    rc, out, _ = call(
        capsys, "sample", models["lin"], "--threads", "2", "--out", tmp_path / "x.npy"
    )
    assert rc == 0 and seen["threads"] == 2 and "2 threads" in out
    monkeypatch.setenv("GENSAMP_NUM_THREADS", "1")
    rc, out, _ = call(capsys, "sample", models["lin"], "--out", tmp_path / "y.npy")
    assert rc == 0 and seen["threads"] is None and ", 1 thread," in out


def test_demo_and_bench_pass_threads_on(tmp_path, monkeypatch, capsys):
    from gensamp import benchmark, demo

    seen = {}

    def fake_demo(out, **k):
        seen.update(k)
        return {"targets": [], "seconds": 1.0}

    monkeypatch.setattr(demo, "run", fake_demo)
    rc, out, _ = call(capsys, "demo", "--out", tmp_path / "d", "--threads", "2", "--quiet")
    assert rc == 0 and seen["threads"] == 2 and "2 sampler threads" in out

    def fake_compare(d, h, n, threads, budget, reps):
        seen["bench_threads"] = threads
        return dict(
            T=5,
            cpp_chain_steps_s=2e6,
            torch_chain_steps_s=1e6,
            speedup=2.0,
            cpp_seconds=[1.0, 2.0],
            torch_seconds=[3.0, 4.0],
        )

    monkeypatch.setattr(benchmark, "compare", fake_compare)
    rc, out, _ = call(capsys, "bench", "--quick", "--threads", "1", "--quiet")
    assert rc == 0 and seen["bench_threads"] == 1
    head = " ".join(out.split("| d |")[0].split())
    for needle in (
        "the PyTorch loop: batched annealed Langevin",
        "torch.no_grad()",
        "SIMD",
        "cores",
        "1 thread for both",
        "best of 3 repeats",
        "spread",
    ):
        assert needle in head, (needle, head)
    rows = [ln for ln in out.splitlines() if ln.startswith("| 1 | 128 |")]
    assert len(rows) == 2 and all("| 1.50-4.00x |" in ln for ln in rows)


def test_sampling_shows_progress_on_a_terminal(tmp_path, models):
    master, slave = pty.openpty()
    # a pty starts 0 columns wide, and tqdm fits its line to the width: give it a real one
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gensamp",
            "sample",
            str(models["lin"]),
            "--n",
            "20000",
            "--T",
            "40000",  # several seconds: the bar shows once a run has taken 2 s
            "--out",
            str(tmp_path / "x.npy"),
        ],
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        seen += chunk
    out, _ = p.communicate(timeout=120)
    os.close(master)
    assert p.returncode == 0
    text = seen.decode(errors="replace")
    assert "gensamp: sampling 20000 chains x 40000 steps (Langevin) on" in text, text
    # the engine's bar: chains done out of 20.0k, a percentage, the elapsed time
    assert "chain" in text and "/20.0k" in text and "%|" in text and "[00:0" in text, text
    assert b"wrote 20000 samples" in out


def test_stage_lines_when_not_a_terminal(tmp_path, models):
    r = run("sample", models["lin"], "--out", tmp_path / "x.npy")
    assert r.returncode == 0
    assert r.stderr.splitlines() == [
        "gensamp: sampling 1000 chains x 200 steps (Langevin) on "
        f"{gensamp._resources.resolve_threads(None)} threads ..."
    ]
    r = run("sample", models["lin"], "--quiet", "--out", tmp_path / "y.npy")
    assert r.returncode == 0 and r.stderr == ""


# ---- round trips -------------------------------------------------------------------------------


def test_sample_and_plot_round_trip(tmp_path):
    w = linear_score()
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


def test_plot_leaves_out_non_finite_rows_of_a_1d_file(tmp_path, capsys):
    np.save(tmp_path / "s.npy", np.array([0.0, 1.0, np.nan, 2.0, np.inf]))
    rc, out, err = call(capsys, "plot", tmp_path / "s.npy", "--out", tmp_path / "p.png")
    assert rc == 0, err
    assert "2 of 5 rows" in err and "3 samples, d=1" in out


def test_plot_2d_puts_data_and_samples_side_by_side(tmp_path):
    import matplotlib.image as mpimg

    np.save(tmp_path / "s.npy", np.random.default_rng(0).standard_normal((100_000, 2)))
    png = tmp_path / "p.png"
    r = run("plot", tmp_path / "s.npy", "--data", "two_moons", "--out", png)
    assert r.returncode == 0, r.stderr
    assert "100000 samples, d=2, with 100000 data points" in r.stdout
    img = mpimg.imread(png)
    assert img.shape[1] > 1.4 * img.shape[0]  # two panels side by side, not one overlay


def test_train_then_sample(tmp_path):
    model = tmp_path / "ncsn.safetensors"
    r = run("train", "ncsn", "ncsn_mixture_2d", "--n", "500", "--epochs", "2", "--out", model)
    assert r.returncode == 0, r.stderr
    assert "training ncsn on 500 points x d=2: up to 2 epochs on 1 torch thread" in r.stderr
    assert "2 epochs" in r.stdout and "on 1 torch thread; saved" in r.stdout
    w = gensamp.load(model)
    assert w.role == "ncsn" and w.dim == 2
    assert set(w.sampler) == {"sigmas", "eps", "T", "method", "steps"}
    out = tmp_path / "s.npy"
    r = run("sample", str(model), "--n", "100", "--T", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert np.load(out).shape == (100, 2)


def test_train_an_image_vae_then_sample(tmp_path):
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    data = tmp_path / "pixels.npy"
    np.save(data, rng.uniform(0, 1, (200, 6)))
    model = tmp_path / "vae.safetensors"
    r = run(
        "train", "vae", data, "--likelihood", "continuous_bernoulli", "--prior", "mixture",
        "--prior-components", "3", "--beta", "0.5", "--epochs", "2", "--out", model,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    w = gensamp.load(model)
    assert w.likelihood == "continuous_bernoulli" and w.prior is not None
    assert len(w.prior[0]) == 3 and w.latent_dim == 12  # the image latent default
    assert w.output_dim == 6  # logits: one per pixel, not [mean | log-variance]
    out = tmp_path / "s.npy"
    r = run("sample", model, "--n", "50", "--out", out)
    assert r.returncode == 0, r.stderr
    x = np.load(out)
    assert x.shape == (50, 6) and x.min() >= 0 and x.max() <= 1


def test_image_vae_refusals_are_one_line(tmp_path, capsys):
    data = tmp_path / "signed.npy"
    np.save(data, np.linspace(-1, 1, 40).reshape(20, 2))
    out = tmp_path / "vae.safetensors"
    rc, _, err = call(
        capsys, "train", "vae", data, "--likelihood", "bernoulli", "--quiet", "--out", out
    )
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "--likelihood bernoulli needs data in [0, 1]" in err
    assert not out.exists()
    rc, _, err = call(capsys, "train", "vae", data, "--beta", "0", "--out", out)
    assert rc == 2 and "--beta" in err and not out.exists()


def test_bench_quick_prints_what_it_compares():
    r = run("bench", "--quick", timeout=600)
    assert r.returncode == 0, r.stderr
    assert "the PyTorch loop" in r.stdout and "machine:" in r.stdout
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith("| 1 | 128 |")]
    assert len(rows) == 2
    for ln in rows:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        speedup = float(cells[6].rstrip("x"))
        lo, hi = (float(v) for v in cells[7].rstrip("x").split("-"))
        assert 0 < lo <= speedup <= hi
