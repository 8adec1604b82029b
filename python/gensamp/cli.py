"""The `gensamp` command line: train, sample, plot, bench, demo.

Conventions (each is tested in tests/test_cli.py):

* Every failure is one line on stderr, ``gensamp: error: ...``, and an exit status: 2 for usage
  (bad arguments, unreadable or invalid input files, an output that would overwrite something),
  1 for runtime failures (not enough memory, every chain diverged, training failed, a write
  failed), 130 for Ctrl-C. No traceback reaches the user; ``GENSAMP_DEBUG=1`` lets one through
  for a bug report.
* Results are one summary line on stdout; progress and notes go to stderr (a bar on a terminal,
  one line per stage otherwise; ``--quiet`` silences them).
* Outputs are checked before any work (directory exists and is writable, not one of the
  inputs, not an existing file unless ``--force``) and written atomically (a temporary file in
  the same directory, renamed over the target): a failed or interrupted run leaves no partial
  file.
* Bare ``gensamp`` prints the command list and exits 0, as ``pip`` does: nothing went wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import numpy as np

from . import __version__, datasets, methods, plots, samplers
from ._inputs import DEFAULT_N
from ._resources import MAX_THREADS, _available_memory, resolve_threads
from ._validate import DataWarning, _read_path, as_array
from .weights import Weights, load

USAGE, RUNTIME, INTERRUPTED = 2, 1, 130
MAX_LEVELS = 100_000  # far beyond any published schedule; a typo like 1e8 levels is refused
# Training defaults of gensamp.learn (checked against it in tests/test_cli.py); written out
# here so that `gensamp --help` does not wait seconds for torch to import.
TRAIN_EPOCHS = {"vae": 400, "sm": 200, "ncsn": 300}
TRAIN_HIDDEN = {"vae": (128, 128), "sm": (128, 128), "ncsn": (64, 64, 64)}
# train_vae's defaults (learn.train.VAE_DEFAULTS / IMAGE_VAE), repeated because the CLI loads
# torch only to train; a test holds them equal.
VAE_LATENT = 2
IMAGE_VAE_LATENT = 12
IMAGE_VAE_HIDDEN = (256, 256)
IMAGE_VAE_EPOCHS = 500
# Small MLPs train fastest on one torch thread: more only add synchronisation (bench/quality.py
# measured 0.7 vs 24 ms per step with the second core busy; issue 18: 36 s vs 454 s).
TRAIN_THREADS = 1
# Advice printed when a model stores no sampler defaults: values for a model trained on data of
# unit scale (what gensamp's own training standardises to), checked in tests/test_cli.py.
ANNEALED_ADVICE_SIGMAS = "geom:10:0.1:10"
ANNEALED_ADVICE_T = 100
LANGEVIN_ADVICE = {"eps": 0.01, "T": 1000}


class CliError(Exception):
    """A failure reported as one line with an exit status (USAGE or RUNTIME)."""

    def __init__(self, message: str, status: int = USAGE) -> None:
        super().__init__(message)
        self.status = status


# ---- argument types ---------------------------------------------------------------------------


def _floats(text: str) -> list[float]:
    """'20,5,1' or 'geom:20:0.1:10' (geometric, start:stop:count)."""
    example = "use e.g. 20,5,1 or geom:20:0.1:10"
    try:
        if text.startswith("geom:"):
            a, b, k = text[5:].split(":")
            count = int(k)
            if not 1 <= count <= MAX_LEVELS:
                raise argparse.ArgumentTypeError(
                    f"{text!r}: the level count must be in [1, {MAX_LEVELS}], got {count}"
                )
            if not (float(a) > 0 and float(b) > 0):
                raise argparse.ArgumentTypeError(f"{text!r}: start and stop must be > 0")
            return np.geomspace(float(a), float(b), count).tolist()
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r} ({example})") from None
    if not values:
        raise argparse.ArgumentTypeError(f"no numbers in {text!r} ({example})")
    if len(values) > MAX_LEVELS:
        raise argparse.ArgumentTypeError(f"at most {MAX_LEVELS} levels, got {len(values)}")
    return values


def _int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {v}")
        return v

    return parse


_positive_int = _int_in(1)
_seed = _int_in(0, 2**64 - 1)
_threads = _int_in(1, MAX_THREADS)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be finite and > 0, got {text}")
    return v


def _widths(text: str) -> list[int]:
    return [_int_in(1, 1_000_000)(v) for v in text.split(",")]


def _columns(text: str) -> list[str | int]:
    """'x,y' (header names) or '0,2' (0-based indices)."""
    out: list[str | int] = []
    for v in (s.strip() for s in text.split(",")):
        if not v:
            raise argparse.ArgumentTypeError(f"empty column in {text!r} (use e.g. x,y or 0,2)")
        out.append(int(v) if v.isdigit() else v)
    return out


# ---- messages, progress -----------------------------------------------------------------------


def _note(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(f"gensamp: {msg}", file=sys.stderr, flush=True)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


# ---- files ------------------------------------------------------------------------------------


def _is_file_arg(spec: str) -> bool:
    return os.path.exists(spec) or spec.lower().endswith((".npy", ".csv", ".tsv", ".txt"))


def _check_out(
    path: str, flag: str, suffixes: Sequence[str], inputs: Sequence[str | None], force: bool
) -> str:
    """Refuse, before any work, an output that cannot or must not be written."""
    if os.path.isdir(path):
        raise CliError(f"{flag} {path} is a directory; give a file name ending in {suffixes[0]}")
    ext = os.path.splitext(path)[1].lower()
    if ext not in suffixes:
        raise CliError(
            f"{flag} {path}: unknown suffix {ext or '(none)'!r}; the suffix says what is written "
            f"({' or '.join(suffixes)})"
        )
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CliError(f"{flag}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CliError(f"{flag}: directory {parent} is not writable")
    if os.path.lexists(path):
        for inp in inputs:
            if inp and os.path.exists(inp) and os.path.samefile(path, inp):
                raise CliError(
                    f"{flag} {path} is also an input of this command: refusing to overwrite it"
                )
        if not force:
            raise CliError(f"{flag} {path} exists; pass --force to replace it")
    return path


@contextlib.contextmanager
def _atomic(path: str) -> Iterator[str]:
    """A temporary path next to ``path`` (same suffix, so writers that go by it still do),
    renamed over ``path`` when the block succeeds and removed when it does not."""
    parent, base = os.path.split(os.path.abspath(path))
    ext = os.path.splitext(base)[1]
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{ext}", dir=parent)
    os.close(fd)
    try:
        yield tmp
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp's 0600 would surprise: a plain file's mode
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise CliError(f"cannot write {path}: {exc.strerror or exc}", RUNTIME) from None
        raise


def _read_array(spec: str, name: str, *, columns: Any = None, min_rows: int = 2) -> np.ndarray:
    """A data file as [N, d]; a DataWarning (e.g. a dropped index column) becomes one note."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        x = as_array(spec, name, min_rows=min_rows, columns=columns)
    for w in caught:
        if issubclass(w.category, DataWarning):
            _note(f"note: {w.message}")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return x


def _read_samples(path: str) -> np.ndarray:
    """SAMPLES for plotting: the rows of diverged chains (NaN/Inf, as `gensamp sample` writes
    them) are left out with a note rather than refusing the whole file."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        raw = _read_path(path)[0]
    for w in caught:
        _note(f"note: {w.message}")
    raw = np.asarray(raw)
    if raw.ndim == 1:
        raw = raw[:, None]
    if raw.ndim == 2 and raw.size and np.issubdtype(raw.dtype, np.floating):
        finite = np.all(np.isfinite(raw), axis=1)
        if not finite.all():
            _note(
                f"note: {int((~finite).sum())} of {len(raw)} rows of {path} are NaN/Inf "
                f"(diverged chains); plotting the other {int(finite.sum())}"
            )
            raw = raw[finite]
    return as_array(raw, "SAMPLES", min_rows=1)


def _load_data(spec: str, n: int, seed: int, columns: Any = None, name: str = "DATA") -> np.ndarray:
    if _is_file_arg(spec):
        return _read_array(spec, name, columns=columns)
    if columns is not None:
        raise CliError("--columns picks columns of a data file, not of a built-in data set")
    if spec not in datasets.DATASETS:
        raise CliError(
            f"{name} {spec!r} is neither a file nor a built-in data set "
            f"({', '.join(datasets.DATASETS)})"
        )
    return datasets.make(spec, n, seed)


def _sniff_kind(path: str) -> str | None:
    """What a file that is not a weights file looks like, in words, or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return None
    if head.startswith(b"\x93NUMPY"):
        return "a numpy .npy array (data or samples?)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text and all(c.isprintable() or c in "\r\n\t" for c in text):
        return "a text file (a CSV of data?)"
    return None


def _load_weights(path: str) -> Weights:
    try:
        return load(path)
    except ValueError as exc:
        kind = _sniff_kind(path) if "not a valid gensamp weights file" in str(exc) else None
        if kind:
            raise CliError(
                f"MODEL {path} is not a gensamp weights file: it is {kind}. MODEL is a "
                "weights file written by 'gensamp train' (e.g. gensamp train ncsn "
                f"{path} --out model.safetensors)"
            ) from None
        raise


# ---- train ------------------------------------------------------------------------------------


def _param_count(
    model: str, d: int, hidden: Sequence[int], latent: int, mean_and_variance: bool = True
) -> int:
    def mlp(sizes: Sequence[int]) -> int:
        return sum(a * b + b for a, b in zip(sizes, sizes[1:]))

    if model == "vae":  # the decoder outputs [mean | log-variance], or one value per column
        out = 2 * d if mean_and_variance else d
        return mlp([d, *hidden, 2 * latent]) + mlp([latent, *hidden, out])
    return mlp([d + (model == "ncsn"), *hidden, d])


def _image_vae(a: argparse.Namespace) -> bool:
    """A VAE with a Bernoulli likelihood: train_vae's image defaults apply."""
    return bool(a.model == "vae" and a.likelihood != "gaussian")


def _check_training_memory(a: argparse.Namespace, d: int) -> None:
    """Refuse a network that cannot fit before torch tries: a refused allocation is an
    exception, but one that the kernel grants and then cannot back ends the process."""
    image = _image_vae(a)
    hidden = a.hidden or (IMAGE_VAE_HIDDEN if image else TRAIN_HIDDEN[a.model])
    latent = a.latent_dim or (IMAGE_VAE_LATENT if image else VAE_LATENT)
    two_outputs = a.likelihood == "gaussian" and a.variance == "conditional"
    params = _param_count(a.model, d, hidden, latent, two_outputs)
    # float32 weights, gradients, Adam's two moments, and the averaged / best-epoch copy
    need = 5 * 4 * params
    avail = _available_memory()
    if avail is not None and need > 0.8 * avail:
        raise CliError(
            f"--hidden {','.join(map(str, hidden))}: the network has {params:.3g} parameters; "
            f"training would need {need / 2**30:.1f} GiB but {avail / 2**30:.1f} GiB is "
            "available; use smaller --hidden",
            RUNTIME,
        )


def _save_weights(w: Weights, out: str) -> None:
    with _atomic(out) as tmp:
        w.save(tmp)


def cmd_train(a: argparse.Namespace) -> int:
    out = _check_out(a.out, "--out", (".safetensors",), [a.data], a.force)
    data = _load_data(a.data, a.n, a.seed, a.columns)
    n, d = data.shape
    _check_training_memory(a, d)
    epochs = a.epochs or (IMAGE_VAE_EPOCHS if _image_vae(a) else TRAIN_EPOCHS[a.model])
    threads = a.threads
    _note(f"loading PyTorch to train {a.model} ...", a.quiet)
    # torch loads only for the commands that train: sampling and plotting start fast
    from . import learn

    options: dict[str, Any] = dict(seed=a.seed, progress=False if a.quiet else None)
    options["threads"] = threads
    if a.epochs is not None:
        options["epochs"] = a.epochs
    if a.hidden is not None:
        options["hidden"] = a.hidden
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    if a.model == "vae":
        fn, args = learn.train_vae, (data,)
        options.update(
            latent_dim=a.latent_dim,
            likelihood=a.likelihood,
            variance=a.variance,
            prior=a.prior,
            prior_components=a.prior_components,
            beta=a.beta,
        )
    elif a.model == "sm":
        fn, args = learn.train_score, (data, a.method)
    else:
        fn, args = learn.train_ncsn, (data,)
    _note(
        f"training {a.model} on {n} points x d={d}: up to {epochs} epochs on {threads} torch "
        f"thread{'s' if threads > 1 else ''}"
        + ("" if _is_terminal() else " (no progress bar: stderr is not a terminal)"),
        a.quiet,
    )
    try:
        model = fn(*args, **options)
    except learn.TrainingInterrupted as exc:
        h = exc.model.history
        _save_weights(learn.export(exc.model), out)
        _note(
            f"interrupted after {h.epochs} of {epochs} epochs: saved the model trained so far "
            f"(epoch {h.kept_epoch + 1}'s weights) to {out}"
        )
        return INTERRUPTED
    except (RuntimeError, MemoryError) as exc:  # torch's allocator and kernels
        raise CliError(f"training failed: {_one_line(exc)}", RUNTIME) from None
    except ImportError as exc:  # an optional extra (--prior mixture: scikit-learn)
        raise CliError(_one_line(exc)) from None
    except FloatingPointError as exc:
        raise CliError(_one_line(exc), RUNTIME) from None
    _save_weights(learn.export(model), out)
    h = model.history
    assert h is not None  # every training call attaches it
    how = " (early stopping)" if h.stopped_early else ""
    print(
        f"trained {a.model} on {n} points x d={d}: {h.epochs} epochs{how} in {h.seconds:.1f} s "
        f"on {threads} torch thread{'s' if threads > 1 else ''}; saved {out}"
    )
    return 0


# ---- sample -----------------------------------------------------------------------------------


def _fmt_num(v: float) -> str:
    return f"{v:.3g}"


def _plan_sample(a: argparse.Namespace, w: Weights) -> tuple[str, str, Callable[..., Any]]:
    """The sampler call a's options and w's stored defaults give, with what it will do in
    words; CliError with the options that fix it (CLI words, values that work) otherwise."""
    kind = a.sampler
    schedule_given = any(v is not None for v in (a.sigmas, a.eps, a.T)) or a.denoise
    if a.method is not None or a.steps is not None:
        if kind != "auto":
            raise CliError(
                f"--method/--steps choose gensamp.sample's sampler; leave out --sampler {kind}"
            )
        if schedule_given:
            raise CliError(
                "--sigmas/--eps/--T/--denoise set annealed or plain Langevin's schedule; "
                "--method/--steps take a budget instead: give one or the other"
            )
    wants_budget = a.method is not None or a.steps is not None
    budgeted = w.role == "ncsn" and "sigmas" in w.sampler and not schedule_given
    if kind == "auto" and (wants_budget or budgeted):
        method = a.method
        if w.role == "vae_decoder" and method not in (None, "ancestral"):
            raise CliError(f"{a.model} is a VAE decoder: leave out --method")
        what = f"{a.n} chains"
        if a.method is not None or w.role == "ncsn":
            m = method or w.sampler.get("method", methods.DEFAULT_METHOD)
            b = a.steps or (w.sampler.get("steps") if m == w.sampler.get("method") else None)
            what += f", {m}, {b or methods.DEFAULT_STEPS} score evaluations each"
        return (
            "sample",
            what,
            lambda progress=None: samplers.sample(
                w,
                a.n,
                method=a.method,
                steps=a.steps,
                seed=a.seed,
                threads=a.threads,
                progress=progress,
                return_info=True,
            ),
        )
    if kind == "auto":
        kind = {"vae_decoder": "vae", "ncsn": "annealed", "score": "langevin"}[w.role]
    conditional = w.conditioned or w.divide_by_sigma
    stored = w.sampler
    model = a.model
    if w.role == "vae_decoder" and kind != "vae":
        raise CliError(
            f"{model} is a VAE decoder: sample it with --sampler vae (or leave --sampler auto)"
        )
    if kind == "vae":
        if w.role != "vae_decoder":
            what = "an NCSN" if w.role == "ncsn" else "a score model"
            raise CliError(
                f"--sampler vae needs a VAE decoder, but {model} is {what}: leave --sampler "
                "auto (or use --sampler annealed / langevin)"
            )
        return (
            kind,
            f"{a.n} VAE samples",
            lambda progress=None: samplers.vae_sample(
                w, a.n, seed=a.seed, threads=a.threads, progress=progress
            ),
        )
    if kind == "annealed":
        if not conditional:
            if "eps" in stored and "T" in stored:
                eps_t = f"--eps {_fmt_num(stored['eps'])} and --T {stored['T']}"
                how = f", which uses the {eps_t} it stores"
            else:
                how = f" --eps {LANGEVIN_ADVICE['eps']} --T {LANGEVIN_ADVICE['T']}"
            raise CliError(
                f"{model} is an unconditional score model: annealed Langevin needs a "
                "noise-conditional one (gensamp train ncsn). Sample this one with --sampler "
                f"langevin{how}"
            )
        sigmas = a.sigmas if a.sigmas is not None else stored.get("sigmas")
        eps = a.eps if a.eps is not None else stored.get("eps")
        T = a.T if a.T is not None else stored.get("T")
        if sigmas is None or eps is None or T is None:
            last = (sigmas or _floats(ANNEALED_ADVICE_SIGMAS))[-1]
            advice = {
                "--sigmas": ANNEALED_ADVICE_SIGMAS if sigmas is None else None,
                "--eps": _fmt_num(0.2 * last**2) if eps is None else None,
                "--T": str(ANNEALED_ADVICE_T) if T is None else None,
            }
            flags = " ".join(f"{k} {v}" for k, v in advice.items() if v is not None)
            raise CliError(
                f"{model} stores no annealed-Langevin schedule: pass {flags} (for a model "
                "trained on data of unit scale; sigmas in the model's units, the first about "
                "the largest distance between training points; eps about 0.2 x the last "
                "sigma squared)"
            )
        what = f"{a.n} chains x {len(sigmas)} levels x {T} steps (annealed Langevin)"
        return (
            kind,
            what,
            lambda progress=None: samplers.annealed_langevin(
                w,
                sigmas,
                eps,
                T,
                n=a.n,
                seed=a.seed,
                threads=a.threads,
                denoise=a.denoise,
                progress=progress,
            ),
        )
    # plain Langevin; an NCSN's stored eps is its last level's step, right for sampling there
    sigma = None
    if conditional:
        if a.sigmas is not None:
            sigma = a.sigmas[-1]
        elif "sigmas" in stored:
            sigma = stored["sigmas"][-1]
        else:
            raise CliError(
                f"{model} is noise-conditional: plain Langevin samples one noise level; pass "
                "it as --sigmas, e.g. --sigmas 0.1 (in the model's units)"
            )
    eps = a.eps if a.eps is not None else stored.get("eps")
    T = a.T if a.T is not None else stored.get("T")
    if eps is None or T is None:
        eps_adv = 0.2 * sigma**2 if sigma else LANGEVIN_ADVICE["eps"]
        flags = " ".join(
            f"{k} {v}"
            for k, v, have in (("--eps", _fmt_num(eps_adv), eps), ("--T", LANGEVIN_ADVICE["T"], T))
            if have is None
        )
        raise CliError(
            f"{model} stores no Langevin step size and step count: pass {flags} (for a model "
            "trained on data of unit scale; a smaller --eps with a larger --T if chains diverge)"
        )
    what = f"{a.n} chains x {T} steps (Langevin)"
    return (
        kind,
        what,
        lambda progress=None: samplers.langevin(
            w, eps, T, n=a.n, seed=a.seed, threads=a.threads, sigma=sigma, progress=progress
        ),
    )


def _divergence_advice(kind: str, a: argparse.Namespace) -> str:
    if kind == "vae":
        return "the decoder's output overflows float32: check the model"
    if kind == "annealed":
        return "use a smaller --eps (the first level steps eps x (sigma_1/sigma_L)^2)"
    if kind == "sample":
        return "check the model (gensamp.sample's schedule comes from its stored sigmas)"
    return "use a smaller --eps and a larger --T"


def _sample_zarr(a: argparse.Namespace, w: Any, kind: str) -> None:
    """`--out x.zarr`: the samples as a Dask array written shard by shard (never whole in
    memory), on the cluster at --scheduler or on this machine's cores."""
    if not a.out.lower().endswith(".zarr"):
        raise CliError("--scheduler writes a zarr store: give --out a name ending in .zarr")
    if os.path.exists(a.out) and not (a.overwrite or a.force):
        raise CliError(f"{a.out} already exists: pass --overwrite to replace it")
    try:
        from . import distributed as D  # dask loads only for .zarr outputs
    except ImportError as exc:  # the optional dependency group is not installed
        raise CliError(str(exc), RUNTIME) from None

    client = D.connect(a.scheduler) if a.scheduler else None
    try:
        kw: dict[str, Any] = dict(chunks=a.chunks, client=client, seed=a.seed, threads=a.threads)
        if kind == "sample":
            x = D.sample(w, a.n, method=a.method, steps=a.steps, **kw)
        elif kind == "vae":
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
        D.to_zarr(
            x, a.out, overwrite=a.overwrite or a.force, attrs={"sampler": kind, "seed": a.seed}
        )
    finally:
        if client is not None:
            client.close()
    where = f"on {a.scheduler}" if a.scheduler else "locally"
    print(
        f"{x.shape[0]} samples (d={x.shape[1]}, {kind}, {x.numblocks[0]} shards {where}) "
        f"written to {a.out}"
    )


def _write_samples(x: np.ndarray, out: str) -> None:
    with _atomic(out) as tmp, open(tmp, "wb") as fh:
        if out.lower().endswith(".csv"):
            header = ",".join(f"x{i}" for i in range(x.shape[1]))
            # 9 significant digits: every float32 reads back exactly
            np.savetxt(fh, x, delimiter=",", header=header, comments="", fmt="%.9g")
        else:
            np.save(fh, x)


def cmd_sample(a: argparse.Namespace) -> int:
    if a.scheduler or a.out.lower().endswith(".zarr"):
        w = _load_weights(a.model)
        kind, _, _ = _plan_sample(a, w)  # the same checks and advice as a local run
        _sample_zarr(a, w, kind)
        return 0
    out = _check_out(a.out, "--out", (".npy", ".csv"), [a.model], a.force)
    w = _load_weights(a.model)
    kind, what, call = _plan_sample(a, w)
    threads = resolve_threads(a.threads)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", samplers.DivergenceWarning)
        # the engine drives a bar of the chains done (on a terminal, once a run takes 2 s)
        _note(f"sampling {what} on {threads} threads ...", a.quiet)
        x = call(progress=False if a.quiet else None)
    seconds = time.perf_counter() - t0
    label = f"{kind} sampler"
    if isinstance(x, tuple):  # gensamp.sample: (x, info)
        x, info = x
        label = f"{info['method']} sampler ({info['score_evals']:.0f} score evaluations each)"
    diverged = [c.message for c in caught if isinstance(c.message, samplers.DivergenceWarning)]
    for c in caught:
        if not isinstance(c.message, samplers.DivergenceWarning):
            _note(f"warning: {str(c.message).strip()}")
    bad = diverged[0].count if diverged else 0
    if bad == len(x):
        raise CliError(
            f"all {bad} chains diverged to NaN/Inf, nothing written: "
            + _divergence_advice(kind, a),
            RUNTIME,
        )
    _write_samples(x, out)
    if bad:
        _note(
            f"warning: {bad} of {len(x)} chains diverged to NaN/Inf; their rows in {out} are "
            f"NaN/Inf; {_divergence_advice(kind, a)}"
        )
    print(
        f"wrote {len(x)} samples (d={x.shape[1]}) to {out}: {label}, seed {a.seed}, "
        f"{threads} thread{'s' if threads > 1 else ''}, {seconds:.2f} s"
    )
    return 0


# ---- plot, bench, demo ------------------------------------------------------------------------


def cmd_plot(a: argparse.Namespace) -> int:
    out = _check_out(a.out, "--out", (".png", ".pdf", ".svg"), [a.samples, a.data], a.force)
    x = _read_samples(a.samples)
    data = _load_data(a.data, len(x), 0, name="--data") if a.data else None
    if data is not None and data.shape[1] != x.shape[1]:
        raise CliError(
            f"--data {a.data} has d={data.shape[1]} but SAMPLES has d={x.shape[1]}: "
            "plot them against data of the same dimension"
        )
    with _atomic(out) as tmp:
        plots.samples(tmp, x, data=data, title=a.title or os.path.basename(a.samples))
    print(
        f"wrote {out}: {len(x)} samples, d={x.shape[1]}"
        + ("" if data is None else f", with {len(data)} data points")
    )
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    _note("loading PyTorch for the comparison ...", a.quiet)
    from . import benchmark as B  # torch: the PyTorch loop is what the engine is compared with

    threads = resolve_threads(a.threads)
    m = B.machine()
    shapes = [(1, 128)] if a.quick else [(1, 128), (64, 256)]
    ns = [1, 1000] if a.quick else [1, 1_000, 100_000]
    reps = 3
    budget = 1e10 if a.quick else 5e10
    print(
        "gensamp bench: the C++ engine vs the PyTorch loop, sampling the same network with the "
        "same schedule\n"
        "  the PyTorch loop: batched annealed Langevin written in PyTorch under torch.no_grad(), "
        "x = x + a/2 * net([x, log sigma]) / sigma + sqrt(a) * randn_like(x), the loop a user "
        "would write instead of the engine\n"
        f"  network: 3 Linear layers with ReLU, (d, hidden) below; {B.L_LEVELS} noise levels "
        "from 10 to 0.1; T steps per level chosen so each run is about "
        f"{budget:.0e} FLOPs\n"
        f"  machine: {m.get('cpu', m['machine'])}, {m['cpu_count']} cores, SIMD {m['simd']}; "
        f"{threads} thread{'s' if threads > 1 else ''} for both the engine and torch\n"
        f"  each row: best of {reps} repeats per side; spread = slowest to fastest speed-up "
        "over the repeats. Other programs on the machine slow either side unevenly (torch's "
        "threads most): a wide spread means a noisy row. N = 1 mostly measures PyTorch's "
        "per-step overhead. The README's table comes from bench/throughput.py on an idle "
        "machine",
        flush=True,
    )
    print(
        "| d | hidden | N | T | gensamp chain-steps/s | PyTorch chain-steps/s | speed-up | spread |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for d, h in shapes:
        for n in ns:
            r = B.compare(d, h, n, threads, budget, reps)
            tc, tp = r.get("cpp_seconds"), r.get("torch_seconds")
            spread = f"{min(tp) / max(tc):.2f}-{max(tp) / min(tc):.2f}x" if tc and tp else "-"
            print(
                f"| {d} | {h} | {n} | {r['T']} | {r['cpp_chain_steps_s']:.3g} | "
                f"{r['torch_chain_steps_s']:.3g} | {r['speedup']:.2f}x | {spread} |",
                flush=True,
            )
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    if a.out is None:
        a.out = "gensamp-demo-digits" if a.part == "digits" else "gensamp-demo"
    if os.path.exists(a.out) and not os.path.isdir(a.out):
        raise CliError(f"--out {a.out} is a file; the demo writes a directory of figures")
    parent = os.path.dirname(os.path.abspath(a.out))
    if not os.path.isdir(parent):
        raise CliError(f"--out: directory {parent} does not exist")
    threads = resolve_threads(a.threads)
    _note("loading PyTorch ...", a.quiet)
    if a.part == "digits":
        _note("loading PyTorch and scikit-learn ...", a.quiet)
        from . import digits_demo  # trains models: torch

        rep = digits_demo.run(a.out, quick=a.quick, seed=a.seed, quiet=a.quiet, threads=threads)
        missed = [
            f"{t['model']} {t['metric']}"
            for t in rep["targets"]
            if t["status"] == "MISSED" and not t["stretch"]
        ]
        print(
            f"digits demo written to {a.out}/ in {rep['seconds']:.0f} s ({threads} sampler "
            "threads, 1 torch thread)"
            + (f"; targets missed: {', '.join(missed)} (see report.md)" if missed else "")
        )
        return 0
    from . import demo  # trains models: torch

    rep = demo.run(a.out, quick=a.quick, seed=a.seed, quiet=a.quiet, threads=threads)
    missed = [t["metric"] for t in rep["targets"] if t["status"] == "MISSED"]
    print(
        f"demo written to {a.out}/ in {rep['seconds']:.0f} s ({threads} sampler threads, "
        f"1 torch thread)"
        + (f"; targets missed: {', '.join(missed)} (see report.md)" if missed else "")
    )
    return 0


# ---- parser -----------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse's own convention)
        self.exit(USAGE, f"gensamp: error: {message} (see '{self.prog} --help')\n")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows '(default: ...)' where the default is a value; options whose default is decided
    at run time say how in their own help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or default is None or default is False or default == argparse.SUPPRESS:
            return text
        if not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def _threads_help(what: str) -> str:
    return (
        f"threads for {what} (default: $GENSAMP_NUM_THREADS, else $OMP_NUM_THREADS, else all "
        f"cores: {resolve_threads(None)} here)"
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="gensamp",
        description="Learn a generative model from samples (PyTorch); sample it fast (C++). "
        "Exit status: 0 done, 1 runtime failure, 2 usage error, 130 interrupted.",
        formatter_class=_Help,
    )
    p.add_argument("--version", action="version", version=f"gensamp {__version__}")
    sub = p.add_subparsers(dest="cmd", parser_class=_Parser, metavar="COMMAND")

    def add(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=help, description=description or help, formatter_class=_Help
        )

    t = add(
        "train",
        "train a VAE, score model or NCSN and save its weights",
        "Train on DATA and save a weights file. DATA is a .npy/.csv/.tsv/.txt file [N, d] "
        "(delimiter and header detected; a pandas index column is dropped) or a built-in data "
        f"set: {', '.join(datasets.DATASETS)}. A progress bar shows on a terminal.",
    )
    t.add_argument("model", choices=["vae", "sm", "ncsn"], help="what to train")
    t.add_argument("data", help="data file or built-in data set name")
    t.add_argument(
        "--out", required=True, help="weights file to write (.safetensors); must not exist"
    )
    t.add_argument("--force", action="store_true", help="replace --out if it exists")
    t.add_argument(
        "--n", type=_positive_int, default=5000, help="points drawn from a built-in data set"
    )
    t.add_argument(
        "--columns",
        type=_columns,
        help="columns of a data file to train on, by header name or 0-based index, e.g. x,y "
        "or 0,2 (default: all)",
    )
    t.add_argument(
        "--epochs",
        type=_positive_int,
        help="training epochs (default: "
        + ", ".join(f"{k} {v}" for k, v in TRAIN_EPOCHS.items())
        + "; sm stops early when the held-out loss stalls for 30 epochs)",
    )
    t.add_argument(
        "--hidden",
        type=_widths,
        help="hidden layer widths, e.g. 128,128 (default: "
        + ", ".join(f"{k} {','.join(map(str, v))}" for k, v in TRAIN_HIDDEN.items())
        + ")",
    )
    t.add_argument(
        "--latent-dim",
        type=_positive_int,
        help=f"VAE latent dimension (default: {VAE_LATENT}, or {IMAGE_VAE_LATENT} with a "
        "Bernoulli likelihood)",
    )
    t.add_argument(
        "--likelihood",
        choices=["gaussian", "bernoulli", "continuous_bernoulli"],
        default="gaussian",
        help="VAE decoder p(x|z): a Gaussian with learned variance (any data), or for data in "
        "[0, 1] such as pixel intensities a Bernoulli or continuous Bernoulli (these leave the "
        f"data unnormalised and train {IMAGE_VAE_EPOCHS} epochs, hidden "
        f"{','.join(map(str, IMAGE_VAE_HIDDEN))}, latent {IMAGE_VAE_LATENT} unless told)",
    )
    t.add_argument(
        "--variance",
        choices=["conditional", "shared"],
        default="conditional",
        help="Gaussian VAE decoder's variance: an output of the network for every point, or "
        "one number for all at its maximum-likelihood value (what images want; it brings "
        "isotropic normalisation, one scale for every column)",
    )
    t.add_argument(
        "--prior",
        choices=["normal", "mixture"],
        default="normal",
        help="VAE latent prior the weights are sampled from: N(0, I), or a Gaussian mixture "
        "fitted to the training encodings after training (needs scikit-learn)",
    )
    t.add_argument(
        "--prior-components",
        type=_positive_int,
        help="components of the mixture prior (default: 10, or 40 with a Bernoulli likelihood)",
    )
    t.add_argument(
        "--beta",
        type=_positive_float,
        default=1.0,
        help="VAE: weight of the KL term (1 = the ELBO)",
    )
    t.add_argument(
        "--method",
        choices=["exact", "sliced", "denoising"],
        default="exact",
        help="score matching objective (sm only)",
    )
    t.add_argument("--seed", type=_seed, default=0, help="seed for data, split, init and noise")
    t.add_argument(
        "--threads",
        type=_threads,
        default=TRAIN_THREADS,
        help="torch threads for training (default: 1, because these small networks train "
        "fastest on one thread: more only add synchronisation and slow down on a busy machine)",
    )
    t.add_argument("--quiet", action="store_true", help="no progress bar or stage lines")
    t.set_defaults(fn=cmd_train)

    s = add(
        "sample",
        "draw samples from a weights file with the C++ engine",
        "Draw samples from MODEL with the C++ engine and write them to --out (.npy, or .csv "
        "with a header x0,x1,...). Settings left out are taken from those the model stores. "
        "Chains that diverge are reported; if all do, nothing is written (exit status 1).",
    )
    s.add_argument("model", help="weights file written by 'gensamp train' or Weights.save")
    s.add_argument(
        "--n",
        type=_positive_int,
        default=DEFAULT_N,
        help="number of chains (samples), as in the Python API",
    )
    s.add_argument(
        "--sampler",
        choices=["auto", "annealed", "langevin", "vae"],
        default="auto",
        help="auto: gensamp.sample's choice (NCSN: --method, or annealed when --sigmas/--eps/--T/"
        "--denoise are given; score model: langevin; VAE decoder: vae); annealed: the "
        "schedule the model stores",
    )
    s.add_argument(
        "--sigmas",
        type=_floats,
        help="noise levels in the model's units, '20,5,1' or 'geom:20:0.1:10' (10 levels from "
        "20 to 0.1); annealed: the schedule, langevin on a noise-conditional model: the level "
        "sampled is the last one (default: stored in the model)",
    )
    s.add_argument(
        "--eps",
        type=_positive_float,
        help="step size (annealed: at the last level; level i steps eps x (sigma_i/sigma_L)^2) "
        "(default: stored in the model)",
    )
    s.add_argument(
        "--T",
        type=_int_in(1, 2**31 - 1),
        help="steps (annealed: per level) (default: stored in the model)",
    )
    s.add_argument("--denoise", action="store_true", help="final Tweedie denoising step")
    s.add_argument(
        "--method",
        choices=[*methods.METHODS, "ancestral", "langevin"],
        help="gensamp.sample's sampler for a noise-conditional model: "
        + ", ".join(methods.METHODS)
        + " (default: stored in the model, else "
        + methods.DEFAULT_METHOD
        + "; README: Samplers); ancestral: a VAE decoder, langevin: a plain score model",
    )
    s.add_argument(
        "--steps",
        type=_int_in(1, 2**31 - 1),
        help="budget: score evaluations per sample (default: stored in the model, else "
        f"{methods.DEFAULT_STEPS})",
    )
    s.add_argument("--threads", type=_threads, help=_threads_help("the engine"))
    s.add_argument("--seed", type=_seed, default=0, help="noise seed; results depend only on it")
    s.add_argument(
        "--out",
        required=True,
        help="file to write: .npy or .csv (or a .zarr store, see --scheduler); must not exist",
    )
    s.add_argument("--force", action="store_true", help="replace --out if it exists")
    s.add_argument("--quiet", action="store_true", help="no progress line")
    s.add_argument(
        "--scheduler",
        help="Dask scheduler address (e.g. tcp://scheduler-host:8786): sample on that cluster; "
        "needs --out NAME.zarr (pip install 'gensamp[distributed]'); default: none, a .zarr "
        "output is sampled on this machine's cores",
    )
    s.add_argument(
        "--chunks",
        type=_positive_int,
        default=1_000_000,
        help="chains per Dask task for .zarr outputs",
    )
    s.add_argument("--overwrite", action="store_true", help="replace an existing .zarr store")
    s.set_defaults(fn=cmd_sample)

    pl = add(
        "plot",
        "plot samples (histogram for 1D, scatter for 2D+)",
        "Plot SAMPLES: a histogram for d = 1, the first two coordinates otherwise; with "
        "--data, the data beside (2D) or over (1D) them. Large sets are subsampled to 10,000 "
        "points per panel, and each panel says how many it shows.",
    )
    pl.add_argument("samples", help=".npy/.csv file [n, d]")
    pl.add_argument(
        "--data", help="data to compare with (.npy/.csv or a built-in data set name; default: none)"
    )
    pl.add_argument("--title", help="figure title (default: the SAMPLES file name)")
    pl.add_argument("--out", required=True, help="image to write: .png, .pdf or .svg")
    pl.add_argument("--force", action="store_true", help="replace --out if it exists")
    pl.set_defaults(fn=cmd_plot)

    b = add(
        "bench",
        "throughput table: C++ engine vs the PyTorch loop",
        "Time the engine against the PyTorch loop a user would write, on the same network and "
        "schedule, and print a table with the machine, thread count and the spread over "
        "repeats (about 30 s with --quick, a few minutes without).",
    )
    b.add_argument("--quick", action="store_true", help="one network, N = 1 and 1,000 only")
    b.add_argument("--threads", type=_threads, help=_threads_help("both the engine and torch"))
    b.add_argument("--quiet", action="store_true", help="no stage line")
    b.set_defaults(fn=cmd_bench)

    d = add(
        "demo",
        "the seed experiment end to end, with figures and a report",
        "Train a VAE, a score model and an NCSN on the seed 1D mixture and the 2D mixture, "
        "sample them with the engine, and write figures, report.md and report.json to --out "
        "(its files are replaced). Full: about 4-5 minutes on 2 cores; --quick: about 1-2. "
        "'gensamp demo digits': an NCSN and a VAE on scikit-learn's 8x8 digit images, image "
        "grids and a report with sample-quality metrics and a Gaussian-mixture baseline "
        "(about 4 minutes).",
    )
    d.add_argument(
        "part",
        nargs="?",
        choices=("seed", "digits"),
        default="seed",
        help="seed: the 1D/2D seed experiment (default); digits: 8x8 images",
    )
    d.add_argument(
        "--out",
        default=None,
        help="directory to write (default gensamp-demo, or gensamp-demo-digits)",
    )
    d.add_argument("--quick", action="store_true", help="smaller run with looser bounds")
    d.add_argument("--seed", type=_seed, default=0, help="seed for data, training and sampling")
    d.add_argument(
        "--threads",
        type=_threads,
        help=_threads_help("sampling")[:-1] + "; training always uses 1 torch thread)",
    )
    d.add_argument("--quiet", action="store_true", help="print only the final line")
    d.set_defaults(fn=cmd_demo)
    return p


# ---- entry point ------------------------------------------------------------------------------


def _fail(status: int, message: str) -> int:
    print(f"gensamp: error: {message}", file=sys.stderr, flush=True)
    return status


# The library's advice names its Python arguments; on the command line they are options.
_CLI_WORDS = (
    (
        "draw fewer chains, record less often (record_every) or sample in batches",
        "use a smaller --n",
    ),
    ("pass more data or val_fraction=0 (no early stopping)", "pass more data"),
    ("lower lr or check the data", "check the data"),
    ("method='exact'", "--method exact"),
    ("method='sliced'", "--method sliced"),
    ("gensamp.vae_sample", "--sampler vae"),
    ("not annealed_langevin", "not --sampler annealed"),
    ("not langevin", "not --sampler langevin"),
    ("pass sigma > 0 to langevin", "pass the noise level as --sigmas"),
    (
        "pass e.g. sigmas=np.geomspace(10, 0.1, 10), eps=0.2 * 0.1**2, T=100",
        f"pass e.g. --sigmas {ANNEALED_ADVICE_SIGMAS} --eps 0.002 --T {ANNEALED_ADVICE_T}",
    ),
    ("pass e.g. eps=0.01, T=1000", "pass e.g. --eps 0.01 --T 1000"),
    ("likelihood='bernoulli'", "--likelihood bernoulli"),
    ("likelihood='continuous_bernoulli'", "--likelihood continuous_bernoulli"),
    ("prior_components=", "--prior-components "),
)


def _cli_words(text: str) -> str:
    for python, cli in _CLI_WORDS:
        text = text.replace(python, cli)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else USAGE
    if args.cmd is None:
        parser.print_help()
        return 0
    debug = bool(os.environ.get("GENSAMP_DEBUG"))
    try:
        return int(args.fn(args))
    except CliError as exc:
        return _fail(exc.status, _cli_words(str(exc)))
    except KeyboardInterrupt:
        return _fail(INTERRUPTED, "interrupted (Ctrl-C); nothing written")
    except MemoryError as exc:
        if debug:
            raise
        return _fail(RUNTIME, _cli_words(_one_line(exc)))
    except (ValueError, TypeError, KeyError) as exc:
        # the library's argument and file checks: the input was wrong
        if debug:
            raise
        return _fail(USAGE, _cli_words(_one_line(exc)))
    except OSError as exc:
        if debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(USAGE, f"{where}{exc.strerror or _one_line(exc)}")
    except Exception as exc:  # a bug or an unforeseen failure: still one line
        if debug:
            raise
        return _fail(
            RUNTIME,
            f"{type(exc).__name__}: {_one_line(exc)} (GENSAMP_DEBUG=1 shows the traceback)",
        )


if __name__ == "__main__":
    sys.exit(main())
