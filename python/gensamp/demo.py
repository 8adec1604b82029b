"""`gensamp demo`: the seed experiment done right, measured, with figures and a report.

The deck trained a VAE, a score-matching model and an NCSN on the 1D mixture
1/4 N(-9, 1) + 3/4 N(4, 2^2) and got a unimodal VAE blur, a score-matching sampler collapsed to
one mode, and a broken NCSN. Here each model is trained in PyTorch, exported, sampled by the
C++ engine and compared with the truth: Wasserstein-1, KS, mode weights, score error.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from . import datasets, metrics, plots
from ._resources import resolve_threads
from .benchmark import machine
from .learn import export, train_ncsn, train_score, train_vae
from .samplers import annealed_langevin, langevin, vae_sample

# (metric key path, bound, direction). Full: the training issue's targets. Quick: looser
# bounds for the small run (documented in the report), still failing on a broken model.
FULL_BOUNDS = {
    "ncsn_ald.w1": 0.10,
    "ncsn_ald.weight_error": 0.02,
    "vae.w1": 0.30,
    "vae.weight_error": 0.03,
    "sm_langevin.score_rel_error": 0.05,
    "ncsn2d_ald.weight_error": 0.03,
    "exact2d_ald.weight_error": 0.02,
}
QUICK_BOUNDS = {
    "ncsn_ald.w1": 0.35,
    "ncsn_ald.weight_error": 0.05,
    "vae.w1": 0.8,
    "vae.weight_error": 0.05,
    "sm_langevin.score_rel_error": 0.1,
    "ncsn2d_ald.weight_error": 0.05,
    "exact2d_ald.weight_error": 0.03,
}
SCHED_2D_SIGMAS = np.geomspace(10, 0.1, 10)
SCHED_2D_EPS = 0.2 * 0.1**2
SCHED_2D_T = 400


@dataclass(frozen=True)
class Settings:
    """One mode's sizes. Full: the training functions' defaults on the issue's evidence
    protocol (n = 5,000 training points, 10,000 samples). Quick: the same pipeline, smaller,
    for tests (bounds in QUICK_BOUNDS). ``epochs`` per model; absent = the call's default."""

    n_train: int
    n_samples: int
    n_truth: int
    epochs: Mapping[str, int]
    bounds: Mapping[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_train": self.n_train,
            "n_samples": self.n_samples,
            "n_truth": self.n_truth,
            "epochs": dict(self.epochs),
        }


FULL = Settings(5_000, 10_000, 100_000, {}, FULL_BOUNDS)
QUICK = Settings(
    2_000,
    4_000,
    20_000,
    {"ncsn": 100, "vae": 150, "sm": 60, "ncsn2d": 60, "sm2d": 30},
    QUICK_BOUNDS,
)
# torch trains on one thread: for these small MLPs intra-op threading only adds
# synchronisation.
TRAIN_THREADS = 1


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, flush=True)


def _secs(t: float) -> str:
    """A duration in the unit that reads best: ms below a second."""
    if t < 0.01:
        return f"{t * 1e3:.1f} ms"
    if t < 1:
        return f"{t * 1e3:.0f} ms"
    return f"{t:.1f} s"


def _sample_metrics(x: np.ndarray, truth: np.ndarray, mix: Any) -> dict[str, Any]:
    w = metrics.mode_weights(x, mix)
    out = {
        "mode_weights": w.tolist(),
        "weight_error": float(np.max(np.abs(w - mix.weights))),
        "far_from_modes": metrics.far_from_modes(x, mix),
    }
    if x.shape[1] == 1:
        out["w1"] = metrics.wasserstein_1d(x[:, 0], truth[:, 0])
        out["ks"] = metrics.ks_statistic(x[:, 0], truth[:, 0])
    else:
        out["energy_distance"] = metrics.energy_distance(x[:5000], truth[:5000])
    return out


T_ = TypeVar("T_")


def _timed(fn: Callable[[], T_]) -> tuple[T_, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


@dataclass
class _Run:
    """What the demo's steps share: where to write, the settings, and what they produce."""

    out: str
    cfg: Settings
    seed: int
    quiet: bool
    progress: bool | None
    threads: int
    res: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    models: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.cfg.n_samples

    def log(self, msg: str) -> None:
        _log(msg, self.quiet)

    def path(self, name: str) -> str:
        return os.path.join(self.out, name)

    def train(self, key: str, fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
        """``fn(*args)`` with the run's seed and thread settings and this mode's epochs."""
        extra = {"epochs": self.cfg.epochs[key]} if key in self.cfg.epochs else {}
        epochs = f"{extra['epochs']} epochs" if extra else "its default epochs"
        self.log(f"      training ({epochs}, {TRAIN_THREADS} torch thread) ...")
        model, t = _timed(
            lambda: fn(
                *args, seed=self.seed, progress=self.progress, threads=TRAIN_THREADS, **extra
            )
        )
        self.log(f"      trained: {model.history.epochs} epochs in {_secs(t)}")
        return model, t

    def sample(self, what: str, fn: Callable[[], Any]) -> tuple[Any, float]:
        """``fn()`` (an engine call), timed, with a line saying what it draws."""
        self.log(f"      sampling {what} on {self.threads} threads ...")
        x, t = _timed(fn)
        self.log(f"      sampled in {_secs(t)}")
        return x, t


def _seed_mixture_models(r: _Run) -> None:
    """Steps 1-3: the three learned models on the seed 1D mixture, sampled by the engine."""
    x_train, mix = datasets.seed_mixture_1d(r.cfg.n_train, r.seed, return_mixture=True)
    truth = mix.sample(r.cfg.n_truth, seed=r.seed + 10_000)
    r.models.update(x_train=x_train, mix=mix)
    r.files.append(
        plots.hist_1d(
            r.path("data.png"),
            x_train,
            mixture=mix,
            title=f"seed mixture: the {len(x_train):,} training points",
        )
    )
    # What a perfect model of these training points would score: n points resampled from
    # them. It keeps the training set's own left share (binomial noise around 0.25), which no
    # model can know to correct, so it bounds what W1 the learned models can reach.
    boot = x_train[np.random.default_rng(r.seed + 40_000).integers(0, len(x_train), r.n)]
    r.res["floor_resampled_data"] = _sample_metrics(boot, truth, mix)

    r.log("[1/6] NCSN on the 1D mixture: training (PyTorch), then annealed Langevin (C++)")
    ncsn, t_tr = r.train("ncsn", train_ncsn, x_train)
    w_ncsn = export(ncsn)
    L, T = len(w_ncsn.sampler["sigmas"]), w_ncsn.sampler["T"]
    x_ald, t_s = r.sample(
        f"{r.n:,} chains x {L} levels x {T} steps",
        lambda: annealed_langevin(w_ncsn, n=r.n, seed=r.seed, threads=r.threads),
    )
    r.res["ncsn_ald"] = dict(
        _sample_metrics(x_ald, truth, mix),
        train_seconds=t_tr,
        sample_seconds=t_s,
        chain_steps_per_s=r.n * L * T / t_s,
        sampler=w_ncsn.sampler,
        epochs=ncsn.history.epochs,
    )

    r.log("[2/6] VAE with a learned-variance decoder: training, then ancestral sampling (C++)")
    vae, t_tr = r.train("vae", train_vae, x_train)
    w_vae = export(vae)
    x_vae, t_s = r.sample(
        f"{r.n:,} decoder draws", lambda: vae_sample(w_vae, r.n, seed=r.seed, threads=r.threads)
    )
    r.res["vae"] = dict(
        _sample_metrics(x_vae, truth, mix),
        train_seconds=t_tr,
        sample_seconds=t_s,
        epochs=vae.history.epochs,
    )

    r.log("[3/6] score matching (exact Jacobian trace): training, then plain Langevin (C++)")
    sm, t_tr = r.train("sm", train_score, x_train, "exact")
    w_sm = export(sm)
    x_sm, t_s = r.sample(
        f"{r.n:,} chains x {w_sm.sampler['T']} steps",
        lambda: langevin(w_sm, n=r.n, seed=r.seed, threads=r.threads),  # its stored eps and T
    )
    r.res["sm_langevin"] = dict(
        _sample_metrics(x_sm, truth, mix),
        train_seconds=t_tr,
        sample_seconds=t_s,
        chain_steps_per_s=r.n * w_sm.sampler["T"] / t_s,
        sampler=w_sm.sampler,
        score_rel_error=metrics.score_error(w_sm, mix, x_train, relative=True),
        epochs=sm.history.epochs,
    )
    r.models.update(ncsn=ncsn, w_ncsn=w_ncsn, vae=vae, sm=sm, w_sm=w_sm)

    for key, x, name, fname in (
        ("ncsn_ald", x_ald, "NCSN + annealed Langevin", "ald_samples.png"),
        ("vae", x_vae, "VAE (decoder noise sampled)", "vae_samples.png"),
        ("sm_langevin", x_sm, "score matching + Langevin", "sm_samples.png"),
    ):
        res = r.res[key]
        r.files.append(
            plots.hist_1d(
                r.path(fname),
                x,
                mixture=mix,
                title=f"{name}: {len(x):,} samples\nW1={res['w1']:.3f}, mode weights "
                f"{plots._weights_text(res['mode_weights'])} (true [0.25, 0.75])",
            )
        )


def _start_2d(r: _Run) -> np.ndarray:
    """Where every 2D chain starts, exact or learned score: uniform on [-8, 8]^2, data space.
    One start for all rows, so they differ only in the score and the sampler; uniform, so
    plain Langevin keeps the start's roughly even split between the modes (the deck's point)."""
    return np.random.default_rng(r.seed).uniform(-8, 8, size=(r.n, 2))


def _exact_scores_2d(r: _Run) -> None:
    """Step 4: Song & Ermon's Fig. 3 with exact scores: i.i.d. vs Langevin vs annealed."""
    r.log("[4/6] exact scores on the 2D mixture: i.i.d. vs Langevin vs annealed Langevin")
    x2, mix2 = datasets.ncsn_mixture_2d(r.cfg.n_train, r.seed, return_mixture=True)
    truth2 = mix2.sample(r.n, seed=r.seed + 20_000)  # the reference every row is compared with
    iid2 = mix2.sample(r.n, seed=r.seed + 20_001)  # a second exact draw: sampling noise alone
    x0 = _start_2d(r)
    lang2, _ = r.sample(
        f"{r.n:,} chains x 4000 steps (plain Langevin)",
        lambda: langevin(mix2, 0.1, 4000, x0=x0, seed=r.seed, threads=r.threads),
    )
    ald2, t_s = r.sample(
        f"{r.n:,} chains x {len(SCHED_2D_SIGMAS)} levels x {SCHED_2D_T} steps",
        lambda: annealed_langevin(
            mix2,
            SCHED_2D_SIGMAS,
            SCHED_2D_EPS,
            SCHED_2D_T,
            x0=x0,
            seed=r.seed,
            threads=r.threads,
        ),
    )
    boot2 = x2[np.random.default_rng(r.seed + 40_000).integers(0, len(x2), r.n)]
    r.res["floor2d_resampled_data"] = _sample_metrics(boot2, truth2, mix2)
    r.res["exact2d_iid"] = _sample_metrics(iid2, truth2, mix2)
    r.res["exact2d_langevin"] = _sample_metrics(lang2, truth2, mix2)
    r.res["exact2d_ald"] = dict(
        _sample_metrics(ald2, truth2, mix2),
        sample_seconds=t_s,
        chain_steps_per_s=r.n * len(SCHED_2D_SIGMAS) * SCHED_2D_T / t_s,
    )
    r.models.update(x2=x2, mix2=mix2, truth2=truth2, x0_2d=x0)

    def label(title: str, key: str) -> str:
        return f"{title}\nweights {plots._weights_text(r.res[key]['mode_weights'])}"

    r.files.append(
        plots.scatter_panels(
            r.path("true_scores.png"),
            [
                (label("i.i.d. samples", "exact2d_iid"), iid2),
                (label("Langevin (exact scores)", "exact2d_langevin"), lang2),
                (label("annealed Langevin (exact scores)", "exact2d_ald"), ald2),
            ],
            mixture=mix2,
            lim=9.5,
            suptitle="2D mixture 0.2 N((-5,-5), I) + 0.8 N((5,5), I), exact scores; Langevin "
            "chains start uniform on [-8, 8]² (true weights [0.200, 0.800])",
        )
    )


def _learned_2d(r: _Run) -> None:
    """Step 5: the NCSN and score matching on the 2D mixture, learned scores, from the same
    start as the exact-score rows."""
    r.log("[5/6] NCSN and score matching on the 2D mixture (learned scores)")
    x2, mix2, truth2, x0 = (r.models[k] for k in ("x2", "mix2", "truth2", "x0_2d"))
    ncsn2, t_tr = r.train("ncsn2d", train_ncsn, x2)
    w_ncsn2 = export(ncsn2)
    x_n2, t_s = r.sample(
        f"{r.n:,} chains (annealed Langevin)",
        lambda: annealed_langevin(w_ncsn2, n=r.n, x0=x0, seed=r.seed, threads=r.threads),
    )
    r.res["ncsn2d_ald"] = dict(
        _sample_metrics(x_n2, truth2, mix2), train_seconds=t_tr, sample_seconds=t_s
    )
    sm2, t_tr = r.train("sm2d", train_score, x2, "exact")
    w_sm2 = export(sm2)
    x_s2, t_s = r.sample(
        f"{r.n:,} chains (plain Langevin)",
        lambda: langevin(w_sm2, n=r.n, x0=x0, seed=r.seed, threads=r.threads),
    )
    r.res["sm2d_langevin"] = dict(
        _sample_metrics(x_s2, truth2, mix2), train_seconds=t_tr, sample_seconds=t_s
    )
    r.models.update(ncsn2=ncsn2, w_ncsn2=w_ncsn2)


def _score_figures(r: _Run) -> None:
    """Step 6a: learned vs true score fields, and the training curves."""
    m = r.models
    mix, mix2, w_ncsn, w_sm, w_ncsn2 = m["mix"], m["mix2"], m["w_ncsn"], m["w_sm"], m["w_ncsn2"]
    g = np.linspace(-14, 12, 400)[:, None]
    sig_l = w_ncsn.sampler["sigmas"][-1]  # model units
    s_min = sig_l * float(w_ncsn.scale[0])  # data units
    learned = {
        "score matching": w_sm.score(g)[:, 0],
        f"NCSN at its smallest level σ_L = {s_min:.2g}": w_ncsn.score(g, sig_l)[:, 0],
    }
    line = dict(
        x=g[:, 0],
        true=mix.score(g)[:, 0],
        density=np.exp(mix.log_prob(g)),
        title=f"1D seed mixture: learned vs true score ({len(m['x_train']):,} training points)",
        learned=learned,
        note=(
            f"σ_L = {sig_l:.2g} in the NCSN's standardised units = {s_min:.2g} in data units "
            "(train_ncsn's NCSNv2 schedule).\nShaded: almost no training data, so nothing "
            "pins the learned score there; the NCSN's curve between the modes is its "
            "extrapolation\n(chains cross that gap only at large σ, where the field is smooth)."
        ),
    )
    gx = np.linspace(-9, 9, 19)
    grid = np.stack(np.meshgrid(gx, gx), -1).reshape(-1, 2)
    sig_q = 1.0  # model units: a level where the field is smooth enough to read
    sig_data = sig_q * float(w_ncsn2.scale[0])
    quiver = dict(
        x=gx,
        y=gx,
        true=mix2.score(grid, sig_data).reshape(19, 19, 2),
        learned=w_ncsn2.score(grid, sig_q).reshape(19, 19, 2),
        means=mix2.means,
        title=f"2D mixture at σ = {sig_data:.2g}",
    )
    r.files.append(plots.score_field(r.path("score_field.png"), line, quiver))
    r.files.append(
        plots.training_curves(
            r.path("training.png"),
            {
                "NCSN (1D)": m["ncsn"].history,
                "VAE (1D)": m["vae"].history,
                "score matching (1D)": m["sm"].history,
                "NCSN (2D)": m["ncsn2"].history,
            },
        )
    )


# Each judged row's floor: the same metric for n points that a perfect model of the training
# data would give (resampled training points), or, for exact scores, exact i.i.d. samples.
FLOORS = {
    "ncsn_ald": "floor_resampled_data",
    "vae": "floor_resampled_data",
    "ncsn2d_ald": "floor2d_resampled_data",
    "exact2d_ald": "exact2d_iid",
}


def draw_noise(metric: str, n: int, weights: Sequence[float], gap: float) -> float | None:
    """One standard error of ``metric`` for one draw of n samples, from the binomial noise of
    the mode shares alone (the dominant term: bench/quality.py): sqrt(p(1-p)/n) for a mode
    weight, times the distance between the modes for W1. None for metrics without a floor."""
    p = min(weights)
    se = math.sqrt(p * (1 - p) / n)
    return {"weight_error": se, "w1": gap * se}.get(metric)


def judge(
    value: float, bound: float, floor: float | None, noise: float | None
) -> tuple[str, float | None]:
    """'ok' within the bound; 'at the floor' above it but within one draw's noise of the
    floor measured in the same run (no model of these training points can be expected to do
    better on this draw); 'MISSED' otherwise. Also returns floor + noise, the second bar."""
    second = None if floor is None or noise is None else floor + noise
    if value <= bound:
        return "ok", second
    if second is not None and value <= second:
        return "at the floor", second
    return "MISSED", second


def _judge(r: _Run) -> list[dict[str, Any]]:
    gaps = {1: float(np.ptp(r.models["mix"].means[:, 0]))}
    checks = []
    for path, bound in r.cfg.bounds.items():
        key, metric = path.split(".")
        val = float(r.res[key][metric])
        floor_key = FLOORS.get(key)
        floor = float(r.res[floor_key][metric]) if floor_key else None
        mix = r.models["mix"] if key in ("ncsn_ald", "vae") else r.models["mix2"]
        noise = draw_noise(metric, r.n, mix.weights.tolist(), gaps.get(mix.dim, 0.0))
        status, second = judge(val, bound, floor, noise)
        checks.append(
            dict(
                metric=path,
                value=val,
                bound=bound,
                floor=floor,
                floor_key=floor_key,
                noise=noise,
                floor_plus_noise=second,
                status=status,
                ok=status != "MISSED",
            )
        )
    return checks


def run(
    out: str = "gensamp-demo",
    *,
    quick: bool = False,
    seed: int = 0,
    quiet: bool = False,
    progress: bool | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run the demo; write figures, report.md and report.json to ``out``; return the report.
    ``threads``: engine threads for sampling (default as the samplers'); training always
    uses one torch thread."""
    cfg = QUICK if quick else FULL
    os.makedirs(out, exist_ok=True)
    t_start = time.perf_counter()
    r = _Run(out, cfg, seed, quiet, progress, resolve_threads(threads))
    _seed_mixture_models(r)
    _exact_scores_2d(r)
    _learned_2d(r)
    r.log("[6/6] figures and report")
    _score_figures(r)
    report: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "seed": seed,
        "threads": r.threads,
        "train_threads": TRAIN_THREADS,
        "settings": cfg.as_dict(),
        "results": r.res,
        "targets": _judge(r),
        "machine": machine(),
        "seconds": time.perf_counter() - t_start,
        "python": platform.python_version(),
    }
    with open(r.path("report.json"), "w") as fh:
        json.dump(report, fh, indent=1, default=float)
    r.files.append(r.path("report.json"))
    r.files.append(_write_markdown(r.path("report.md"), report))
    report["files"] = r.files
    with open(r.path("report.md")) as fh:
        r.log(fh.read())
    return report


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "—" if v is None else format(v, spec)


def _write_markdown(path: str, rep: dict[str, Any]) -> str:
    r = rep["results"]
    m = rep["machine"]
    st = rep["settings"]
    n = st["n_samples"]
    rows = [
        ("NCSN + annealed Langevin", "ald_samples.png", r["ncsn_ald"]),
        ("VAE (learned variance, decoder noise sampled)", "vae_samples.png", r["vae"]),
        ("score matching (exact trace) + plain Langevin", "sm_samples.png", r["sm_langevin"]),
    ]
    lines = [
        f"# gensamp demo report ({rep['mode']} mode, seed {rep['seed']})",
        "",
        "## Seed 1D mixture 1/4 N(-9, 1) + 3/4 N(4, 2²)",
        "",
        f"{st['n_train']:,} training points (data.png), {n:,} samples drawn by the C++ engine "
        f"per model, compared with {st['n_truth']:,} fresh exact samples of the truth. "
        "Histograms of each model's samples over the true density: the file in the second "
        "column.",
        "",
        "| model + sampler | figure | W1 | KS | mode weights (true 0.25, 0.75) | far from modes "
        "| train | sample | chain-steps/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, fig, x in rows:
        cs = x.get("chain_steps_per_s")
        lines.append(
            f"| {name} | {fig} | {x['w1']:.3f} | {x['ks']:.3f} | "
            f"{plots._weights_text(x['mode_weights'])} | "
            f"{x['far_from_modes']:.4f} | {_secs(x['train_seconds'])} | "
            f"{_secs(x['sample_seconds'])} | {_fmt(cs, '.3g')} |"
        )
    fl = r["floor_resampled_data"]
    lines.append(
        f"| floor: {n:,} points resampled from the training set | data.png | "
        f"{fl['w1']:.3f} | {fl['ks']:.3f} | {plots._weights_text(fl['mode_weights'])} | "
        f"{fl['far_from_modes']:.4f} | | | |"
    )
    lines += [
        "",
        "The floor row is a perfect model of the training points: their own left share is "
        f"off 0.25 by binomial noise (SE {math.sqrt(0.1875 / st['n_train']):.3f} at "
        f"{st['n_train']:,} points), which no model of them can correct, and one draw of "
        f"{n:,} adds SE {math.sqrt(0.1875 / n):.4f} more (each 0.01 of weight error is 0.13 "
        "of W1 across the 13-unit gap between the modes). bench/quality.py averages over 30 "
        "draws and 5 seeds; the README quotes its results.",
        "",
        f"Score matching: relative score error E‖s−∇log p‖²/E‖∇log p‖² on the training data "
        f"= {r['sm_langevin']['score_rel_error']:.4f} (the score is learned; plain Langevin "
        "still cannot move mass between separated modes). Learned vs true scores: "
        "score_field.png (left panel); loss curves of every model: training.png.",
        "",
        "## 2D mixture 0.2 N((−5,−5), I) + 0.8 N((5,5), I)",
        "",
        f"{n:,} samples per row. Every Langevin row starts from the same {n:,} points, uniform "
        "on [−8, 8]² (data space), so rows differ only in the score (exact or learned) and "
        "the sampler. The exact-score rows are plotted in true_scores.png; the NCSN's learned "
        "score field beside the true one in score_field.png (right panels).",
        "",
        "| samples | weight (−5,−5), true 0.2 | max weight error | far from modes | "
        "energy distance | train |",
        "|---|---|---|---|---|---|",
    ]
    for name, key in (
        ("i.i.d. (truth)", "exact2d_iid"),
        ("exact scores + Langevin", "exact2d_langevin"),
        ("exact scores + annealed Langevin", "exact2d_ald"),
        ("NCSN (learned) + annealed Langevin", "ncsn2d_ald"),
        ("score matching (learned) + Langevin", "sm2d_langevin"),
        (f"floor: {n:,} points resampled from the training set", "floor2d_resampled_data"),
    ):
        x = r[key]
        tr = _secs(x["train_seconds"]) if "train_seconds" in x else ""
        lines.append(
            f"| {name} | {x['mode_weights'][0]:.3f} | {x['weight_error']:.3f} | "
            f"{x['far_from_modes']:.4f} | {x['energy_distance']:.3f} | {tr} |"
        )
    bounds_from = (
        "issue 3's targets for a full run"
        if rep["mode"] == "full"
        else "quick mode's looser bounds for its smaller run (full-run targets: `gensamp "
        "demo` without --quick); they still fail on the seed deck's failure modes: a "
        "unimodal VAE or a one-mode sampler is off by 0.25 in weight and several units of W1"
    )
    lines += [
        "",
        "## Targets",
        "",
        f"Bounds: {bounds_from}. One draw of {n:,} samples is noisy, so a value above its "
        "bound is judged against the floor measured in this run (the same metric for "
        "resampled training points; for exact scores, i.i.d. samples): within one standard "
        "error of one draw of the floor it is 'at the floor' (no model of these training "
        "points could be expected to do better on this draw), beyond it 'MISSED'. The "
        "standard error counts the binomial noise of the smaller mode's share, "
        "sqrt(p(1−p)/n), times the distance between the modes for W1. The demo's exit "
        "status does not depend on the targets; `gensamp demo` names any MISSED one.",
        "",
        "| metric | value | bound | floor (this run) + one draw's noise | |",
        "|---|---|---|---|---|",
    ]
    for c in rep["targets"]:
        fl_txt = (
            f"{c['floor']:.4f} + {c['noise']:.4f} = {c['floor_plus_noise']:.4f}"
            if c.get("floor_plus_noise") is not None
            else "—"
        )
        lines.append(
            f"| {c['metric']} | {c['value']:.4f} | ≤ {c['bound']} | {fl_txt} | {c['status']} |"
        )
    lines += [
        "",
        "## What the columns mean",
        "",
        "- **W1**: Wasserstein-1 distance between the samples and the exact samples, in data "
        "units: the mean distance probability mass has to move to turn one into the other "
        "(exact on the empirical distributions, ∫|F−G| dx).",
        "- **KS**: Kolmogorov–Smirnov statistic, the largest gap between the two empirical "
        "CDFs (0 to 1).",
        "- **mode weights**: the share of samples whose most likely mixture component is each "
        "mode (highest responsibility); **max weight error**: the largest gap to the true "
        "weights.",
        "- **far from modes**: the share of samples more than 4 standard deviations "
        "(Mahalanobis) from every component: spurious samples between or beyond the modes "
        "(about 1e-4 for exact samples).",
        "- **energy distance** (2D): sqrt(2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖) between the first "
        f"{min(n, 5000):,} samples and as many exact ones; 0 for equal distributions. The "
        "i.i.d. row, a second exact draw, shows what sampling noise alone gives at this size.",
        "- **chain-steps/s**: chains × levels × steps per second of sampling wall time.",
        "",
        "## Machine",
        "",
        f"{m.get('cpu', m['machine'])}, {m['cpu_count']} cores, SIMD {m['simd']}, "
        f"{rep['threads']} sampler threads, {rep['train_threads']} torch thread for training; "
        f"Python {rep['python']}, torch {m['torch']}, numpy {m['numpy']}, gensamp "
        f"{m['gensamp']}. Total {_secs(rep['seconds'])}.",
        "",
    ]
    with open(path, "w") as fh:
        fh.write("\n".join(lines))
    return path
