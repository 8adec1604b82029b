"""The fit loop every training call shares, and the options it takes (:class:`FitConfig`).

Adam on shuffled minibatches with cosine decay of the learning rate; after each epoch a
held-out loss (the same noise draws every epoch, so epochs compare fairly) picks the best
weights, and ``patience`` epochs without improvement stop the run. With ``ema`` the weights
that are evaluated and returned are an exponential moving average.

Reproducibility: every random draw (initialisation, split, minibatch order, noise) comes
from generators seeded by ``FitConfig.seed``; the global torch RNG is left untouched. On the
CPU the same seed and thread count give bit-identical models.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .._validate import as_array, as_bool, as_choice, as_int, as_opt_int, as_pos_float

__all__ = ["FitConfig", "History", "TrainingInterrupted"]

NORMALIZE = ("standard", "isotropic", "none")
#: the threads= bound of the training calls (as the samplers'): beyond it the OS refuses
MAX_THREADS = 4096

Loss = Callable[..., torch.Tensor]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training. The run stopped gracefully: ``model`` is the fitted model as a
    completed call would return it (the best epoch's weights under early stopping, the moving
    average with ``ema``, else the weights at the interrupt), its ``history.interrupted`` is
    True. A KeyboardInterrupt subclass, so a script that does not catch it still stops."""

    def __init__(self, model: Any) -> None:
        self.model = model
        epochs = model.history.epochs if getattr(model, "history", None) else 0
        super().__init__(
            f"training interrupted after {epochs} complete epoch(s); the model "
            "trained so far is the exception's .model"
        )


@dataclass(frozen=True)
class FitConfig:
    """Options every training call shares; each call has its own defaults (``train_vae``:
    400 epochs, lr 3e-3; ``train_score``: 200 epochs, lr 1e-3, patience 30; ``train_ncsn``:
    300 epochs, lr 3e-3, isotropic normalisation) and accepts these as keyword arguments or
    as ``fit=FitConfig(...)``.

    epochs, batch_size, lr : Adam on minibatches, cosine decay of lr to 5%.
    val_fraction : held-out share (0 = none); its loss is recorded in ``history.val_loss``.
    patience : early stopping: this many epochs without improvement of the held-out loss
        stop training and the best epoch's weights are kept (None: off).
    normalize : "standard" (per-axis mean/std), "isotropic" (one scale) or "none"; the
        normalisation travels inside the exported weights.
    seed : int >= 0; every random draw derives from it.
    device : "cpu" (default) or "cuda[:i]" (ValueError when CUDA is not available); the
        fitted model is returned on the CPU.
    progress : a tqdm bar on stderr; None = on for a terminal.
    threads : torch intra-op threads while training (restored afterwards); None leaves
        torch's setting. Small MLPs usually train fastest with 1.
    """

    epochs: int = 300
    batch_size: int = 128
    lr: float = 3e-3
    val_fraction: float = 0.1
    patience: int | None = None
    normalize: str = "standard"
    seed: int = 0
    device: Any = "cpu"
    progress: bool | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        checked = {
            "threads": as_opt_int(self.threads, "threads", 1, MAX_THREADS),
            "epochs": as_int(self.epochs, "epochs", 1),
            "batch_size": as_int(self.batch_size, "batch_size", 1),
            "lr": as_pos_float(self.lr, "lr"),
            "patience": as_opt_int(self.patience, "patience", 1),
            "seed": as_int(self.seed, "seed", 0),
            "device": _device(self.device),
            "val_fraction": _fraction(self.val_fraction),
            "normalize": as_choice(self.normalize, "normalize", NORMALIZE),
            "progress": None if self.progress is None else _progress(self.progress),
        }
        for k, v in checked.items():
            object.__setattr__(self, k, v)

    def with_options(self, caller: str, options: Mapping[str, Any]) -> FitConfig:
        """This config with ``options`` (keyword arguments of ``caller``) replacing fields."""
        names = {f.name for f in dataclasses.fields(self)}
        for k in options:
            if k not in names:
                raise TypeError(f"{caller}() got an unexpected keyword argument {k!r}")
        return dataclasses.replace(self, **options)

    @property
    def seeds(self) -> list[int]:
        """Five independent seeds: permutation, noise, validation, split, initialisation."""
        state = np.random.SeedSequence(self.seed).generate_state(5, dtype=np.uint32)
        return [int(s) for s in state]

    @property
    def show_progress(self) -> bool:
        if self.progress is not None:
            return bool(self.progress)
        try:
            return bool(sys.stderr.isatty())
        except (AttributeError, ValueError):
            return False

    def settings(self) -> dict[str, Any]:
        """The options that decide the result, for the stored provenance."""
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "seed": self.seed,
            "normalize": self.normalize,
        }


def _device(device: Any) -> torch.device:
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"invalid device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} requested but CUDA is not available in this torch build/machine"
        )
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:i]', got {device!r}")
    return dev


def _fraction(v: Any) -> float:
    if (
        isinstance(v, (bool, np.bool_))
        or not isinstance(v, (int, float, np.number))
        or not (0 <= float(v) < 1)
    ):
        raise ValueError(f"val_fraction must be in [0, 1), got {v!r}")
    return float(v)


def _progress(v: Any) -> bool:
    try:
        return as_bool(v, "progress")
    except TypeError:
        raise TypeError(
            f"progress must be True, False or None (auto: on for a terminal), got {v!r}"
        ) from None


# ---- data -------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """Training and held-out points in model coordinates, and the normalisation used."""

    train: torch.Tensor
    val: torch.Tensor | None
    shift: np.ndarray | None
    scale: np.ndarray | None


def prepare(data: Any, cfg: FitConfig) -> Prepared:
    """Split ``data`` (seeded), then normalise with the training part's statistics."""
    x = as_array(data, "data")
    n_val = int(round(cfg.val_fraction * x.shape[0]))
    if cfg.val_fraction > 0 and (n_val < 1 or x.shape[0] - n_val < 2):
        raise ValueError(
            f"{x.shape[0]} points are too few for a validation split of {cfg.val_fraction}; "
            "pass more data or val_fraction=0 (no early stopping)"
        )
    perm = np.random.default_rng(cfg.seeds[3]).permutation(x.shape[0])
    xv, xt = x[perm[:n_val]], x[perm[n_val:]]
    shift = scale = None
    if cfg.normalize != "none":
        shift = xt.mean(0)
        std = xt.std(0)
        constant = std <= 1e-12 * np.maximum(1.0, np.abs(shift))
        if np.all(constant):
            raise ValueError("every data column is constant: nothing to learn")
        # Isotropic: one scale for every axis (the root mean variance), so isotropic noise in
        # model coordinates stays isotropic in data space. Real images have constant pixels
        # (a digit's corners): they map to u = 0 exactly, with scale 1 under "standard".
        iso = np.full_like(std, math.sqrt(np.mean(std**2)))
        scale = np.where(constant, 1.0, std) if cfg.normalize == "standard" else iso
    dev = cfg.device

    def to_model(a: np.ndarray) -> torch.Tensor:
        if shift is not None:
            a = (a - shift) / scale
        return torch.as_tensor(a.astype(np.float32), device=dev)

    return Prepared(to_model(xt), to_model(xv) if n_val else None, shift, scale)


def build(cfg: FitConfig, ctor: Callable[[], Any]) -> Any:
    """The model ``ctor`` makes, initialised from ``cfg``'s seed on ``cfg``'s device, without
    disturbing the caller's global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seeds[4])
        return ctor().to(cfg.device)


# ---- the loop ---------------------------------------------------------------------------------


@dataclass
class History:
    """What a training run did: per-epoch mean training loss and held-out loss (model
    coordinates; the losses are the objective being minimised, e.g. -ELBO), the epoch with
    the lowest held-out loss (``best_epoch``), the epoch whose weights were returned
    (``kept_epoch``: the best one under early stopping, else the last complete one), whether
    early stopping or Ctrl-C (``interrupted``) ended the run, and wall-clock seconds."""

    method: str
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    kept_epoch: int = -1
    stopped_early: bool = False
    interrupted: bool = False
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def summary(self) -> dict[str, Any]:
        """JSON-ready digest stored in the exported weights' ``info``."""
        has_best = self.val_loss and self.best_epoch >= 0
        return {
            "method": self.method,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "kept_epoch": self.kept_epoch,
            "stopped_early": self.stopped_early,
            "interrupted": self.interrupted,
            "final_train_loss": self.train_loss[-1] if self.train_loss else None,
            "best_val_loss": self.val_loss[self.best_epoch] if has_best else None,
            "seconds": round(self.seconds, 3),
            "settings": self.settings,
        }


@dataclass(frozen=True)
class Objective:
    """A method's losses: ``train(model, batch, generator, warm)`` is minimised (``warm`` in
    [0, 1] ramps warm-up terms); ``held_out(model, batch, generator)`` is recorded per epoch
    and drives early stopping, under autograd when ``held_out_needs_grad``."""

    method: str
    train: Loss
    held_out: Loss
    held_out_needs_grad: bool = False
    warmup_epochs: int = 0
    ema: float | None = None


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Averager:
    """The weights that are evaluated and returned: the model itself, or its EMA with a
    bias-corrected warm-up (TensorFlow's num_updates rule), so a short run's average is not
    dominated by the random initialisation."""

    def __init__(self, model: torch.nn.Module, decay: float | None) -> None:
        self.decay = decay
        self.model = model
        self.avg = copy.deepcopy(model) if decay else model
        if decay:
            for p in self.avg.parameters():
                p.requires_grad_(False)

    @torch.no_grad()
    def update(self, step: int) -> None:
        if not self.decay:
            return
        decay = min(self.decay, (1.0 + step) / (10.0 + step))
        for pa, pm in zip(self.avg.parameters(), self.model.parameters()):
            pa.mul_(decay).add_(pm.detach(), alpha=1.0 - decay)


class _Best:
    """Tracks the best held-out loss; under ``patience`` keeps its weights and says stop."""

    def __init__(self, patience: int | None) -> None:
        self.patience = patience
        self.value = math.inf
        self.bad = 0
        self.state: dict[str, Any] | None = None

    def observe(self, hist: History, epoch: int, v: float, avg: torch.nn.Module) -> bool:
        """Record epoch's loss ``v``; True when early stopping should end the run."""
        if hist.best_epoch < 0 or v < self.value - 1e-6 * abs(self.value):
            self.value, self.bad, hist.best_epoch = v, 0, epoch
            if self.patience is not None:
                self.state = copy.deepcopy(avg.state_dict())
            return False
        self.bad += 1
        return self.patience is not None and self.bad >= self.patience


def _cosine(total: int) -> Callable[[int], float]:
    # Decay to 5% of lr: late small steps polish the fit that sampling quality depends on.
    return lambda t: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, total) / total))


def _held_out(obj: Objective, model: torch.nn.Module, val: torch.Tensor, seed: int) -> float:
    g = torch.Generator(device=val.device).manual_seed(seed)
    total = 0.0
    with torch.set_grad_enabled(obj.held_out_needs_grad):
        for i in range(0, val.shape[0], 4096):
            vb = val[i : i + 4096]
            total += float(obj.held_out(model, vb, g).detach()) * vb.shape[0]
    return total / val.shape[0]


def fit(
    model: torch.nn.Module, data: Prepared, obj: Objective, cfg: FitConfig, settings: dict[str, Any]
) -> History:
    """Train ``model`` in place on ``data`` and return its :class:`History`; the model ends
    in eval mode holding the kept weights."""
    with _torch_threads(cfg.threads):
        return _fit(model, data, obj, cfg, settings)


def _fit(
    model: torch.nn.Module, data: Prepared, obj: Objective, cfg: FitConfig, settings: dict[str, Any]
) -> History:
    dev = data.train.device
    n = data.train.shape[0]
    seeds = cfg.seeds
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _cosine(cfg.epochs * math.ceil(n / cfg.batch_size))
    )
    g_perm = torch.Generator().manual_seed(seeds[0])
    g_noise = torch.Generator(device=dev).manual_seed(seeds[1])
    averager = _Averager(model, obj.ema)
    best = _Best(cfg.patience)
    hist = History(method=obj.method, settings=settings)
    t0 = time.perf_counter()
    step = 0
    bar = tqdm(
        range(cfg.epochs),
        desc=obj.method,
        disable=not cfg.show_progress,
        leave=False,
        file=sys.stderr,
    )
    try:
        for epoch in bar:
            model.train()
            perm = torch.randperm(n, generator=g_perm).to(dev)
            total = 0.0
            for i in range(0, n, cfg.batch_size):
                batch = data.train[perm[i : i + cfg.batch_size]]
                warm = (epoch + i / n) / obj.warmup_epochs if obj.warmup_epochs else 1.0
                value = obj.train(model, batch, g_noise, min(1.0, warm))
                if not torch.isfinite(value):
                    raise FloatingPointError(
                        f"{obj.method}: the training loss became {value.item()} at epoch "
                        f"{epoch}; lower lr or check the data for extreme outliers"
                    )
                opt.zero_grad(set_to_none=True)
                value.backward()
                opt.step()
                sched.step()
                step += 1
                averager.update(step)
                total += float(value.detach()) * batch.shape[0]
            hist.train_loss.append(total / n)
            if data.val is None:
                bar.set_postfix(loss=f"{hist.train_loss[-1]:.4g}")
                continue
            averager.avg.eval()
            v = _held_out(obj, averager.avg, data.val, seeds[2])
            hist.val_loss.append(v)
            bar.set_postfix(loss=f"{hist.train_loss[-1]:.4g}", val=f"{v:.4g}")
            if epoch + 1 < obj.warmup_epochs:
                continue  # the objective itself still changes during warm-up: nothing to compare
            if best.observe(hist, epoch, v, averager.avg):
                hist.stopped_early = True
                break
    except KeyboardInterrupt:
        # Ctrl-C keeps what was trained: the run ends as if it had stopped here, and the
        # training call raises TrainingInterrupted carrying the model.
        hist.interrupted = True
    bar.close()
    if best.state is not None:
        model.load_state_dict(best.state)
        hist.kept_epoch = hist.best_epoch
    else:
        if obj.ema:
            model.load_state_dict(averager.avg.state_dict())
        hist.kept_epoch = len(hist.train_loss) - 1
    hist.seconds = time.perf_counter() - t0
    model.eval()
    return hist
