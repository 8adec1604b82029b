"""`gensamp demo --quick` end to end: every file, valid images, the report's metrics.

Quick mode trains on 2,000 points for a few seconds per model; its bounds (demo.QUICK_BOUNDS,
printed in report.md) are looser than the full run's targets but still fail on the seed deck's
failure modes: a unimodal VAE or a one-mode sampler is off by 0.25 in weight and several
units of W1, an unlearned score has relative error ~1."""

import json
import subprocess
import sys

import pytest
from gensamp import demo

FILES = [
    "data.png",
    "vae_samples.png",
    "sm_samples.png",
    "ald_samples.png",
    "true_scores.png",
    "score_field.png",
    "training.png",
    "report.md",
    "report.json",
]


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "gensamp",
            "demo",
            "--quick",
            "--quiet",
            "--seed",
            "0",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr
    return out


def test_every_file_is_written(quick_demo):
    for name in FILES:
        assert (quick_demo / name).stat().st_size > 0, name


def test_figures_are_valid_images(quick_demo):
    import matplotlib.image as mpimg

    for name in FILES:
        if name.endswith(".png"):
            img = mpimg.imread(quick_demo / name)
            assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300, name
            assert img.std() > 0.01, f"{name} is blank"


def test_report_holds_the_metrics(quick_demo):
    rep = json.loads((quick_demo / "report.json").read_text())
    assert rep["mode"] == "quick"
    res = rep["results"]
    for key in ("ncsn_ald", "vae", "sm_langevin"):
        for metric in ("w1", "ks", "mode_weights", "train_seconds", "sample_seconds"):
            assert metric in res[key], (key, metric)
    assert res["ncsn_ald"]["chain_steps_per_s"] > 0
    checked = {t["metric"]: t for t in rep["targets"]}
    assert set(checked) == set(demo.QUICK_BOUNDS)
    for path, bound in demo.QUICK_BOUNDS.items():
        key, metric = path.split(".")
        # the target table reports the measured result against the documented bound...
        assert checked[path]["value"] == pytest.approx(res[key][metric], rel=1e-12), path
        assert checked[path]["bound"] == bound, path
        # ...and every quick-mode result meets it (judged here, not by the demo's own flag)
        assert res[key][metric] <= bound, (path, res[key][metric])
    # The exact-score comparison is the deck's point: annealed Langevin recovers the 0.2/0.8
    # weights, plain Langevin keeps the uniform start's 50/50 split.
    assert abs(res["exact2d_ald"]["mode_weights"][0] - 0.2) < 0.03
    assert res["exact2d_langevin"]["weight_error"] > 0.1
    md = (quick_demo / "report.md").read_text()
    assert "MISSED" not in md
    assert "Machine" in (quick_demo / "report.md").read_text()


def test_demo_is_reproducible(quick_demo, tmp_path):
    """Same seed, same report numbers (sampling is deterministic; training is seeded)."""
    rep1 = json.loads((quick_demo / "report.json").read_text())["results"]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "gensamp",
            "demo",
            "--quick",
            "--quiet",
            "--seed",
            "0",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr
    rep2 = json.loads((tmp_path / "report.json").read_text())["results"]
    for key in ("ncsn_ald", "vae", "sm_langevin", "exact2d_ald"):
        assert rep1[key]["mode_weights"] == rep2[key]["mode_weights"], key
