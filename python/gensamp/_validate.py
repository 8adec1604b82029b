"""The one place where user arguments are checked and converted.

One rule per kind of argument, used by every public function:

* :func:`as_int` -- an integer (numpy integers and integral floats such as ``1e6`` accepted,
  bools refused) within bounds;
* :func:`as_chain_offset` -- the global index of a call's first chain (0 <= a, a + n <= 2^64);
* :func:`as_pos_float` -- a finite real > 0 (or >= 0);
* :func:`as_bool` -- a real bool (numpy's included), nothing truthy;
* :func:`as_sigmas` -- a noise schedule: finite, > 0, strictly decreasing;
* :func:`as_rows` -- points for the engine: float32 C-contiguous [n, d];
* :func:`as_array` -- user data: float64 [N, d] from arrays, tensors, lists or .npy/.csv files.

Every failure is a TypeError (wrong kind) or ValueError (wrong value) naming the argument.
The C++ engine trusts what passes here: the binding checks only what memory safety needs.
This module imports neither torch nor the engine: tensors are recognised by duck typing
when torch is already loaded.
"""

from __future__ import annotations

import numbers
import os
import sys
from typing import Any

import numpy as np


def _from_torch(a: Any) -> Any:
    """A torch tensor as a numpy array (bfloat16 and other types numpy lacks as float32);
    anything else unchanged. torch is looked up, never imported: a tensor implies it is."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(a, torch.Tensor):
        return a
    t = a.detach().cpu()
    if t.is_floating_point() and t.dtype not in (torch.float16, torch.float32, torch.float64):
        t = t.to(torch.float32)
    return t.numpy()


def _is_real_dtype(arr: np.ndarray) -> bool:
    return arr.dtype != object and (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    )


def as_int(v: Any, name: str, lo: int, hi: int | None = None) -> int:
    """An integer in [lo, hi]; integral floats (``1e6``) count, bools and 2.5 do not."""
    if isinstance(v, (bool, np.bool_)):  # True is an int to Python, never a count or a seed
        raise TypeError(f"{name} must be an integer, got {v!r}")
    if not isinstance(v, numbers.Integral):
        if isinstance(v, numbers.Real) and float(v).is_integer():
            v = int(float(v))
        else:
            raise TypeError(f"{name} must be an integer, got {v!r}")
    v = int(v)
    if v < lo or (hi is not None and v > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {bound}, got {v}")
    return v


CHAINS_MAX = 2**64  # chain indices are 64-bit Philox counter words (j mod 2^32, j div 2^32)


def as_chain_offset(v: Any, n: int, name: str = "chain_offset") -> int:
    """The global index of a call's first chain: an int >= 0 with v + n <= 2^64, so that every
    chain of the call has an index of its own (none wraps onto chain 0)."""
    v = as_int(v, name, 0)
    if v + n > CHAINS_MAX:
        raise ValueError(
            f"{name} + n must be <= 2^64 (chain indices are 64-bit), got {name}={v} and n={n}"
        )
    return v


def as_opt_int(v: Any, name: str, lo: int, hi: int | None = None) -> int | None:
    """None, or :func:`as_int`."""
    return None if v is None else as_int(v, name, lo, hi)


F32_TINY = float(np.finfo(np.float32).tiny)
F32_MAX = float(np.finfo(np.float32).max)


def as_pos_float(v: Any, name: str, *, allow_zero: bool = False, f32: bool = False) -> float:
    """A finite real > 0 (>= 0 with ``allow_zero``) as a float; TypeError for non-reals
    (bools included), ValueError naming ``name`` otherwise. With ``f32`` the value must also
    survive the engine's float32: a normal float32 (1e-300 would become 0, 1e-40 a denormal
    whose inverse overflows), not beyond its range."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {v!r}")
    f = float(v)
    if not (np.isfinite(f) and (f > 0 or (allow_zero and f == 0))):
        raise ValueError(f"{name} must be finite and {'>=' if allow_zero else '>'} 0, got {v!r}")
    if f32 and f != 0 and not F32_TINY <= f <= F32_MAX:
        raise ValueError(
            f"{name}={v!r} does not survive the conversion to float32, the engine's precision: "
            f"use a value in [{F32_TINY:.3g}, {F32_MAX:.3g}]"
        )
    return f


def as_bool(v: Any, name: str) -> bool:
    """A bool (numpy's too); 0/1, strings and None are refused rather than read as truthy."""
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {v!r}")
    return bool(v)


def as_choice(v: Any, name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (strings)."""
    if not isinstance(v, str) or v not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {v!r}")
    return v


def as_sigmas(
    sigmas: Any, name: str = "sigmas", *, min_levels: int = 1, f32: bool = False
) -> list[float]:
    """A noise schedule sigma_1 > ... > sigma_L > 0 (finite) as a list of floats; with
    ``f32`` every level must survive the engine's float32 (see :func:`as_pos_float`)."""
    try:
        s = np.asarray(sigmas, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of numbers, got {sigmas!r}") from None
    if s.ndim == 0:
        s = s.reshape(1)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence")
    if s.size < min_levels:
        raise ValueError(f"{name} needs at least {min_levels} levels, got {s.size}")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"{name} must be finite and > 0, got {s.tolist()}")
    if np.any(np.diff(s) >= 0):
        raise ValueError(f"{name} must be strictly decreasing (sigma_1 > ... > sigma_L)")
    if f32:
        for i, v in enumerate(s):
            as_pos_float(float(v), f"{name}[{i}]", f32=True)
    return [float(v) for v in s]


def as_rows(a: Any, d: int, name: str, n: int | None = None) -> np.ndarray:
    """Points for the engine: C-contiguous float32 [n, d] ([n] accepted for d = 1), finite."""
    a = _from_torch(a)
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as exc:  # ragged nested lists, objects numpy cannot convert
        raise ValueError(f"{name} must be a rectangular [n, {d}] array of numbers: {exc}") from None
    if not _is_real_dtype(arr):
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


def _read_path(path: str | os.PathLike[str]) -> np.ndarray:
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise ValueError(f"data file {p!r} does not exist")
    ext = os.path.splitext(p)[1].lower()
    if ext == ".npy":
        try:
            return np.load(p, allow_pickle=False)  # never unpickle user files
        except ValueError as exc:
            raise ValueError(f"{p}: cannot read as a numeric .npy array: {exc}") from None
    if ext in (".csv", ".txt"):
        err: Exception | None = None
        for skip in (0, 1):  # a single header row is common; anything else is an error
            try:
                return np.loadtxt(p, delimiter=",", ndmin=2, skiprows=skip, dtype=np.float64)
            except ValueError as exc:
                err = exc
        raise ValueError(f"{p}: not a numeric comma-separated file: {err}") from None
    raise ValueError(f"data file {p!r}: unsupported extension {ext!r} (use .npy or .csv)")


def as_array(data: Any, name: str = "data", min_rows: int = 2) -> np.ndarray:
    """Convert user data to a float64 array [N, d].

    Accepts a numpy array, a torch tensor, a nested list, or a path (str / os.PathLike) to a
    ``.npy`` or ``.csv`` file (one row per point; a single header row is skipped). A 1-D
    array is read as N points in d = 1. Raises TypeError for non-numeric input and ValueError
    for a wrong shape, too few rows, or NaN/Inf values.
    """
    if isinstance(data, (str, os.PathLike)):
        arr = _read_path(data)
    else:
        data = _from_torch(data)
        if isinstance(data, (bytes, dict, set)) or data is None:
            raise TypeError(
                f"{name} must be an array [N, d] or a .npy/.csv path, got {type(data).__name__}"
            )
        try:
            arr = np.asarray(data)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} cannot be converted to an array: {exc}") from None
    if not _is_real_dtype(arr):
        raise TypeError(f"{name} must be real numbers, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape [N, d] (or [N] for d = 1), got {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has zero columns")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {arr.shape[0]}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.all(np.isfinite(arr), axis=1)))
        raise ValueError(f"{name} contains NaN or Inf in {bad} row(s)")
    return arr
