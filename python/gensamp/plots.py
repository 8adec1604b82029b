"""Figures: sample histograms over true densities, scatter panels, score fields, loss curves.
Every function draws with the non-interactive Agg backend and writes a PNG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .mixture import GaussianMixture


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def _weights_text(w: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in w) + "]"


def hist_1d(
    path: str,
    x: np.ndarray,
    *,
    mixture: GaussianMixture | None = None,
    title: str = "",
    data: np.ndarray | None = None,
    bins: int = 120,
) -> str:
    """Histogram of 1D samples, with the true density (if known) and the data (if given)."""
    plt = _plt()
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    ref = x if data is None else np.concatenate([x, np.asarray(data, np.float64).reshape(-1)])
    lo, hi = np.quantile(ref, [0.0005, 0.9995])
    pad = 0.1 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    if data is not None:
        ax.hist(
            np.asarray(data).reshape(-1),
            bins=bins,
            range=(lo, hi),
            density=True,
            histtype="step",
            color="0.4",
            lw=1.2,
            label="data",
        )
    ax.hist(x, bins=bins, range=(lo, hi), density=True, alpha=0.55, color="C0", label="samples")
    if mixture is not None:
        g = np.linspace(lo, hi, 800)
        ax.plot(g, np.exp(mixture.log_prob(g[:, None])), "k", lw=1.6, label="true density")
    ax.set(xlabel="x", ylabel="density", title=title)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def scatter_panels(
    path: str,
    panels: Sequence[tuple[str, np.ndarray]],
    *,
    mixture: GaussianMixture | None = None,
    lim: float | None = None,
    max_points: int = 10_000,
) -> str:
    """Side-by-side 2D scatter plots (e.g. i.i.d. / Langevin / annealed Langevin)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    for ax, (title, x) in zip(axes[0], panels):
        x = np.asarray(x)[:max_points]
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.35, color="C0", rasterized=True)
        if mixture is not None:
            ax.scatter(mixture.means[:, 0], mixture.means[:, 1], marker="x", color="k", s=50)
        if lim is not None:
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim))
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def score_field(path: str, line: Mapping[str, Any], quiver: Mapping[str, Any] | None = None) -> str:
    """Learned vs true score: on a 1D line (line = {x, learned, true, title}) and, optionally,
    as a 2D quiver (quiver = {x, y, learned [ny, nx, 2], true [ny, nx, 2], title})."""
    plt = _plt()
    ncols = 1 if quiver is None else 2
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 4.2), squeeze=False)
    ax = axes[0][0]
    ax.plot(line["x"], line["true"], "k", lw=2, label="true score")
    for name, s in line["learned"].items():
        ax.plot(line["x"], s, lw=1.4, label=name)
    ax.axhline(0, color="0.7", lw=0.8)
    ax.set(xlabel="x", ylabel="d log p / dx", title=line.get("title", ""))
    lo, hi = np.quantile(line["true"], [0.01, 0.99])
    ax.set_ylim(lo - 0.5 * abs(lo), hi + 0.5 * abs(hi))
    ax.legend(fontsize=8)
    if quiver is not None:
        ax = axes[0][1]
        X, Y = np.meshgrid(quiver["x"], quiver["y"])
        spacing = float(np.min(np.diff(quiver["x"])))
        # Lengths ~ sqrt(|s|) (so arrows near the modes stay visible), the longest true arrow
        # one grid spacing; learned arrows use the same scale, so lengths compare directly.
        comp = {
            k: quiver[k] / np.sqrt(np.linalg.norm(quiver[k], axis=-1, keepdims=True) + 1e-12)
            for k in ("true", "learned")
        }
        unit = spacing / max(float(np.max(np.linalg.norm(comp["true"], axis=-1))), 1e-12)
        for key, color in (("true", "k"), ("learned", "C1")):
            u = comp[key] * unit
            ax.quiver(
                X,
                Y,
                u[..., 0],
                u[..., 1],
                color=color,
                alpha=0.75,
                label=key,
                angles="xy",
                scale_units="xy",
                scale=1,
                width=0.004,
            )
        ax.set_aspect("equal")
        ax.set_title(quiver.get("title", ""), fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def training_curves(path: str, histories: Mapping[str, Any]) -> str:
    """Training and held-out loss per epoch, one panel per model."""
    plt = _plt()
    items = [(k, h) for k, h in histories.items() if h is not None]
    fig, axes = plt.subplots(1, len(items), figsize=(4.5 * len(items), 3.6), squeeze=False)
    for ax, (name, h) in zip(axes[0], items):
        # An NCSN trained on the noise-free (empirical) target reports that loss for training,
        # but its held-out loss is the classic one, whose target noise leaves a floor > 0.
        split = h.settings.get("target") == "empirical"
        ax.plot(
            np.arange(1, len(h.train_loss) + 1),
            h.train_loss,
            label="train (noise-free target)" if split else "train",
        )
        if h.val_loss:
            ax.plot(
                np.arange(1, len(h.val_loss) + 1),
                h.val_loss,
                label="held-out (classic DSM)" if split else "held-out",
            )
        kept = getattr(h, "kept_epoch", h.best_epoch)
        if kept >= 0:
            ax.axvline(kept + 1, color="0.6", ls=":", lw=1, label="weights kept")
        ax.set(xlabel="epoch", ylabel="loss", title=f"{name} ({h.seconds:.1f} s)")
        ax.legend(fontsize=8)
    return _save(fig, path)


def samples(path: str, x: np.ndarray, data: np.ndarray | None = None, title: str = "") -> str:
    """Generic plot of samples [n, d]: a histogram for d = 1, a scatter of the first two
    coordinates otherwise (with the data overlaid when given)."""
    x = np.asarray(x)
    if x.ndim == 1 or x.shape[1] == 1:
        return hist_1d(path, x, data=data, title=title)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    if data is not None:
        data = np.asarray(data)
        ax.scatter(data[:10_000, 0], data[:10_000, 1], s=2, color="0.6", alpha=0.4, label="data")
    ax.scatter(x[:10_000, 0], x[:10_000, 1], s=2, color="C0", alpha=0.4, label="samples")
    ax.set(xlabel="x[0]", ylabel="x[1]", title=title or f"{len(x)} samples, d={x.shape[1]}")
    ax.set_aspect("equal")
    ax.legend(fontsize=8, markerscale=4)
    return _save(fig, path)
