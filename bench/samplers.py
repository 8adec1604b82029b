"""The quality-cost frontier of gensamp's samplers (issue: samples per second at a quality).

    python bench/samplers.py [--smoke] [--seeds 10] [--n 20000] [--train-seeds 5]

Part 1, exact scores: every method of :mod:`gensamp.methods` at budgets 10 ... 3,000 score
evaluations per sample on the seed 1D mixture and the 2D toy (Song & Ermon's 0.2/0.8 mixture),
``--seeds`` draws of ``--n`` chains each: W1 (1D) or energy distance (2D, on the first 4,000
samples) to as many fresh exact draws, and the mode-weight error, next to the floor (the same
numbers between two sets of exact draws). Also annealed Langevin's level count swept at each
budget (``ald_sweep``), the measurement behind :func:`gensamp.methods.ald_budget`.

Part 2, trained NCSNs: ``train_ncsn`` with its defaults on 5,000 points of the seed mixture
(training seeds 0 .. ``--train-seeds``-1), then the stored default of ``gensamp.sample`` and
the other methods at <= 100 evaluations against the 3,000-evaluation annealed Langevin the
model also stores (``annealed_langevin(w)``), 10 draws each: means over seeds x draws.

Part 3: the wall time of 10^6 samples from one trained model, default ``gensamp.sample``, and
annealed Langevin's 3,000-evaluation default on 10^5 chains (x10 for 10^6: it is linear in n).

Writes bench/results/samplers.json and samplers.png (samplers_smoke.* with --smoke).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any

import common
import gensamp
import numpy as np
from gensamp import datasets, methods, metrics

HERE = os.path.dirname(os.path.abspath(__file__))
BUDGETS = (10, 20, 50, 100, 300, 1000, 3000)
ED_POINTS = 4000  # energy distance is O(n^2): on this many samples


def _quality(x: np.ndarray, ref: np.ndarray, mix: gensamp.GaussianMixture) -> dict[str, float]:
    if mix.dim == 1:
        dist = metrics.wasserstein_1d(x[:, 0], ref[:, 0])
    else:
        dist = metrics.energy_distance(x[:ED_POINTS], ref[:ED_POINTS])
    return {"dist": float(dist), "mode_err": metrics.mode_weight_error(x, mix)}


def _summary(rows: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in rows[0]:
        v = np.array([r[k] for r in rows])
        out[k] = float(v.mean())
        out[k + "_sd"] = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return out


def exact_frontier(seeds: int, n: int, budgets: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("seed_mixture_1d", "ncsn_mixture_2d"):
        mix = datasets.true_mixture(name)
        refs = [mix.sample(n, seed=10_000 + k) for k in range(seeds)]
        floor = _summary(
            [_quality(mix.sample(n, seed=20_000 + k), refs[k], mix) for k in range(seeds)]
        )
        rows = []
        for method in methods.METHODS:
            for steps in budgets:
                if steps < methods.min_steps(method):
                    continue
                q, evals, secs = [], 0.0, []
                for k in range(seeds):
                    x, info = gensamp.sample(
                        mix, n, method=method, steps=steps, seed=k, return_info=True
                    )
                    q.append(_quality(x, refs[k], mix))
                    evals, secs = info["score_evals"], [*secs, info["seconds"]]
                rows.append(
                    {
                        "method": method,
                        "steps": steps,
                        "score_evals": evals,
                        "seconds": float(np.median(secs)),
                        **_summary(q),
                    }
                )
                print(
                    f"  {name:16s} {method:6s} {steps:5d}  dist {rows[-1]['dist']:.4f}  "
                    f"mode err {rows[-1]['mode_err']:.4f}",
                    flush=True,
                )
        out[name] = {
            "metric": "W1" if mix.dim == 1 else "energy distance",
            "floor": floor,
            "rows": rows,
        }
    return out


def ald_sweep(seeds: int, n: int, budgets: tuple[int, ...]) -> list[dict[str, Any]]:
    """Annealed Langevin at each budget over level counts L (T = (steps-1)//L, NCSNv2 step),
    and the rule's choice with and without its final denoising step."""
    from gensamp import samplers

    mix = datasets.true_mixture("seed_mixture_1d")
    smax, smin, mean, var = samplers._mixture_range(mix)
    refs = [mix.sample(n, seed=10_000 + k) for k in range(seeds)]
    start = (math.sqrt(smax**2 + var), mean.astype(np.float32))  # as gensamp.sample starts

    def w1(sigmas: list[float], eps: float, T: int, denoise: bool) -> float:
        sched = gensamp._core.annealed_schedule(sigmas, eps, T)
        w = []
        for k in range(seeds):
            x = samplers._execute(
                mix, sched, start[0], n, None, k, None, 0, denoise, None, 0, False, start[1]
            )[0]
            w.append(metrics.wasserstein_1d(x[:, 0], refs[k][:, 0]))
        return float(np.mean(w))

    rows: list[dict[str, Any]] = []
    for steps in budgets:
        for L in (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96):
            T = (steps - 1) // L
            if T < 1:
                continue
            sig = np.geomspace(smax, smin, L).tolist()
            W1 = w1(sig, methods._ncsnv2_eps(sig[0] / sig[1], T, smin), T, True)
            rows.append({"steps": steps, "L": L, "T": T, "W1": W1})
        if steps >= 3:
            b = methods.ald_budget(steps, smax, smin)
            for denoise in (True, False):
                W1 = w1(b["sigmas"], b["eps"], b["T"], denoise)
                L = len(b["sigmas"])
                rows.append(
                    {
                        "steps": steps,
                        "L": L,
                        "T": b["T"],
                        "W1": W1,
                        "rule": True,
                        "denoise": denoise,
                    }
                )
        best = min(
            (r for r in rows if r["steps"] == steps and "rule" not in r), key=lambda r: r["W1"]
        )
        rule = len(methods.ald_budget(steps, smax, smin)["sigmas"]) if steps >= 3 else "-"
        print(
            f"  ald sweep {steps:5d}: best L = {best['L']} (W1 {best['W1']:.4f}); rule L = {rule}",
            flush=True,
        )
    return rows


def old_advice(seeds: int, n: int) -> list[dict[str, Any]]:
    """The README's former advice (L = 10 geometric levels 20 -> 0.1, eps = 0.2 sigma_L^2) on
    the exact seed mixture, at several T: where it holds."""
    mix = datasets.true_mixture("seed_mixture_1d")
    refs = [mix.sample(n, seed=10_000 + k) for k in range(seeds)]
    rows = []
    for T in (10, 30, 100, 400, 1000):
        w = [
            _quality(
                gensamp.annealed_langevin(
                    mix, np.geomspace(20, 0.1, 10), 0.2 * 0.1**2, T, n=n, seed=k, progress=False
                ),
                refs[k],
                mix,
            )
            for k in range(seeds)
        ]
        rows.append({"T": T, "score_evals": 10 * T, **_summary(w)})
        print(f"  old advice T={T}: W1 {rows[-1]['dist']:.4f}", flush=True)
    return rows


def trained(train_seeds: int, draws: int, n: int, epochs: int | None) -> dict[str, Any]:
    mix = datasets.true_mixture("seed_mixture_1d")
    candidates = [
        (m, s) for m in methods.METHODS for s in (20, 50, 100) if s >= methods.min_steps(m)
    ]
    per_model = []
    for ts in range(train_seeds):
        x_train = datasets.seed_mixture_1d(5000, ts)
        t0 = time.perf_counter()
        kw = {} if epochs is None else {"epochs": epochs}
        w = gensamp.export(gensamp.train_ncsn(x_train, seed=ts, progress=False, **kw))
        t_train = time.perf_counter() - t0
        refs = [mix.sample(n, seed=30_000 + 100 * ts + k) for k in range(draws)]
        res: dict[str, Any] = {"train_seed": ts, "train_seconds": t_train, "stored": w.sampler}
        base = [
            _quality(gensamp.annealed_langevin(w, n=n, seed=k), refs[k], mix) for k in range(draws)
        ]
        res["ald_3000"] = _summary(base)
        q, info = [], {}
        for k in range(draws):
            x, info = gensamp.sample(w, n, seed=k, return_info=True)
            q.append(_quality(x, refs[k], mix) | {"left": float(np.mean(x[:, 0] < -2.5))})
        res["default"] = _summary(q) | {
            "method": info["method"],
            "score_evals": info["score_evals"],
        }
        for m, s in candidates:
            qq = [
                _quality(gensamp.sample(w, n, method=m, steps=s, seed=k), refs[k], mix)
                for k in range(draws)
            ]
            res[f"{m}_{s}"] = _summary(qq)
        per_model.append(res)
        print(
            f"  trained seed {ts}: ald-3000 W1 {res['ald_3000']['dist']:.4f}, default "
            f"{res['default']['method']} ({res['default']['score_evals']:.0f} evals) W1 "
            f"{res['default']['dist']:.4f}, left {res['default']['left']:.4f}",
            flush=True,
        )
    keys = [
        k for k in per_model[0] if isinstance(per_model[0][k], dict) and "dist" in per_model[0][k]
    ]
    mean = {
        k: {
            "dist": float(np.mean([r[k]["dist"] for r in per_model])),
            "mode_err": float(np.mean([r[k]["mode_err"] for r in per_model])),
        }
        for k in keys
    }
    mean["default"]["left"] = float(np.mean([r["default"]["left"] for r in per_model]))
    return {"models": per_model, "mean": mean}


def continuous(train_seeds: int, draws: int, n: int, epochs: int | None) -> dict[str, Any]:
    """train_ncsn with continuous=False (sigma drawn from the L levels only) against the default
    continuous=True (log-uniform sigma), both sampled by the default and by heun: the samplers
    that query sigma between the training levels are where the two could differ."""
    mix = datasets.true_mixture("seed_mixture_1d")
    kw = {} if epochs is None else {"epochs": epochs}
    out: dict[str, Any] = {}
    for cont in (True, False):
        rows = []
        for ts in range(train_seeds):
            x_train = datasets.seed_mixture_1d(5000, ts)
            net = gensamp.train_ncsn(x_train, seed=ts, progress=False, continuous=cont, **kw)
            w = gensamp.export(net)
            refs = [mix.sample(n, seed=30_000 + 100 * ts + k) for k in range(draws)]
            for method, steps in (("cas", 100), ("heun", 49), ("ald", 3001)):
                q = [
                    _quality(gensamp.sample(w, n, method=method, steps=steps, seed=k), refs[k], mix)
                    for k in range(draws)
                ]
                rows.append({"train_seed": ts, "method": method, "steps": steps, **_summary(q)})
        key = "continuous" if cont else "levels_only"
        out[key] = {
            f"{m}_{s}": float(np.mean([r["dist"] for r in rows if r["method"] == m]))
            for m, s in (("cas", 100), ("heun", 49), ("ald", 3001))
        }
        out[key + "_rows"] = rows
        print(f"  continuous={cont}: {out[key]}", flush=True)
    return out


def trained_2d(train_seeds: int, draws: int, n: int, epochs: int | None) -> dict[str, Any]:
    """The 2D toy (mode weight of (-5,-5), truth 0.2) and two moons (energy distance to held-out
    data next to the floor: held-out data against more held-out data) at the default, and
    every method at budgets 10-1,000 on the same trained models (3 draws of 4,000)."""
    out: dict[str, Any] = {}
    kw = {} if epochs is None else {"epochs": epochs}
    frontier_budgets = (10, 20, 50, 100, 300, 1000) if draws > 2 else (10, 50)
    frontier_draws = 3 if draws > 2 else 1
    for name in ("ncsn_mixture_2d", "two_moons"):
        rows = []
        frontier: list[dict[str, Any]] = []
        for ts in range(train_seeds):
            x_train = datasets.make(name, 5000, seed=ts)
            w = gensamp.export(gensamp.train_ncsn(x_train, seed=ts, progress=False, **kw))
            # every method at each budget on this model (energy distance needs only ED_POINTS)
            for method in methods.METHODS:
                for steps in frontier_budgets:
                    if steps < methods.min_steps(method):
                        continue
                    e = []
                    for k in range(frontier_draws):
                        x = gensamp.sample(w, ED_POINTS, method=method, steps=steps, seed=k)
                        held = datasets.make(name, ED_POINTS, seed=1000 + 10 * ts + k)
                        e.append(float(metrics.energy_distance(x, held)))
                    frontier.append(
                        {
                            "train_seed": ts,
                            "method": method,
                            "steps": steps,
                            "energy": float(np.mean(e)),
                        }
                    )
            for k in range(draws):
                x = gensamp.sample(w, n, seed=k)
                held = datasets.make(name, n, seed=1000 + 10 * ts + k)
                more = datasets.make(name, n, seed=5000 + 10 * ts + k)
                row = {
                    "train_seed": ts,
                    "energy": float(metrics.energy_distance(x[:ED_POINTS], held[:ED_POINTS])),
                    "floor": float(metrics.energy_distance(more[:ED_POINTS], held[:ED_POINTS])),
                }
                if name == "ncsn_mixture_2d":
                    mix = datasets.true_mixture(name)
                    row["weight_m5"] = float(metrics.mode_weights(x, mix)[0])
                rows.append(row)
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "train_seed"}
        table = {
            f"{m}_{b}": float(
                np.mean([r["energy"] for r in frontier if (r["method"], r["steps"]) == (m, b)])
            )
            for m, b in sorted({(r["method"], r["steps"]) for r in frontier})
        }
        out[name] = {"rows": rows, "mean": mean, "frontier": frontier, "frontier_mean": table}
        print(f"  {name}: {mean}", flush=True)
    return out


def timing(n_big: int) -> dict[str, Any]:
    w = gensamp.export(
        gensamp.train_ncsn(datasets.seed_mixture_1d(5000, 0), seed=0, progress=False)
    )
    gensamp.sample(w, 10_000)  # warm
    t0 = time.perf_counter()
    _, info = gensamp.sample(w, n_big, return_info=True, progress=False)
    t_new = time.perf_counter() - t0
    n_old = max(1, n_big // 10)
    t0 = time.perf_counter()
    gensamp.annealed_langevin(w, n=n_old)
    t_old = time.perf_counter() - t0
    return {
        "n": n_big,
        "default_seconds": t_new,
        "default_method": info["method"],
        "default_score_evals": info["score_evals"],
        "ald_3000_n": n_old,
        "ald_3000_seconds": t_old,
        "ald_3000_seconds_for_n": t_old * n_big / n_old,
        "threads": gensamp._core.max_threads(),
    }


def plot(data: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (name, part) in zip(axes, data["exact"].items()):
        for method in methods.METHODS:
            rows = [r for r in part["rows"] if r["method"] == method]
            ax.errorbar(
                [r["score_evals"] for r in rows],
                [r["dist"] for r in rows],
                yerr=[r["dist_sd"] for r in rows],
                marker="o",
                ms=3,
                label=method,
            )
        ax.axhline(part["floor"]["dist"], color="k", ls=":", label="exact draws (floor)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("score evaluations per sample")
        ax.set_ylabel(part["metric"])
        ax.set_title(f"{name}, exact scores")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


PARTS = ("exact", "ald_sweep", "old_advice", "trained", "trained_2d", "continuous", "timing")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (the test suite's run)")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--train-seeds", type=int, default=5)
    ap.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="which parts to run (others are kept from an existing JSON): " + ",".join(PARTS),
    )
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    parts = args.parts.split(",")
    if not set(parts) <= set(PARTS):
        ap.error(f"--parts must be among {PARTS}")
    budgets = BUDGETS
    if args.smoke:
        args.seeds, args.n, args.train_seeds, budgets = 2, 500, 1, (10, 50)
        parts = [p for p in parts if p != "timing"]
    name = "samplers_smoke" if args.smoke else "samplers"
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, name + ".json")
    data: dict[str, Any] = {}
    if os.path.exists(path):  # a part at a time: the others stay as they were measured
        with open(path) as fh:
            data = json.load(fh)
    data.update(
        budgets=list(budgets),
        seeds=args.seeds,
        n=args.n,
        default={"method": methods.DEFAULT_METHOD, "steps": methods.DEFAULT_STEPS},
    )
    for part in parts:
        print(f"== {part}", flush=True)
        if part == "exact":
            data["exact"] = exact_frontier(args.seeds, args.n, budgets)
        elif part == "ald_sweep":
            data["ald_sweep"] = ald_sweep(min(args.seeds, 3), args.n, budgets)
        elif part == "old_advice":
            data["old_advice"] = old_advice(min(args.seeds, 3), args.n)
        elif part == "trained":
            epochs = 5 if args.smoke else None
            data["trained"] = trained(args.train_seeds, 2 if args.smoke else 10, args.n, epochs)
        elif part == "continuous":
            epochs = 5 if args.smoke else None
            seeds3 = 1 if args.smoke else 3
            data["continuous"] = continuous(seeds3, 2 if args.smoke else 5, args.n, epochs)
        elif part == "trained_2d":
            epochs = 5 if args.smoke else None
            seeds2 = 1 if args.smoke else 2
            data["trained_2d"] = trained_2d(seeds2, 2 if args.smoke else 5, args.n, epochs)
        else:
            data["timing"] = timing(1_000_000)
            print(f"  {data['timing']}", flush=True)
        common.write_json(path, data)  # after each part: a long run keeps what it measured
    if "exact" in data:
        plot(data, os.path.join(args.out, name + ".png"))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
