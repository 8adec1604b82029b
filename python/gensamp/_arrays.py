"""Input conversion shared by the public functions: anything array-like becomes a C-contiguous
float32 [n, d] array, or a clear TypeError/ValueError naming the argument."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def as_rows(a: Any, d: int, name: str, n: int | None = None) -> np.ndarray:
    try:
        import torch

        if isinstance(a, torch.Tensor):
            a = a.detach().cpu()
            numpy_floats = (torch.float16, torch.float32, torch.float64)
            if a.is_floating_point() and a.dtype not in numpy_floats:
                a = a.to(torch.float32)  # bfloat16, float8: no numpy equivalent
            a = a.numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as exc:  # ragged nested lists, objects numpy cannot convert
        raise ValueError(f"{name} must be a rectangular [n, {d}] array of numbers: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim == 1 and d == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != d:
        raise ValueError(f"{name} must have shape [n, {d}], got {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} rows but n={n}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    with np.errstate(over="ignore", invalid="ignore"):  # reported below as a ValueError
        out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} contains NaN or Inf (or values beyond float32 range)")
    return out


def as_int(v: Any, name: str, lo: int, hi: int | None = None) -> int:
    if isinstance(v, (bool, np.bool_)):  # True is an int to Python, never a count or a seed
        raise TypeError(f"{name} must be an integer, got {v!r}")
    if not isinstance(v, numbers.Integral):
        if isinstance(v, numbers.Real) and float(v).is_integer():
            v = int(v)
        else:
            raise TypeError(f"{name} must be an integer, got {v!r}")
    v = int(v)
    if v < lo or (hi is not None and v > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {bound}, got {v}")
    return v


def as_pos_float(v: Any, name: str, *, allow_zero: bool = False) -> float:
    """A finite real > 0 (>= 0 with ``allow_zero``) as a float; TypeError for non-reals
    (bools included), ValueError naming ``name`` otherwise."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {v!r}")
    f = float(v)
    if not (np.isfinite(f) and (f > 0 or (allow_zero and f == 0))):
        raise ValueError(f"{name} must be finite and {'>=' if allow_zero else '>'} 0, got {v!r}")
    return f
