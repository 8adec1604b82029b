"""`gensamp demo`: the seed experiment done right, measured, with figures and a report.

The deck trained a VAE, a score-matching model and an NCSN on the 1D mixture
1/4 N(-9, 1) + 3/4 N(4, 2^2) and got a unimodal VAE blur, a score-matching sampler collapsed to
one mode, and a broken NCSN. Here each model is trained in PyTorch, exported, sampled by the
C++ engine and compared with the truth: Wasserstein-1, KS, mode weights, score error.
"""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Any

import numpy as np

from . import datasets, metrics, plots
from .benchmark import machine
from .export import export
from .samplers import annealed_langevin, langevin, resolve_threads, vae_sample
from .train import train_ncsn, train_score, train_vae

# Training settings per mode. Full: the training functions' defaults on the issue's evidence
# protocol (n = 5,000 training points, 10,000 samples). Quick: the same pipeline, smaller, for
# tests (bounds in QUICK_BOUNDS). torch trains on one thread: for these small MLPs intra-op
# threading only adds synchronisation.
FULL = dict(n_train=5_000, n_samples=10_000, n_truth=100_000,
            ncsn=dict(), vae=dict(), sm=dict(), ncsn2d=dict(), sm2d=dict())
QUICK = dict(n_train=2_000, n_samples=4_000, n_truth=20_000,
             ncsn=dict(epochs=100), vae=dict(epochs=150), sm=dict(epochs=60),
             ncsn2d=dict(epochs=60), sm2d=dict(epochs=30))
TRAIN_THREADS = 1

# (metric key path, bound, direction). Full: the training issue's targets. Quick: looser
# bounds for the small run (documented in the report), still failing on a broken model.
FULL_BOUNDS = {
    "ncsn_ald.w1": 0.10, "ncsn_ald.weight_error": 0.02,
    "vae.w1": 0.30, "vae.weight_error": 0.03,
    "sm_langevin.score_rel_error": 0.05,
    "ncsn2d_ald.weight_error": 0.03,
    "exact2d_ald.weight_error": 0.02,
}
QUICK_BOUNDS = {
    "ncsn_ald.w1": 0.35, "ncsn_ald.weight_error": 0.05,
    "vae.w1": 0.8, "vae.weight_error": 0.05,
    "sm_langevin.score_rel_error": 0.1,
    "ncsn2d_ald.weight_error": 0.05,
    "exact2d_ald.weight_error": 0.03,
}
SCHED_2D = dict(sigmas=np.geomspace(10, 0.1, 10), eps=0.2 * 0.1**2, T=400)


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, flush=True)


def _sample_metrics(x: np.ndarray, truth: np.ndarray, mix: Any) -> dict[str, Any]:
    w = metrics.mode_weights(x, mix)
    out = {"mode_weights": w.tolist(), "weight_error": float(np.max(np.abs(w - mix.weights))),
           "far_from_modes": metrics.far_from_modes(x, mix)}
    if x.shape[1] == 1:
        out["w1"] = metrics.wasserstein_1d(x[:, 0], truth[:, 0])
        out["ks"] = metrics.ks_statistic(x[:, 0], truth[:, 0])
    else:
        out["energy_distance"] = metrics.energy_distance(x[:5000], truth[:5000])
    return out


def _timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run(out: str = "gensamp-demo", *, quick: bool = False, seed: int = 0,
        quiet: bool = False, progress: bool | None = None) -> dict[str, Any]:
    """Run the demo; write figures, report.md and report.json to ``out``; return the report."""
    cfg = QUICK if quick else FULL
    bounds = QUICK_BOUNDS if quick else FULL_BOUNDS
    os.makedirs(out, exist_ok=True)
    t_start = time.perf_counter()
    threads = resolve_threads(None)
    n = cfg["n_samples"]
    report: dict[str, Any] = {"mode": "quick" if quick else "full", "seed": seed,
                              "threads": threads, "settings": {k: v for k, v in cfg.items()}}
    res: dict[str, dict[str, Any]] = {}
    files: list[str] = []

    # ---- data --------------------------------------------------------------------------
    x_train, mix = datasets.seed_mixture_1d(cfg["n_train"], seed, return_mixture=True)
    truth = mix.sample(cfg["n_truth"], seed=seed + 10_000)
    files.append(plots.hist_1d(os.path.join(out, "data.png"), x_train, mixture=mix,
                               title=f"seed mixture: {len(x_train)} training points"))
    # What a perfect model of these training points would score: n points resampled from
    # them. It keeps the training set's own left share (binomial noise around 0.25), which no
    # model can know to correct, so it bounds what W1 the learned models can reach.
    boot = x_train[np.random.default_rng(seed + 40_000).integers(0, len(x_train), n)]
    res["floor_resampled_data"] = _sample_metrics(boot, truth, mix)

    # ---- NCSN + annealed Langevin --------------------------------------------------------
    _log("[1/6] NCSN on the 1D mixture: training (PyTorch), then annealed Langevin (C++)", quiet)
    ncsn, t_tr = _timed(lambda: train_ncsn(x_train, seed=seed, progress=progress,
                                               threads=TRAIN_THREADS, **cfg["ncsn"]))
    w_ncsn = export(ncsn)
    x_ald, t_s = _timed(lambda: annealed_langevin(w_ncsn, n=n, seed=seed))
    steps = n * len(w_ncsn.sampler["sigmas"]) * w_ncsn.sampler["T"]
    res["ncsn_ald"] = dict(_sample_metrics(x_ald, truth, mix), train_seconds=t_tr,
                           sample_seconds=t_s, chain_steps_per_s=steps / t_s,
                           sampler=w_ncsn.sampler, epochs=ncsn.history.epochs)

    # ---- VAE -----------------------------------------------------------------------------
    _log("[2/6] VAE with a learned-variance decoder: training, then ancestral sampling (C++)", quiet)
    vae, t_tr = _timed(lambda: train_vae(x_train, seed=seed, progress=progress,
                                             threads=TRAIN_THREADS, **cfg["vae"]))
    w_vae = export(vae)
    x_vae, t_s = _timed(lambda: vae_sample(w_vae, n, seed=seed))
    res["vae"] = dict(_sample_metrics(x_vae, truth, mix), train_seconds=t_tr, sample_seconds=t_s,
                      epochs=vae.history.epochs)

    # ---- exact score matching + plain Langevin ------------------------------------------
    _log("[3/6] score matching (exact Jacobian trace): training, then plain Langevin (C++)", quiet)
    sm, t_tr = _timed(lambda: train_score(x_train, "exact", seed=seed, progress=progress,
                                              threads=TRAIN_THREADS, **cfg["sm"]))
    w_sm = export(sm)
    x_sm, t_s = _timed(lambda: langevin(w_sm, n=n, seed=seed))  # its stored eps and T
    res["sm_langevin"] = dict(
        _sample_metrics(x_sm, truth, mix), train_seconds=t_tr, sample_seconds=t_s,
        chain_steps_per_s=n * w_sm.sampler["T"] / t_s, sampler=w_sm.sampler,
        score_rel_error=metrics.score_error(w_sm, mix, x_train, relative=True),
        epochs=sm.history.epochs)

    for key, x, name in (("ncsn_ald", x_ald, "NCSN + annealed Langevin"),
                         ("vae", x_vae, "VAE (decoder noise sampled)"),
                         ("sm_langevin", x_sm, "score matching + Langevin")):
        r = res[key]
        fname = {"ncsn_ald": "ald_samples.png", "vae": "vae_samples.png", "sm_langevin": "sm_samples.png"}[key]
        files.append(plots.hist_1d(
            os.path.join(out, fname), x, mixture=mix,
            title=f"{name}\nW1={r['w1']:.3f}, mode weights {plots._weights_text(r['mode_weights'])} "
                  f"(true [0.25, 0.75])"))

    # ---- exact scores in 2D: Song & Ermon Fig. 3 ---------------------------------------
    _log("[4/6] exact scores on the 2D mixture: i.i.d. vs Langevin vs annealed Langevin", quiet)
    x2, mix2 = datasets.ncsn_mixture_2d(cfg["n_train"], seed, return_mixture=True)
    truth2 = mix2.sample(n, seed=seed + 20_000)
    x0 = np.random.default_rng(seed).uniform(-8, 8, size=(n, 2))
    lang2 = langevin(mix2, 0.1, 4000, x0=x0, seed=seed)
    ald2, t_s = _timed(lambda: annealed_langevin(mix2, x0=x0, seed=seed, **SCHED_2D))
    res["exact2d_iid"] = _sample_metrics(truth2, truth2, mix2)
    res["exact2d_langevin"] = _sample_metrics(lang2, truth2, mix2)
    res["exact2d_ald"] = dict(_sample_metrics(ald2, truth2, mix2), sample_seconds=t_s,
                              chain_steps_per_s=n * 10 * SCHED_2D["T"] / t_s)
    files.append(plots.scatter_panels(os.path.join(out, "true_scores.png"), [
        (f"i.i.d. samples\nweights {plots._weights_text(res['exact2d_iid']['mode_weights'])}", truth2),
        (f"Langevin (exact scores)\nweights {plots._weights_text(res['exact2d_langevin']['mode_weights'])}", lang2),
        (f"annealed Langevin (exact scores)\nweights {plots._weights_text(res['exact2d_ald']['mode_weights'])}", ald2),
    ], mixture=mix2, lim=9.5))

    # ---- learned models in 2D ----------------------------------------------------------
    _log("[5/6] NCSN and score matching on the 2D mixture (learned scores)", quiet)
    ncsn2, t_tr = _timed(lambda: train_ncsn(x2, seed=seed, progress=progress,
                                             threads=TRAIN_THREADS, **cfg["ncsn2d"]))
    w_ncsn2 = export(ncsn2)
    x_n2 = annealed_langevin(w_ncsn2, n=n, seed=seed)
    res["ncsn2d_ald"] = dict(_sample_metrics(x_n2, truth2, mix2), train_seconds=t_tr)
    sm2, t_tr = _timed(lambda: train_score(x2, "exact", seed=seed, progress=progress,
                                             threads=TRAIN_THREADS, **cfg["sm2d"]))
    w_sm2 = export(sm2)
    x_s2 = langevin(w_sm2, n=n, seed=seed)
    res["sm2d_langevin"] = dict(_sample_metrics(x_s2, truth2, mix2), train_seconds=t_tr)

    # ---- score fields and training curves ----------------------------------------------
    _log("[6/6] figures and report", quiet)
    g = np.linspace(-14, 12, 400)[:, None]
    s_min = w_ncsn.sampler["sigmas"][-1] * float(w_ncsn.scale[0])  # data units
    line = dict(x=g[:, 0], true=mix.score(g)[:, 0], title="1D seed mixture: score",
                learned={"score matching": w_sm.score(g)[:, 0],
                         f"NCSN at sigma_L={s_min:.2g}": w_ncsn.score(g, w_ncsn.sampler["sigmas"][-1])[:, 0]})
    gx = np.linspace(-9, 9, 19)
    grid = np.stack(np.meshgrid(gx, gx), -1).reshape(-1, 2)
    sig_q = 1.0  # model units: a level where the field is smooth enough to read
    quiver = dict(x=gx, y=gx, true=mix2.score(grid, sig_q * float(w_ncsn2.scale[0])).reshape(19, 19, 2),
                  learned=w_ncsn2.score(grid, sig_q).reshape(19, 19, 2),
                  title=f"2D mixture: NCSN score vs true at sigma={sig_q * float(w_ncsn2.scale[0]):.2g}")
    files.append(plots.score_field(os.path.join(out, "score_field.png"), line, quiver))
    files.append(plots.training_curves(os.path.join(out, "training.png"), {
        "NCSN (1D)": ncsn.history, "VAE (1D)": vae.history, "score matching (1D)": sm.history,
        "NCSN (2D)": ncsn2.history}))

    checks = []
    for path, bound in bounds.items():
        key, metric = path.split(".")
        val = float(res[key][metric])
        checks.append(dict(metric=path, value=val, bound=bound, ok=val <= bound))
    report.update(results=res, targets=checks, machine=machine(),
                  seconds=time.perf_counter() - t_start,
                  python=platform.python_version())
    with open(os.path.join(out, "report.json"), "w") as fh:
        json.dump(report, fh, indent=1, default=float)
    files.append(os.path.join(out, "report.json"))
    files.append(_write_markdown(os.path.join(out, "report.md"), report))
    report["files"] = files
    _log(open(os.path.join(out, "report.md")).read(), quiet)
    return report


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "—" if v is None else format(v, spec)


def _write_markdown(path: str, rep: dict[str, Any]) -> str:
    r = rep["results"]
    m = rep["machine"]
    rows = [
        ("NCSN + annealed Langevin", r["ncsn_ald"]),
        ("VAE (learned variance, decoder noise sampled)", r["vae"]),
        ("score matching (exact trace) + plain Langevin", r["sm_langevin"]),
    ]
    lines = [
        f"# gensamp demo report ({rep['mode']} mode, seed {rep['seed']})", "",
        "## Seed 1D mixture 1/4 N(-9, 1) + 3/4 N(4, 2²)", "",
        f"{rep['settings']['n_train']} training points, {rep['settings']['n_samples']} samples drawn "
        f"by the C++ engine, compared with {rep['settings']['n_truth']} fresh true samples.", "",
        "| model + sampler | W1 | KS | mode weights (true 0.25, 0.75) | far from modes | train s | sample s | chain-steps/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, x in rows:
        cs = x.get("chain_steps_per_s")
        lines.append(f"| {name} | {x['w1']:.3f} | {x['ks']:.3f} | {plots._weights_text(x['mode_weights'])} | "
                     f"{x['far_from_modes']:.4f} | {x['train_seconds']:.1f} | {x['sample_seconds']:.2f} | "
                     f"{_fmt(cs, '.3g')} |")
    fl = r["floor_resampled_data"]
    lines.append(f"| floor: {rep['settings']['n_samples']} points resampled from the training set | "
                 f"{fl['w1']:.3f} | {fl['ks']:.3f} | {plots._weights_text(fl['mode_weights'])} | "
                 f"{fl['far_from_modes']:.4f} | | | |")
    lines += ["", "The floor row is a perfect model of the training points: their own left share is "
              "off 0.25 by binomial noise (SE 0.006 at 5,000 points), which no model of them can "
              "correct, and one draw of 10,000 adds SE 0.004 more (each 0.01 of weight error is "
              "0.13 of W1 across the 13-unit gap). See bench/quality.py for the mean over draws "
              "and seeds."]
    lines += ["", f"Score matching: relative score error E‖s−∇log p‖²/E‖∇log p‖² on the data = "
              f"{r['sm_langevin']['score_rel_error']:.4f} (the score is learned; plain Langevin "
              "still cannot move mass between separated modes).", "",
              "## NCSN 2D mixture 0.2 N((−5,−5), I) + 0.8 N((5,5), I): weight of (−5,−5)", "",
              "| samples | weight (−5,−5) | max weight error |", "|---|---|---|"]
    for name, key in (("i.i.d. (truth)", "exact2d_iid"), ("exact scores + Langevin", "exact2d_langevin"),
                      ("exact scores + annealed Langevin", "exact2d_ald"),
                      ("NCSN (learned) + annealed Langevin", "ncsn2d_ald"),
                      ("score matching (learned) + Langevin", "sm2d_langevin")):
        lines.append(f"| {name} | {r[key]['mode_weights'][0]:.3f} | {r[key]['weight_error']:.3f} |")
    lines += ["", "## Targets", "", "| metric | value | bound | |", "|---|---|---|---|"]
    for c in rep["targets"]:
        lines.append(f"| {c['metric']} | {c['value']:.4f} | ≤ {c['bound']} | {'ok' if c['ok'] else 'MISSED'} |")
    lines += ["", "## Machine", "",
              f"{m.get('cpu', m['machine'])}, {m['cpu_count']} cores, SIMD {m['simd']}, "
              f"{rep['threads']} sampler threads; Python {rep['python']}, torch {m['torch']}, "
              f"numpy {m['numpy']}, gensamp {m['gensamp']}. Total {rep['seconds']:.0f} s.", ""]
    with open(path, "w") as fh:
        fh.write("\n".join(lines))
    return path
