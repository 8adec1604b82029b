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


def _demo(out, *extra):
    return subprocess.run(
        [sys.executable, "-m", "gensamp", "demo", "--quick", "--seed", "0", "--out", str(out)]
        + list(extra),
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The quick demo with its output not a terminal (as under CI or `| tee`)."""
    out = tmp_path_factory.mktemp("demo")
    r = _demo(out)
    assert r.returncode == 0, r.stderr
    return out, r


@pytest.fixture(scope="module")
def quick_demo(quick_run):
    return quick_run[0]


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
    n = rep["settings"]["n_samples"]
    for path, bound in demo.QUICK_BOUNDS.items():
        key, metric = path.split(".")
        # the target table reports the measured result against the documented bound...
        value = res[key][metric]
        assert checked[path]["value"] == pytest.approx(value, rel=1e-12), path
        assert checked[path]["bound"] == bound, path
        # ...and every quick-mode result meets it or sits within one draw's noise of the floor
        # measured in the same run (judged here, not by the demo's own flag)
        floor_key = demo.FLOORS.get(key)
        second = None
        if floor_key:
            weights = [0.25, 0.75] if key in ("ncsn_ald", "vae") else [0.2, 0.8]
            noise = demo.draw_noise(metric, n, weights, 13.0)
            if noise is not None:
                second = res[floor_key][metric] + noise
        assert value <= bound or (second is not None and value <= second), (path, value)
        assert checked[path]["status"] in ("ok", "at the floor"), checked[path]
    # The exact-score comparison is the deck's point: annealed Langevin recovers the 0.2/0.8
    # weights, plain Langevin keeps the uniform start's 50/50 split.
    assert abs(res["exact2d_ald"]["mode_weights"][0] - 0.2) < 0.03
    assert res["exact2d_langevin"]["weight_error"] > 0.1
    md = (quick_demo / "report.md").read_text()
    assert not [ln for ln in md.splitlines() if ln.endswith("| MISSED |")]
    assert "Machine" in (quick_demo / "report.md").read_text()


def test_demo_is_reproducible(quick_demo, tmp_path):
    """Same seed, same report numbers (sampling is deterministic; training is seeded)."""
    rep1 = json.loads((quick_demo / "report.json").read_text())["results"]
    r = _demo(tmp_path, "--quiet")
    assert r.returncode == 0, r.stderr
    # --quiet: the final line only
    assert r.stdout.splitlines() == [ln for ln in r.stdout.splitlines() if "demo written" in ln]
    assert len(r.stdout.splitlines()) == 1 and r.stderr == ""
    rep2 = json.loads((tmp_path / "report.json").read_text())["results"]
    for key in ("ncsn_ald", "vae", "sm_langevin", "exact2d_ald", "ncsn2d_ald", "sm2d_langevin"):
        assert rep1[key]["mode_weights"] == rep2[key]["mode_weights"], key


def test_every_step_says_what_it_does_when_not_a_terminal(quick_run):
    """Off a terminal (no progress bars) every stage of every step prints a line."""
    lines = quick_run[1].stdout.splitlines()
    steps = [ln for ln in lines if ln.startswith("[")]
    assert [ln[:5] for ln in steps] == [f"[{i}/6]" for i in range(1, 7)]
    assert sum(ln.strip().startswith("training (") for ln in lines) == 5  # five models
    assert sum(ln.strip().startswith("trained:") for ln in lines) == 5
    # seven engine runs: 3 (1D) + 2 (exact 2D) + 2 (learned 2D), each announced and timed
    assert sum(ln.strip().startswith("sampling ") for ln in lines) == 7
    assert sum(ln.strip().startswith("sampled in ") for ln in lines) == 7
    assert lines[-1].startswith("demo written to") and "sampler threads" in lines[-1]


def test_judgement_against_the_floor():
    assert demo.judge(0.09, 0.10, 0.069, 0.056) == ("ok", pytest.approx(0.125))
    # issue 18's example: W1 0.114 > 0.10, but within one draw's noise of the floor 0.069
    assert demo.judge(0.114, 0.10, 0.069, 0.056)[0] == "at the floor"
    assert demo.judge(0.2, 0.10, 0.069, 0.056)[0] == "MISSED"
    assert demo.judge(0.2, 0.10, None, None) == ("MISSED", None)
    # one draw of 10,000 from the seed mixture: SE of the left share 0.0043, of W1 13x that
    assert demo.draw_noise("weight_error", 10_000, [0.25, 0.75], 13.0) == pytest.approx(
        0.00433, abs=1e-5
    )
    assert demo.draw_noise("w1", 10_000, [0.25, 0.75], 13.0) == pytest.approx(0.0563, abs=1e-4)
    assert demo.draw_noise("score_rel_error", 10_000, [0.25, 0.75], 13.0) is None


def test_report_explains_itself(quick_demo):
    md = (quick_demo / "report.md").read_text()
    for term in ("**W1**", "**KS**", "**far from modes**", "**energy distance**", "floor"):
        assert term in md, term
    for png in ("data.png", "ald_samples.png", "vae_samples.png", "sm_samples.png",
                "true_scores.png", "score_field.png", "training.png"):  # fmt: skip
        assert png in md, png
    assert "same 4,000 points, uniform" in md  # every 2D Langevin row starts alike
    # sub-second sampling times in ms, never "0.00"
    vae_row = next(ln for ln in md.splitlines() if ln.startswith("| VAE"))
    assert " ms |" in vae_row and "| 0.00 |" not in vae_row
