"""The architecture: what works without torch, the activation table, the validation rules."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import gensamp
import numpy as np
import pytest
from gensamp import _validate as V
from gensamp import activations

# A process where `import torch` fails, as on a machine without it: everything but training
# and exporting must work there.
NO_TORCH = textwrap.dedent(
    """
    import importlib.abc, sys

    class _NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError("No module named 'torch' (blocked by the test)")
            return None

    sys.meta_path.insert(0, _NoTorch())
    import numpy as np
    import gensamp
    from gensamp import cli, datasets, metrics, reference, schedules

    rng = np.random.default_rng(0)
    layers = [(rng.normal(size=(16, 3)) * 0.3, np.zeros(16)),
              (rng.normal(size=(2, 16)) * 0.1, np.zeros(2))]
    w = gensamp.Weights(layers, ["silu"], sigma_input="log_sigma", divide_by_sigma=True,
                        sampler={"sigmas": [3.0, 1.0, 0.3], "eps": 0.01, "T": 20})
    path = sys.argv[1] + "/net.safetensors"
    w.save(path)
    x = gensamp.annealed_langevin(path, n=64, seed=1)
    ref = reference.annealed_langevin(path, n=64, seed=1)
    assert np.max(np.abs(x - ref) / (1 + np.abs(ref))) < 1e-4
    lp, lp_ref = gensamp.log_prob(path, x, steps=4), reference.log_prob(path, x, steps=4)
    assert np.max(np.abs(lp - lp_ref) / (1 + np.abs(lp_ref))) < 1e-4
    mix = datasets.true_mixture("seed_mixture_1d")
    y = gensamp.langevin(mix, 0.1, 50, n=100, seed=0)
    dec = gensamp.Weights([(rng.normal(size=(8, 2)), np.zeros(8)),
                           (rng.normal(size=(4, 8)), np.zeros(4))], ["tanh"], role="vae_decoder")
    assert gensamp.vae_sample(dec, 10).shape == (10, 2)
    assert metrics.wasserstein_1d(y[:, 0], mix.sample(100, seed=1)[:, 0]) >= 0
    assert len(schedules.ncsn_defaults(datasets.seed_mixture_1d(200))["sigmas"]) >= 2
    assert cli.main(["sample", path, "--n", "10", "--out", sys.argv[1] + "/s.npy"]) == 0
    try:
        gensamp.train_ncsn
    except ImportError as exc:
        assert "torch" in str(exc)
    else:
        raise AssertionError("train_ncsn imported without torch")
    assert "torch" not in sys.modules
    print("ok")
    """
)


def test_sampling_works_where_torch_cannot_be_imported(tmp_path):
    r = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("ok")


def test_one_activation_table_serves_format_exporter_and_models():
    import torch
    from gensamp.learn.exporter import _activation_name
    from gensamp.learn.models import ACTIVATIONS

    assert set(ACTIVATIONS) == set(activations.HIDDEN)
    assert set(gensamp.weights.ACTIVATIONS) == set(activations.NAMES)
    for name, make in ACTIVATIONS.items():
        # what the models build is what the exporter maps back to the same engine name
        assert _activation_name(make()) == name
    with pytest.raises(TypeError, match="negative_slope"):
        _activation_name(torch.nn.LeakyReLU(0.2))
    with pytest.raises(ValueError, match="unknown activation"):
        activations.check("mish")


@pytest.mark.parametrize("value", [2.0, np.int64(2), 2])
def test_one_integer_rule_accepts_integral_values(value):
    assert V.as_int(value, "n", 1) == 2


@pytest.mark.parametrize(
    ("value", "exc"), [(2.5, TypeError), (True, TypeError), ("2", TypeError), (0, ValueError)]
)
def test_one_integer_rule_refuses_the_rest(value, exc):
    with pytest.raises(exc, match="n must be"):
        V.as_int(value, "n", 1)


def test_the_integer_rule_is_the_same_in_training_and_sampling(seed_mixture):
    from gensamp.learn import FitConfig

    # 2.0 epochs and 2.0 chains mean the same thing to every call; 2.5 is refused by both
    assert FitConfig(epochs=2.0).epochs == 2
    assert gensamp.langevin(seed_mixture, 0.1, 2.0, n=2.0).shape == (2, 1)
    with pytest.raises(TypeError, match="epochs must be an integer"):
        FitConfig(epochs=2.5)
    with pytest.raises(TypeError, match="T must be an integer"):
        gensamp.langevin(seed_mixture, 0.1, 2.5, n=2)


@pytest.mark.parametrize("bad", [[1.0, 1.0], [1.0, 2.0], [1.0, -0.5], [np.nan], []])
def test_one_sigma_rule_everywhere(bad, seed_mixture):
    from gensamp.learn.models import NCSN

    checks = [
        lambda: V.as_sigmas(bad),
        lambda: gensamp.annealed_langevin(seed_mixture, bad, 0.1, 2),
        lambda: gensamp.Weights(
            [(np.ones((1, 2)), np.zeros(1))], [], sigma_input="sigma", sampler={"sigmas": bad}
        ),
        lambda: NCSN(1, bad),
    ]
    for check in checks:
        with pytest.raises(ValueError, match="sigmas"):
            check()


def test_fit_options_are_checked_by_name():
    from gensamp.learn import train_vae

    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'"):
        train_vae(np.zeros((10, 1)), epoch=3)
    with pytest.raises(TypeError, match="fit must be a gensamp.FitConfig"):
        train_vae(np.zeros((10, 1)), fit={"epochs": 3})


def test_no_bench_script_shadows_an_installed_module():
    # Python puts a script's own folder first on sys.path: bench/distributed.py once hid the
    # `distributed` package from itself and from any test collected after bench/ was on the path.
    import importlib.util
    import pathlib

    bench = pathlib.Path(__file__).resolve().parent.parent / "bench"
    scripts = sorted(p.stem for p in bench.glob("*.py"))
    assert scripts, "no bench scripts found"
    for name in scripts:
        spec = importlib.util.find_spec(name)
        origin = getattr(spec, "origin", None) or ""
        assert spec is None or pathlib.Path(origin).resolve().parent == bench, (
            f"bench/{name}.py has the name of an installed module ({origin})"
        )
