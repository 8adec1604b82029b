"""Figures: sample histograms over true densities, scatter panels, score fields, loss curves.
Every function draws with the non-interactive Agg backend and writes an image (the format
follows the path's suffix). Every figure says how many points it shows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .mixture import GaussianMixture

MAX_POINTS = 10_000  # per scatter panel: more only hide each other


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


def _count(n: int, shown: int | None = None) -> str:
    if shown is None or shown >= n:
        return f"n={n:,}"
    return f"{shown:,} of n={n:,} shown"


def _subsample(x: np.ndarray, max_points: int) -> np.ndarray:
    """An evenly spaced subset: deterministic, and as representative as the order allows."""
    if len(x) <= max_points:
        return x
    return x[np.linspace(0, len(x) - 1, max_points).astype(np.int64)]


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
    x = x[np.isfinite(x)]
    ref = x if data is None else np.concatenate([x, np.asarray(data, np.float64).reshape(-1)])
    lo, hi = np.quantile(ref, [0.0005, 0.9995])
    pad = 0.1 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    if data is not None:
        d = np.asarray(data, np.float64).reshape(-1)
        ax.hist(
            d,
            bins=bins,
            range=(lo, hi),
            density=True,
            histtype="step",
            color="0.3",
            lw=1.2,
            label=f"data ({_count(len(d))})",
        )
    ax.hist(
        x,
        bins=bins,
        range=(lo, hi),
        density=True,
        alpha=0.55,
        color="C0",
        label=f"samples ({_count(len(x))})",
    )
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
    max_points: int = MAX_POINTS,
    suptitle: str = "",
) -> str:
    """Side-by-side 2D scatter plots (e.g. i.i.d. / Langevin / annealed Langevin), the first
    two coordinates, each panel subsampled to ``max_points`` and saying so."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), squeeze=False)
    for ax, (title, x) in zip(axes[0], panels):
        x = np.asarray(x)
        shown = _subsample(x, max_points)
        ax.scatter(shown[:, 0], shown[:, 1], s=2, alpha=0.35, color="C0", rasterized=True)
        if mixture is not None:
            ax.scatter(
                mixture.means[:, 0],
                mixture.means[:, 1],
                marker="x",
                color="k",
                s=50,
                label="mixture means",
            )
            ax.legend(fontsize=7, loc="upper left")
        if lim is not None:
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim))
        ax.set(xlabel="x[0]", ylabel="x[1]")
        ax.set_aspect("equal")
        ax.set_title(f"{title}\n({_count(len(x), len(shown))})", fontsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return _save(fig, path)


def _sparse_spans(x: np.ndarray, density: np.ndarray, frac: float) -> list[tuple[float, float]]:
    """Intervals of x where density < frac * its maximum (contiguous runs of the grid)."""
    low = density < frac * density.max()
    spans, start = [], None
    for i, flag in enumerate(low):
        if flag and start is None:
            start = i
        if start is not None and (not flag or i == len(low) - 1):
            end = i if flag else i - 1
            spans.append((float(x[start]), float(x[end])))
            start = None
    return spans


def _quiver(ax: Any, X: Any, Y: Any, field: np.ndarray, unit: float, color: str) -> None:
    ax.quiver(
        X,
        Y,
        field[..., 0] * unit,
        field[..., 1] * unit,
        color=color,
        angles="xy",
        scale_units="xy",
        scale=1,
        width=0.005,
    )


def score_field(path: str, line: Mapping[str, Any], quiver: Mapping[str, Any] | None = None) -> str:
    """Learned vs true score. ``line`` = {x, true, learned: {name: values}, title, and
    optionally density (the true density on x, to shade where data are sparse), n_data, note};
    ``quiver`` = {x, y, true [ny, nx, 2], learned [ny, nx, 2], title, optionally means}: the
    true and learned 2D fields in side-by-side panels on one arrow scale."""
    plt = _plt()
    if quiver is None:
        fig, ax = plt.subplots(figsize=(9, 5.2))
        panels: list[Any] = []
    else:
        fig = plt.figure(figsize=(11, 11.5))
        grid = fig.add_gridspec(2, 2, height_ratios=[1, 1.25])
        ax = fig.add_subplot(grid[0, :])
        panels = [fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])]
    xs = np.asarray(line["x"])
    true = np.asarray(line["true"])
    lo, hi = float(np.min(true)), float(np.max(true))
    pad = 0.25 * (hi - lo)
    ylo, yhi = lo - pad, hi + pad
    if "density" in line:
        for i, (a, b) in enumerate(_sparse_spans(xs, np.asarray(line["density"]), 1e-3)):
            ax.axvspan(
                a,
                b,
                color="0.9",
                zorder=0,
                label="almost no data (density < 0.1% of peak)" if i == 0 else None,
            )
    ax.plot(xs, true, "k", lw=2.2, label="true score")
    clipped = False
    for name, s in line["learned"].items():
        s = np.asarray(s)
        clipped |= bool(np.any((s < ylo) | (s > yhi)))
        ax.plot(xs, np.clip(s, ylo, yhi), lw=1.4, label=name)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set(xlabel="x (data units)", ylabel="score d log p / dx", title=line.get("title", ""))
    ax.set_ylim(ylo, yhi)
    ax.legend(fontsize=7, loc="lower left")
    notes = [line["note"]] if line.get("note") else []
    if clipped:
        notes.append("Learned curves are clipped to the plotted range.")
    if notes:
        ax.text(0.0, -0.14, "\n".join(notes), transform=ax.transAxes, fontsize=8, va="top")
    if quiver is not None:
        X, Y = np.meshgrid(quiver["x"], quiver["y"])
        spacing = float(np.min(np.diff(quiver["x"])))
        # Lengths ~ sqrt(|s|) so arrows near the modes stay visible; the longest true arrow is
        # one grid spacing, and the learned panel uses the same scale: lengths compare across.
        comp = {
            k: quiver[k] / np.sqrt(np.linalg.norm(quiver[k], axis=-1, keepdims=True) + 1e-12)
            for k in ("true", "learned")
        }
        unit = spacing / max(float(np.max(np.linalg.norm(comp["true"], axis=-1))), 1e-12)
        err = np.linalg.norm(quiver["learned"] - quiver["true"], axis=-1)
        rel = float(
            np.mean(err**2) / max(np.mean(np.linalg.norm(quiver["true"], axis=-1) ** 2), 1e-300)
        )
        for ax, key, color, name in (
            (panels[0], "true", "k", "true score"),
            (panels[1], "learned", "C1", "NCSN (learned) score"),
        ):
            _quiver(ax, X, Y, comp[key], unit, color)
            if "means" in quiver:
                m = np.asarray(quiver["means"])
                ax.scatter(m[:, 0], m[:, 1], marker="x", color="C3", s=60, label="mixture means")
                ax.legend(fontsize=7, loc="upper left")
            ax.set_aspect("equal")
            ax.set(xlabel="x[0]", ylabel="x[1]")
            extra = f"\n(relative squared error on this grid {rel:.3f})" if key == "learned" else ""
            ax.set_title(f"{name}: {quiver.get('title', '')}{extra}", fontsize=9)
    return _save(fig, path)


def _objectives(h: Any) -> tuple[str, str]:
    """What a history's training and held-out losses measure, as axis labels."""
    method = getattr(h, "method", "")
    settings = getattr(h, "settings", {}) or {}
    if method == "vae":
        warm = settings.get("warmup_epochs", 0)
        train = "-ELBO" + (" (KL warm-up)" if warm else "")
        return f"{train}, nats/point", "-ELBO, nats/point"
    if method == "ncsn":
        if settings.get("target") == "empirical":
            return (
                "NCSN loss, noise-free target",
                "NCSN loss, classic target -z\n(its noise leaves a floor > 0)",
            )
        return "NCSN loss", "NCSN loss"
    if method.startswith("score/"):
        kind = method.split("/", 1)[1]
        name = {"exact": "implicit SM", "sliced": "sliced SM", "denoising": "denoising SM"}.get(
            kind, kind
        )
        penalty = " + confinement" if settings.get("confine", 0) else ""
        return f"{name} loss{penalty}", f"{name} loss"
    return "training loss", "held-out loss"


def training_curves(path: str, histories: Mapping[str, Any]) -> str:
    """Per model (columns): the training objective (top) and the held-out loss (bottom) per
    epoch, each on its own axis because they are different quantities for some models (the
    NCSN trains on a noise-free target but is validated on the classic one; score matching
    adds a penalty term to training only). Losses are in the model's standardised
    coordinates; the dotted line marks the epoch whose weights were kept."""
    plt = _plt()
    items = [(k, h) for k, h in histories.items() if h is not None]
    fig, axes = plt.subplots(
        2, len(items), figsize=(4.4 * len(items), 6.4), squeeze=False, sharex="col"
    )
    for j, (name, h) in enumerate(items):
        top, bottom = axes[0][j], axes[1][j]
        train_label, held_label = _objectives(h)
        n_train = (getattr(h, "settings", {}) or {}).get("n_train")
        epochs = np.arange(1, len(h.train_loss) + 1)
        top.plot(epochs, h.train_loss, color="C0")
        top.set(ylabel=f"train: {train_label}")
        size = f", {n_train:,} training points" if n_train else ""
        top.set_title(f"{name}: {h.epochs} epochs in {h.seconds:.1f} s{size}", fontsize=9)
        if h.val_loss:
            bottom.plot(np.arange(1, len(h.val_loss) + 1), h.val_loss, color="C1")
        else:
            bottom.text(0.5, 0.5, "no held-out split", ha="center", transform=bottom.transAxes)
        bottom.set(xlabel="epoch", ylabel=f"held-out: {held_label}")
        kept = getattr(h, "kept_epoch", h.best_epoch)
        if kept >= 0:
            for ax in (top, bottom):
                ax.axvline(kept + 1, color="0.5", ls=":", lw=1.2, label="weights kept")
            bottom.legend(fontsize=7)
        for ax in (top, bottom):
            ax.yaxis.label.set_size(8)
    fig.suptitle(
        "Training curves (losses per point, in the model's standardised coordinates; top and "
        "bottom are different quantities where their labels differ)",
        fontsize=9,
    )
    return _save(fig, path)


def samples(path: str, x: np.ndarray, data: np.ndarray | None = None, title: str = "") -> str:
    """Generic plot of samples [n, d]: a histogram for d = 1 (the data drawn over it); for d >= 2
    the first two coordinates, the data in a panel of its own beside the samples on the same
    axes, each panel subsampled to MAX_POINTS and saying so."""
    x = np.asarray(x)
    if x.ndim == 1 or x.shape[1] == 1:
        return hist_1d(path, x, data=data, title=title)
    plt = _plt()
    sets = [("data", np.asarray(data))] if data is not None else []
    sets.append(("samples", x))
    finite = np.concatenate([s[np.all(np.isfinite(s[:, :2]), axis=1), :2] for _, s in sets])
    lo, hi = np.quantile(finite, [0.001, 0.999], axis=0)
    pad = 0.05 * (hi - lo)
    span = (hi - lo) + 2 * pad
    height = float(np.clip(4.8 * span[1] / max(span[0], 1e-12), 2.5, 6.0)) + 1.0  # equal aspect
    fig, axes = plt.subplots(
        1, len(sets), figsize=(4.8 * len(sets), height), squeeze=False, sharex=True, sharey=True
    )
    for ax, (name, s) in zip(axes[0], sets):
        color = "0.35" if name == "data" else "C0"
        shown = _subsample(s, MAX_POINTS)
        alpha = float(np.clip(2000 / len(shown), 0.08, 0.6))
        ax.scatter(shown[:, 0], shown[:, 1], s=2, color=color, alpha=alpha, rasterized=True)
        ax.set(xlabel="x[0]", ylabel="x[1]", xlim=(lo[0] - pad[0], hi[0] + pad[0]))
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        ax.set_title(f"{name} ({_count(len(s), len(shown))})", fontsize=9)
        ax.set_aspect("equal")
    d = x.shape[1]
    head = title or "samples"
    fig.suptitle(head + (f" (first 2 of d={d} coordinates)" if d > 2 else ""), fontsize=10)
    return _save(fig, path)


def image_grids(
    path: str,
    panels: Sequence[tuple[str, np.ndarray, Sequence[Any] | None]],
    shape: tuple[int, int] = (8, 8),
    rows: int = 10,
) -> str:
    """Grids of small images side by side: one ``rows`` x ``rows`` grid per panel
    ``(title, images [n, h*w], labels or None)``, the first rows**2 images each, a label
    (e.g. the class a classifier gives it) above every tile. Pixels are shown on [0, 1],
    clipped: a value outside is the model's, not the plot's."""
    plt = _plt()
    k = rows * rows
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 5.0), squeeze=False)
    for ax, (title, images, labels) in zip(axes[0], panels):
        imgs = np.asarray(images, dtype=np.float64)[:k]
        h, w = shape
        canvas = np.full((rows * (h + 3), rows * (w + 1)), np.nan)
        for i, img in enumerate(imgs):
            r, c = divmod(i, rows)
            canvas[r * (h + 3) + 3 : r * (h + 3) + 3 + h, c * (w + 1) : c * (w + 1) + w] = np.clip(
                img.reshape(h, w), 0, 1
            )
            if labels is not None:
                ax.text(
                    c * (w + 1) + w / 2 - 0.5,
                    r * (h + 3) + 1.4,
                    str(labels[i]),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="tab:blue",
                )
        ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{title} ({_count(len(images), min(k, len(images)))})", fontsize=9)
        ax.axis("off")
    return _save(fig, path)
