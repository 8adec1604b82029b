"""Sample quality of the trained models, sampled by the C++ engine (issue 3's evidence).

Seed 1D mixture 1/4 N(-9, 1) + 3/4 N(4, 2^2): each model is trained on n = 5,000 points and
10,000 samples are drawn by the engine; they are compared with 100,000 exact samples
(Wasserstein-1, left-mode weight = share of x < -2.5; truth 0.25). The score-matching model's
relative score error E||s - grad log p||^2 / E||grad log p||^2 is measured on the training data.
2D mixture 0.2 N((-5,-5), I) + 0.8 N((5,5), I): NCSN + annealed Langevin against exact score
matching + plain Langevin (and the exact score + plain Langevin, to show that the wrong weights
are the sampler's, not the model's).

Each model draws --draws (default 30) x 10,000 samples (independent chains): the W1 of the
first 10,000 is reported, the mean over the draws with its standard error, and the share of
draws that meet issue 3's NCSN target W1 <= 0.10, because one draw's W1 varies by +-0.05 from
the binomial noise of its left share alone. Reference rows put the numbers in scale: the floor
for any model of these training points (10,000 points resampled from the training set: it
inherits the training set's own left share, off 0.25 by binomial noise) and exact i.i.d.
samples (what a model that knew the truth would reach).

NCSN options (``--options``): the NCSN variants issue 15 added -- residual blocks, a Gaussian
Fourier embedding of log sigma, EDM preconditioning, all three -- against the default plain
MLP, each trained on the seed 1D mixture (same data, seeds, epochs) and sampled with the
stored default sampler (gensamp.sample); merged into the results file under "ncsn_options".

Usage: python bench/quality.py [--seeds 0,1,2,3,4] [--draws 30] [--out bench/results/quality.json]
       python bench/quality.py --options [--seeds 0,1,2] [--draws 10]
Training uses one torch thread per model (small MLPs: intra-op threading only adds
synchronisation, measured 0.7 vs 24 ms per step with the second core busy); the engine uses
all cores for sampling.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))  # run from a checkout without installing

import gensamp  # noqa: E402
from gensamp import datasets as D  # noqa: E402
from gensamp import metrics as M  # noqa: E402
from gensamp.learn import train_ncsn, train_score, train_vae  # noqa: E402

N_TRAIN, N_SAMPLES, N_REF = 5000, 10_000, 100_000
N_DRAWS = 30  # independent draws of N_SAMPLES per model (--draws): one draw's W1 is noisy
W1_TARGET = 0.10  # issue 3's NCSN target for one draw of N_SAMPLES
LEFT = -2.5  # left-mode boundary of the seed mixture


def _left(y: np.ndarray) -> float:
    return float(np.mean(y[:, 0] < LEFT))


def _timed(f, *a, **k):
    t = time.perf_counter()
    out = f(*a, **k)
    return out, time.perf_counter() - t


def _draws(y: np.ndarray, ref: np.ndarray, k: int) -> dict[str, Any]:
    """W1 and left weight of each of the k independent N_SAMPLES-chunks of y (chains
    are independent, so the chunks are independent draws) and of all of y together.

    One draw of 10,000 is a noisy yardstick: the left share alone has binomial SE 0.0043,
    i.e. 0.056 of W1 across the 13-unit gap, so the same model scores 0.05-0.16 from draw to
    draw. The mean over draws is the model's expected W1 at 10,000 samples."""
    w1 = [M.wasserstein_1d(c, ref) for c in np.split(y, k)]
    left = [_left(c) for c in np.split(y, k)]
    return {
        "w1": w1[0],
        "left": left[0],
        "w1_draws": w1,
        "left_draws": left,
        "w1_mean": float(np.mean(w1)),
        "w1_se": float(np.std(w1, ddof=1) / np.sqrt(len(w1))),
        "pass_rate": float(np.mean(np.asarray(w1) <= W1_TARGET)),
        "w1_all": M.wasserstein_1d(y, ref),
        "left_all": _left(y),
    }


def seed_1d(seed: int, draws: int) -> dict[str, Any]:
    x, mix = D.seed_mixture_1d(N_TRAIN, seed=seed, return_mixture=True)
    ref = mix.sample(N_REF, seed=10_000 + seed)
    n = N_SAMPLES * draws
    # The floor for any model fitted to these 5,000 points: 10,000-draws resampled from the
    # training points themselves (a perfect model of the training set, which cannot know
    # that its left share is off the truth by binomial noise, SE 0.006 at n = 5,000).
    rng = np.random.default_rng(40_000 + seed)
    boot = x[rng.integers(0, len(x), n)]
    out: dict[str, Any] = {
        "data": {"left": _left(x), "w1": M.wasserstein_1d(x, ref)},
        "bootstrap": _draws(boot, ref, draws),
        "iid_exact": _draws(mix.sample(n, seed=20_000 + seed), ref, draws),
    }

    def row(y, t_train, t_sample, extra=None):
        r = _draws(y, ref, draws)
        r.update(
            {"far": M.far_from_modes(y[:N_SAMPLES], mix), "train_s": t_train, "sample_s": t_sample}
        )
        r.update(extra or {})
        return r

    m, tt = _timed(train_ncsn, x, seed=seed, threads=1, progress=False)
    w = gensamp.export(m)
    y, ts = _timed(gensamp.annealed_langevin, w, n=n, seed=seed)
    out["ncsn_ald"] = row(
        y,
        tt,
        ts,
        {"sampler": w.sampler | {"L": len(w.sampler["sigmas"])}, "epochs": m.history.epochs},
    )

    m, tt = _timed(train_vae, x, seed=seed, threads=1, progress=False)
    w = gensamp.export(m)
    y, ts = _timed(gensamp.vae_sample, w, n, seed=seed)
    held = mix.sample(2000, seed=30_000 + seed)
    out["vae"] = row(
        y,
        tt,
        ts,
        {
            "iwae_k100": float(m.log_likelihood(held, k=100).mean()),
            "elbo": float(m.elbo(held).mean()),
            "true_loglik": float(mix.log_prob(held).mean()),
            "epochs": m.history.epochs,
        },
    )

    m, tt = _timed(train_score, x, "exact", seed=seed, threads=1, progress=False)
    w = gensamp.export(m)
    y, ts = _timed(gensamp.langevin, w, n=n, seed=seed)
    out["sm_langevin"] = row(
        y,
        tt,
        ts,
        {
            "rel_score_error": M.score_error(w, mix, x, relative=True),
            "sampler": w.sampler,
            "epochs": m.history.epochs,
        },
    )
    return out


VARIANTS = {
    "plain MLP (default)": {},
    "residual": {"residual": True},
    "fourier embedding": {"embedding": "fourier"},
    "EDM preconditioning": {"precondition": "edm"},
    "residual + fourier + EDM": {"residual": True, "embedding": "fourier", "precondition": "edm"},
}


def ncsn_options(seed: int, draws: int) -> dict[str, Any]:
    x, mix = D.seed_mixture_1d(N_TRAIN, seed=seed, return_mixture=True)
    ref = mix.sample(N_REF, seed=10_000 + seed)
    out = {}
    for name, kw in VARIANTS.items():
        m, tt = _timed(train_ncsn, x, seed=seed, threads=1, progress=False, **kw)
        w = gensamp.export(m)
        y, ts = _timed(gensamp.sample, w, n=N_SAMPLES * draws, seed=seed)
        r = _draws(y, ref, draws)
        r.update(train_s=tt, sample_s=ts, format=1 if w.graph is None else 2, options=kw)
        out[name] = r
        print(
            f"  seed {seed} {name}: W1 {r['w1_mean']:.3f} +- {r['w1_se']:.3f}, left "
            f"{r['left_all']:.4f}, train {tt:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    return out


def main_options(seeds: list[int], draws: int, path: str) -> None:
    t0 = time.perf_counter()
    runs = {s: ncsn_options(s, draws) for s in seeds}
    lines = [
        f"### NCSN options on the seed 1D mixture (seeds {seeds}; {draws} draws of "
        f"{N_SAMPLES} from gensamp.sample's stored default): W1 mean over draws / left weight "
        "(truth 0.25)",
        "",
        "| variant | " + " | ".join(f"seed {s}" for s in seeds) + " | mean W1 | max weight error |",
        "|---|" + "---|" * (len(seeds) + 2),
    ]
    for name in VARIANTS:
        cells = [f"{runs[s][name]['w1_mean']:.3f} / {runs[s][name]['left_all']:.4f}" for s in seeds]
        mean = np.mean([runs[s][name]["w1_mean"] for s in seeds])
        worst = max(abs(runs[s][name]["left_all"] - 0.25) for s in seeds)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean:.3f} | {worst:.4f} |")
    table = "\n".join(lines)
    print(table)
    data: dict[str, Any] = {}
    if os.path.exists(path):
        with open(path) as fh:
            data = json.load(fh)
    data["ncsn_options"] = {
        "machine": machine(),
        "seeds": seeds,
        "draws": draws,
        "runs": {str(s): r for s, r in runs.items()},
        "table": table,
        "seconds": time.perf_counter() - t0,
    }
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2)


def ncsn_2d(seed: int) -> dict[str, Any]:
    x, mix = D.ncsn_mixture_2d(N_TRAIN, seed=seed, return_mixture=True)
    out: dict[str, Any] = {"data_w0": float(M.mode_weights(x, mix)[0])}

    def row(y, t_train, t_sample, extra=None):
        r = {
            "w0": float(M.mode_weights(y, mix)[0]),
            "far": M.far_from_modes(y, mix),
            "train_s": t_train,
            "sample_s": t_sample,
        }
        r.update(extra or {})
        return r

    m, tt = _timed(train_ncsn, x, seed=seed, threads=1, progress=False)
    w = gensamp.export(m)
    y, ts = _timed(gensamp.annealed_langevin, w, n=N_SAMPLES, seed=seed)
    out["ncsn_ald"] = row(y, tt, ts, {"sampler": w.sampler | {"L": len(w.sampler["sigmas"])}})

    m, tt = _timed(train_score, x, "exact", seed=seed, threads=1, progress=False)
    w = gensamp.export(m)
    eps, T = w.sampler["eps"], w.sampler["T"]
    # Both plain-Langevin rows start from the same points, N(0, I) in the model's coordinates
    # (the engine's default start), so they differ only in the score.
    x0 = w.shift + w.scale * np.random.default_rng(seed).standard_normal((N_SAMPLES, 2))
    y, ts = _timed(gensamp.langevin, w, eps, T, x0=x0, seed=seed)
    out["sm_langevin"] = row(
        y,
        tt,
        ts,
        {"rel_score_error": M.score_error(w, mix, x, relative=True), "sampler": w.sampler},
    )
    # The exact score with the same step (converted to data units), T and start: wrong
    # weights there are the sampler's doing, not the learned model's.
    eps_x = float(eps * np.mean(w.scale.astype(np.float64) ** 2))
    y, ts = _timed(gensamp.langevin, mix, eps_x, T, x0=x0, seed=seed)
    out["exact_langevin"] = row(y, 0.0, ts)
    return out


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "gensamp": gensamp.__version__,
        "simd": gensamp.simd_level(),
        "torch_threads_training": 1,
        "engine_threads": gensamp.samplers.resolve_threads(None),
    }


def fmt_1d(name: str, r: dict[str, Any], extra: str = "") -> str:
    return (
        f"| {name} | {r['w1']:.3f} | {r['w1_mean']:.3f} | "
        f"{r['left']:.4f} ({r['left'] - 0.25:+.4f}) | "
        f"{r['left_all']:.4f} | {r['far']:.4f} | "
        f"{r['train_s']:.1f} | {r['sample_s']:.1f} | {extra} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--seeds", default="0,1,2,3,4", help="data/model seeds for the 1D runs (first = headline)"
    )
    ap.add_argument("--seed-2d", type=int, default=0)
    ap.add_argument(
        "--draws",
        type=int,
        default=N_DRAWS,
        help="independent draws of 10,000 samples per model (>= 2)",
    )
    ap.add_argument("--out", default=os.path.join(HERE, "results", "quality.json"))
    ap.add_argument("--options", action="store_true", help="only the NCSN-options comparison")
    args = ap.parse_args()
    if args.draws < 2:
        ap.error("--draws must be at least 2 (the standard error needs two draws)")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if args.options:
        main_options(seeds, args.draws, args.out)
        return
    t0 = time.perf_counter()
    runs = {}
    for s in seeds:
        print(f"seed 1D mixture, seed {s} ...", file=sys.stderr, flush=True)
        runs[s] = seed_1d(s, args.draws)
    print("NCSN 2D mixture ...", file=sys.stderr, flush=True)
    two = ncsn_2d(args.seed_2d)

    h = runs[seeds[0]]
    lines = [
        f"### Seed 1D mixture (seed {seeds[0]}): n = {N_TRAIN} training points; W1 of "
        f"{N_SAMPLES} engine samples to {N_REF} exact samples",
        "",
        f"W1 (1 draw) is the first {N_SAMPLES} chains; W1 (mean) averages {args.draws} independent "
        f"draws of {N_SAMPLES}; left (all) pools all {N_SAMPLES * args.draws} chains. Sample s is "
        f"for all {N_SAMPLES * args.draws}.",
        "",
        "| model + sampler | W1 (1 draw) | W1 (mean) | left weight (1 draw; truth 0.25) | "
        "left (all) | far from modes | train s | sample s | notes |",
        "|---|---|---|---|---|---|---|---|---|",
        fmt_1d(
            "NCSN + annealed Langevin",
            h["ncsn_ald"],
            f"L={h['ncsn_ald']['sampler']['L']}, T={h['ncsn_ald']['sampler']['T']}",
        ),
        fmt_1d(
            "VAE (learned variance, decoder noise sampled)",
            h["vae"],
            f"IWAE(k=100) {h['vae']['iwae_k100']:.3f} >= ELBO {h['vae']['elbo']:.3f} "
            f"(true log-lik {h['vae']['true_loglik']:.3f})",
        ),
        fmt_1d(
            "score matching (exact trace) + plain Langevin",
            h["sm_langevin"],
            f"relative score error {h['sm_langevin']['rel_score_error']:.4f}",
        ),
        f"| floor: resampling the {N_TRAIN} training points | {h['bootstrap']['w1']:.3f} | "
        f"{h['bootstrap']['w1_mean']:.3f} | {h['bootstrap']['left']:.4f} | "
        f"{h['data']['left']:.4f} | | | | |",
        f"| reference: exact i.i.d. samples | {h['iid_exact']['w1']:.3f} | "
        f"{h['iid_exact']['w1_mean']:.3f} | {h['iid_exact']['left']:.4f} | "
        f"{h['iid_exact']['left_all']:.4f} | | | | |",
    ]
    if len(seeds) > 1:
        lines += [
            "",
            f"### All seeds ({', '.join(map(str, seeds))}): W1 (mean of {args.draws} draws) "
            f"/ left weight (all {N_SAMPLES * args.draws} chains)",
            "",
            "| seed | training data left | floor (resampled data) | NCSN + ALD | VAE | "
            "SM + Langevin | SM rel. score error | NCSN / VAE train s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in seeds:
            r = runs[s]
            lines.append(
                f"| {s} | {r['data']['left']:.4f} | {r['bootstrap']['w1_mean']:.3f} | "
                f"{r['ncsn_ald']['w1_mean']:.3f} / {r['ncsn_ald']['left_all']:.4f} | "
                f"{r['vae']['w1_mean']:.3f} / {r['vae']['left_all']:.4f} | "
                f"{r['sm_langevin']['w1_mean']:.3f} / {r['sm_langevin']['left_all']:.4f} | "
                f"{r['sm_langevin']['rel_score_error']:.4f} | "
                f"{r['ncsn_ald']['train_s']:.0f} / {r['vae']['train_s']:.0f} |"
            )

        def avg(key: str, metric: str) -> float:
            return float(np.mean([runs[s][key][metric] for s in seeds]))

        def worst(key: str) -> float:
            return float(max(abs(runs[s][key]["left_all"] - 0.25) for s in seeds))

        lines.append(
            f"| mean | | {avg('bootstrap', 'w1_mean'):.3f} | {avg('ncsn_ald', 'w1_mean'):.3f} "
            f"(max weight error {worst('ncsn_ald'):.4f}) | {avg('vae', 'w1_mean'):.3f} "
            f"(max weight error {worst('vae'):.4f}) | {avg('sm_langevin', 'w1_mean'):.3f} | "
            f"{avg('sm_langevin', 'rel_score_error'):.4f} | "
            f"{avg('ncsn_ald', 'train_s'):.0f} / {avg('vae', 'train_s'):.0f} |"
        )
    lines += [
        "",
        f"### The NCSN target (W1 <= {W1_TARGET} for one draw of {N_SAMPLES}), draw by draw: "
        f"mean W1 +- standard error over {args.draws} draws, and the share of draws that meet it",
        "",
        "| seed | NCSN + ALD | floor: resampled training data | exact i.i.d. samples |",
        "|---|---|---|---|",
    ]
    for s in seeds:
        lines.append(
            "| "
            + " | ".join(
                [str(s)]
                + [
                    f"{runs[s][k]['w1_mean']:.3f} +- "
                    f"{runs[s][k]['w1_se']:.3f}, {runs[s][k]['pass_rate']:.0%} meet it"
                    for k in ("ncsn_ald", "bootstrap", "iid_exact")
                ]
            )
            + " |"
        )
    lines += [
        "",
        f"### NCSN 2D mixture (seed {args.seed_2d}): weight of the (-5,-5) mode, truth 0.2 "
        f"(training data: {two['data_w0']:.4f})",
        "",
        "| model + sampler | (-5,-5) weight | far from modes | train s | sample s |",
        "|---|---|---|---|---|",
    ]
    for key, name in (
        ("ncsn_ald", "NCSN + annealed Langevin"),
        ("sm_langevin", "score matching (exact) + plain Langevin"),
        ("exact_langevin", "exact score + the same plain Langevin"),
    ):
        r = two[key]
        note = f" (rel. score error {r['rel_score_error']:.4f})" if "rel_score_error" in r else ""
        lines.append(
            f"| {name}{note} | {r['w0']:.4f} ({r['w0'] - 0.2:+.4f}) | {r['far']:.4f} | "
            f"{r['train_s']:.1f} | {r['sample_s']:.1f} |"
        )
    lines += [
        "",
        f"total {time.perf_counter() - t0:.0f} s; {machine()['platform']}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}",
    ]
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(
            {
                "machine": machine(),
                "settings": {
                    "n_train": N_TRAIN,
                    "n_samples": N_SAMPLES,
                    "n_reference": N_REF,
                    "draws": args.draws,
                    "left_boundary": LEFT,
                    "seeds": seeds,
                    "seed_2d": args.seed_2d,
                },
                "seed_1d": {str(k): v for k, v in runs.items()},
                "ncsn_2d": two,
                "table": text,
            },
            fh,
            indent=2,
        )
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
