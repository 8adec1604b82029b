"""The `gensamp` command line: train, sample, plot, bench, demo.

Every failure the user can cause (bad arguments, unreadable or invalid files) prints one line
`gensamp: error: ...` and exits with status 2; no tracebacks.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import datasets, plots, samplers
from ._validate import as_array
from .weights import load


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2 (argparse's own convention)
        self.exit(2, f"gensamp: error: {message} (see '{self.prog} --help')\n")


def _floats(text: str) -> list[float]:
    """'20,5,1' or 'geom:20:0.1:10' (geometric, start:stop:count)."""
    try:
        if text.startswith("geom:"):
            a, b, k = text[5:].split(":")
            return np.geomspace(float(a), float(b), int(k)).tolist()
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a list of numbers: {text!r} (use e.g. 20,5,1 or geom:20:0.1:10)"
        ) from None


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _load_data(spec: str, n: int, seed: int) -> np.ndarray:
    if os.path.exists(spec) or spec.endswith((".npy", ".csv")):
        return datasets.as_array(spec)
    return datasets.make(spec, n, seed)


def cmd_train(a: argparse.Namespace) -> None:
    # torch loads only for the commands that train: sampling and plotting start fast
    from . import learn

    data = _load_data(a.data, a.n, a.seed)
    common: dict[str, Any] = dict(seed=a.seed, progress=None if not a.quiet else False)
    if a.epochs is not None:
        common["epochs"] = a.epochs
    if a.hidden is not None:
        common["hidden"] = a.hidden
    if a.model == "vae":
        model: learn.VAE | learn.ScoreNet | learn.NCSN = learn.train_vae(
            data, latent_dim=a.latent_dim, **common
        )
    elif a.model == "sm":
        model = learn.train_score(data, a.method, **common)
    else:
        model = learn.train_ncsn(data, **common)
    w = learn.export(model)
    w.save(a.out)
    h = model.history
    assert h is not None  # every training call attaches it
    print(
        f"trained {a.model} on {len(data)} points x d={data.shape[1]}: {h.epochs} epochs in "
        f"{h.seconds:.1f} s; saved {a.out}"
    )


def cmd_sample(a: argparse.Namespace) -> None:
    w = load(a.model)
    kind = a.sampler
    if kind == "auto":
        kind = {"vae_decoder": "vae", "ncsn": "annealed", "score": "langevin"}[w.role]
    if a.out.endswith(".zarr") or a.scheduler:
        _sample_zarr(a, w, kind)
        return
    if kind == "vae":
        x = samplers.vae_sample(w, a.n, seed=a.seed, threads=a.threads)
    elif kind == "annealed":
        x = samplers.annealed_langevin(
            w, a.sigmas, a.eps, a.T, n=a.n, seed=a.seed, threads=a.threads, denoise=a.denoise
        )
    else:
        eps = a.eps if a.eps is not None else w.sampler.get("eps")
        T = a.T if a.T is not None else w.sampler.get("T")
        if eps is None or T is None:
            raise ValueError("this model stores no Langevin defaults: pass --eps and --T")
        sigma = a.sigmas[-1] if a.sigmas else (w.sampler["sigmas"][-1] if w.conditioned else None)
        x = samplers.langevin(w, eps, T, n=a.n, seed=a.seed, threads=a.threads, sigma=sigma)
    np.save(a.out, x)
    print(f"{len(x)} samples (d={x.shape[1]}, {kind}) written to {a.out}")


def _sample_zarr(a: argparse.Namespace, w: Any, kind: str) -> None:
    """`--out x.zarr`: the samples as a Dask array written shard by shard (never whole in
    memory), on the cluster at --scheduler or on this machine's cores."""
    try:
        from . import distributed as D  # dask loads only for .zarr outputs
    except ImportError as exc:  # the optional dependency group is not installed
        raise ValueError(str(exc)) from None

    if not a.out.endswith(".zarr"):
        raise ValueError("--scheduler writes a zarr store: give --out a name ending in .zarr")
    if os.path.exists(a.out) and not a.overwrite:
        raise ValueError(f"{a.out} already exists: pass --overwrite to replace it")
    client = D.connect(a.scheduler) if a.scheduler else None
    try:
        kw: dict[str, Any] = dict(chunks=a.chunks, client=client, seed=a.seed, threads=a.threads)
        if kind == "vae":
            x = D.vae_sample(w, a.n, **kw)
        elif kind == "annealed":
            x = D.annealed_langevin(w, a.sigmas, a.eps, a.T, n=a.n, denoise=a.denoise, **kw)
        else:
            eps = a.eps if a.eps is not None else w.sampler.get("eps")
            T = a.T if a.T is not None else w.sampler.get("T")
            if eps is None or T is None:
                raise ValueError("this model stores no Langevin defaults: pass --eps and --T")
            stored = w.sampler["sigmas"][-1] if w.conditioned else None
            sigma = a.sigmas[-1] if a.sigmas else stored
            x = D.langevin(w, eps, T, n=a.n, sigma=sigma, **kw)
        D.to_zarr(x, a.out, overwrite=a.overwrite, attrs={"sampler": kind, "seed": a.seed})
    finally:
        if client is not None:
            client.close()
    where = f"on {a.scheduler}" if a.scheduler else "locally"
    print(
        f"{x.shape[0]} samples (d={x.shape[1]}, {kind}, {x.numblocks[0]} shards {where}) "
        f"written to {a.out}"
    )


def cmd_plot(a: argparse.Namespace) -> None:
    x = as_array(a.samples, "SAMPLES", min_rows=1)
    data = _load_data(a.data, len(x), 0) if a.data else None
    plots.samples(a.out, x, data=data, title=a.title or os.path.basename(a.samples))
    print(f"wrote {a.out}")


def cmd_bench(a: argparse.Namespace) -> None:
    from . import benchmark as B  # torch: the PyTorch loop is what the engine is compared with

    threads = os.cpu_count() or 1
    shapes = [(1, 128)] if a.quick else [(1, 128), (64, 256)]
    ns = [1, 1000] if a.quick else [1, 1_000, 100_000]
    print("| d | hidden | N | threads | gensamp chain-steps/s | PyTorch chain-steps/s | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for d, h in shapes:
        for n in ns:
            r = B.compare(d, h, n, threads, 1e9 if a.quick else 1e10, 1 if a.quick else 2)
            print(
                f"| {d} | {h} | {n} | {threads} | {r['cpp_chain_steps_s']:.3g} | "
                f"{r['torch_chain_steps_s']:.3g} | {r['speedup']:.1f}x |",
                flush=True,
            )


def cmd_demo(a: argparse.Namespace) -> None:
    from . import demo  # trains models: torch

    rep = demo.run(a.out, quick=a.quick, seed=a.seed, quiet=a.quiet)
    missed = [t["metric"] for t in rep["targets"] if not t["ok"]]
    print(
        f"demo written to {a.out}/" + (f" (targets missed: {', '.join(missed)})" if missed else "")
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="gensamp", description="Learn a generative model from samples; sample it fast."
    )
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    t = sub.add_parser(
        "train",
        help="train a VAE, score model or NCSN and save its weights",
        description="Train on DATA (.npy/.csv file [N, d] or a built-in data set: "
        "seed_mixture_1d, ncsn_mixture_2d, two_moons, eight_gaussians, swiss_roll, "
        "checkerboard, concentric_rings) and save a weights file.",
    )
    t.add_argument("model", choices=["vae", "sm", "ncsn"])
    t.add_argument("data")
    t.add_argument("--out", required=True, help="weights file to write (.safetensors)")
    t.add_argument(
        "--n", type=_positive_int, default=5000, help="points drawn from a built-in data set"
    )
    t.add_argument("--epochs", type=_positive_int)
    t.add_argument(
        "--hidden",
        type=lambda s: [_positive_int(v) for v in s.split(",")],
        help="hidden widths, e.g. 128,128",
    )
    t.add_argument("--latent-dim", type=_positive_int, default=2, help="VAE latent dimension")
    t.add_argument(
        "--method",
        choices=["exact", "sliced", "denoising"],
        default="exact",
        help="score matching objective (sm only)",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(fn=cmd_train)

    s = sub.add_parser("sample", help="draw samples from a weights file with the C++ engine")
    s.add_argument("model", help="weights file written by 'gensamp train' or Weights.save")
    s.add_argument("--n", type=_positive_int, default=10_000)
    s.add_argument(
        "--sampler",
        choices=["auto", "annealed", "langevin", "vae"],
        default="auto",
        help="auto: by the model's role (ncsn: annealed, score: langevin, VAE: vae)",
    )
    s.add_argument(
        "--sigmas",
        type=_floats,
        help="noise levels, '20,5,1' or 'geom:20:0.1:10' (default: stored in the model)",
    )
    s.add_argument("--eps", type=float)
    s.add_argument("--T", type=_positive_int)
    s.add_argument("--denoise", action="store_true", help="final Tweedie denoising step")
    s.add_argument("--threads", type=_positive_int)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help=".npy file to write")
    s.add_argument(
        "--scheduler",
        help="Dask scheduler address (e.g. tcp://scheduler-host:8786): sample on that cluster; "
        "needs --out NAME.zarr (pip install 'gensamp[distributed]')",
    )
    s.add_argument(
        "--chunks",
        type=_positive_int,
        default=1_000_000,
        help="chains per Dask task for .zarr outputs (default 1000000)",
    )
    s.add_argument("--overwrite", action="store_true", help="replace an existing .zarr store")
    s.set_defaults(fn=cmd_sample)

    pl = sub.add_parser("plot", help="plot samples (histogram for 1D, scatter for 2D+)")
    pl.add_argument("samples", help=".npy/.csv file [n, d]")
    pl.add_argument("--data", help="data to overlay (.npy/.csv or a built-in data set name)")
    pl.add_argument("--title")
    pl.add_argument("--out", required=True, help=".png file to write")
    pl.set_defaults(fn=cmd_plot)

    b = sub.add_parser("bench", help="throughput table: C++ engine vs the PyTorch loop")
    b.add_argument("--quick", action="store_true")
    b.set_defaults(fn=cmd_bench)

    d = sub.add_parser("demo", help="the seed experiment end to end, with figures and a report")
    d.add_argument("--out", default="gensamp-demo")
    d.add_argument("--quick", action="store_true", help="smaller run (about a minute)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("out",):
        out = getattr(args, name, None)
        if out and args.cmd != "demo":
            parent = os.path.dirname(os.path.abspath(out))
            if not os.path.isdir(parent):
                parser.exit(2, f"gensamp: error: --out: directory {parent} does not exist\n")
    try:
        args.fn(args)
    except (ValueError, TypeError, OSError, MemoryError, KeyError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        parser.exit(2, f"gensamp: error: {msg}\n")
    except KeyboardInterrupt:
        parser.exit(130, "gensamp: interrupted\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
