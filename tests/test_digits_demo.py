"""`gensamp demo digits` end to end on a subset: trains, samples with the engine, writes the
grids and a report whose numbers are finite and whose targets are listed."""

import json
import math
import os

import pytest

pytest.importorskip("sklearn")

from gensamp import digits_demo  # noqa: E402


def test_quick_digits_demo_writes_grids_and_a_report(tmp_path):
    rep = digits_demo.run(str(tmp_path), quick=True, quiet=True, threads=2)
    assert set(rep["models"]) == {"ncsn", "vae_mixture", "vae_mixture_mean", "vae_normal", "gmm40"}
    for key, m in rep["models"].items():
        for metric in ("energy_distance_sq", "mmd", "nn_ratio", "near_copies", "confidence"):
            assert math.isfinite(m[metric]), (key, metric)
        assert m["n_samples"] == digits_demo.QUICK["n_samples"]
        assert os.path.getsize(tmp_path / f"digits_{key}.png") > 5_000
    # the engine sampled the NCSN with its stored default, at the stored budget
    assert rep["models"]["ncsn"]["sampler"] == digits_demo.NCSN_SAMPLER
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["models"]["ncsn"]["energy_distance_sq"] == pytest.approx(
        rep["models"]["ncsn"]["energy_distance_sq"]
    )
    md = (tmp_path / "report.md").read_text()
    assert "baseline: 40-component GMM" in md and "not judged (quick)" in md
    assert "The VAE (mixture prior) against the 40-component Gaussian mixture:" in md
    assert {t["status"] for t in rep["targets"]} == {"not judged (quick)"}


def test_targets_are_judged_in_the_right_direction():
    models = {
        "ncsn": {
            "confidence": 0.9,
            "nn_ratio": 1.0,
            "near_copies": 0.0,
            "energy_distance_sq": 0.03,
        },
    }
    rows = {
        (t["model"], t["metric"], t["bound"]): t["status"]
        for t in digits_demo.judge_targets(models)
    }
    assert rows[("ncsn", "confidence", ">= 0.85")] == "MET"
    assert rows[("ncsn", "energy_distance_sq", "<= 0.02")] == "MISSED"
    assert rows[("ncsn", "nn_ratio", "<= 1.3")] == "MET"
    assert rows[("vae_mixture", "confidence", ">= 0.85")] == "MISSED"  # absent counts as missed


def test_the_report_says_which_deep_model_beats_the_mixture_baseline():
    gmm = {"energy_distance_sq": 0.008, "confidence": 0.90}
    models = {
        "gmm40": gmm,
        "ncsn": {"energy_distance_sq": 0.017, "confidence": 0.88},
        "vae_mixture": {"energy_distance_sq": 0.007, "confidence": 0.91},
    }
    ncsn, vae = digits_demo._against_baseline(models)[1:]
    assert ncsn.startswith("The NCSN") and ncsn.count("does not beat it") == 2
    assert "(0.0170 vs 0.0080)" in ncsn
    assert vae.startswith("The VAE") and "does not beat" not in vae and vae.count("beats it") == 2
    assert digits_demo._against_baseline({"ncsn": models["ncsn"]}) == []  # no baseline run
