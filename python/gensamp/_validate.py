"""The one place where user arguments are checked and converted.

One rule per kind of argument, used by every public function:

* :func:`as_int` -- an integer (numpy integers and integral floats such as ``1e6`` accepted,
  bools refused) within bounds;
* :func:`as_chain_offset` -- the global index of a call's first chain (0 <= a, a + n <= 2^64);
* :func:`as_pos_float` -- a finite real > 0 (or >= 0);
* :func:`as_bool` -- a real bool (numpy's included), nothing truthy;
* :func:`as_sigmas` -- a noise schedule: finite, > 0, strictly decreasing;
* :func:`as_rows` -- points for the engine: float32 C-contiguous [n, d];
* :func:`as_array` -- user data: float64 [N, d] from arrays, tensors, lists or .npy/.csv files
  (delimiter, header and a pandas index column detected; :class:`DataWarning` when a column
  is dropped);
* :func:`as_points` -- points a model evaluates: :func:`as_array`'s float64 [n, d] (n >= 1) for
  a model of dimension d, within float32's range (the engine's precision);
* :func:`import_sklearn` -- scikit-learn, an optional extra, with an ImportError that says
  how to install it.

Every failure is a TypeError (wrong kind) or ValueError (wrong value) naming the argument.
The C++ engine trusts what passes here: the binding checks only what memory safety needs.
This module imports neither torch nor the engine: tensors are recognised by duck typing
when torch is already loaded.
"""

from __future__ import annotations

import importlib
import numbers
import os
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from types import ModuleType
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


def import_sklearn(module: str, what: str) -> ModuleType:
    """The scikit-learn module ``module`` (e.g. ``"sklearn.datasets"``), imported on first use
    so that gensamp works without the extra; ImportError naming ``what`` and the install
    command where scikit-learn is missing."""
    try:
        # The top-level package first: a submodule already in sys.modules would otherwise
        # import although the package itself is unavailable.
        importlib.import_module("sklearn")
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{what} needs scikit-learn, which does not import ({exc}): install it with "
            f"pip install 'gensamp[images]' (or pip install 'scikit-learn>=1.3')"
        ) from exc


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
    if f32:  # vectorised: schedules can have millions of levels
        bad = np.flatnonzero((s < F32_TINY) | (s > F32_MAX))
        if bad.size:
            i = int(bad[0])
            as_pos_float(float(s[i]), f"{name}[{i}]", f32=True)
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


class DataWarning(UserWarning):
    """A data file was read in a way worth knowing about (e.g. an index column dropped)."""


_TEXT_EXTS = (".csv", ".tsv", ".txt")
_DELIMITERS: tuple[str | None, ...] = (",", ";", "\t", None)  # None: runs of whitespace
_SNIFF_LINES = 50


def _split(line: str, delim: str | None) -> list[str]:
    return [f.strip().strip('"').strip() for f in line.split(delim)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _count(k: int) -> str:
    return f"{k} value" if k == 1 else f"{k} values"


def _delim_name(delim: str | None) -> str:
    return {",": "comma", ";": "semicolon", "\t": "tab", None: "whitespace"}[delim]


def _sniff(lines: list[str]) -> tuple[str | None, bool]:
    """The delimiter under which the sample lines split into the same number of numeric fields
    (the most fields wins; ties go to the order of _DELIMITERS), and whether numbers use a
    decimal comma ('1,5;2,25'). A file no delimiter fits gets the one that fits most lines, so
    the full parse can name the first line that does not."""
    best: tuple[int, int, int] | None = None
    choice: tuple[str | None, bool] = (",", False)
    for rank, delim in enumerate(_DELIMITERS):
        for comma in (False, True) if delim != "," else (False,):
            rows = [_split(ln.replace(",", ".") if comma else ln, delim) for ln in lines]
            counts = [len(r) for r in rows]
            width = Counter(counts).most_common(1)[0][0]
            if comma and width < 2:
                continue  # a decimal comma only where another delimiter splits the line
            fit = sum(1 for r in rows if len(r) == width and all(_is_number(v) for v in r))
            key = (fit, width if fit == len(rows) else 0, -2 * rank - comma)
            if best is None or key > best:
                best, choice = key, (delim, comma)
    return choice


def _read_text(p: str) -> tuple[np.ndarray, list[str] | None]:
    """A delimited text file of numbers: the delimiter (comma, semicolon, tab or whitespace)
    and a header row are detected; an unnamed leading column holding 0..N-1 (or 1..N), the
    index pandas writes by default, is dropped with a DataWarning."""
    try:
        with open(p, encoding="utf-8-sig") as fh:
            raw = fh.read()
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not a text file of numbers (it is not UTF-8 text)") from None
    except OSError as exc:
        raise ValueError(f"{p}: cannot read: {exc.strerror or exc}") from None
    numbered = [
        (i + 1, ln) for i, ln in enumerate(raw.splitlines()) if ln.strip() and ln.lstrip()[0] != "#"
    ]
    if not numbered:
        raise ValueError(f"{p}: no rows of numbers (the file is empty)")
    first = numbered[0][1]
    sample = [ln for _, ln in numbered[1 : _SNIFF_LINES + 1]] or [first]
    delim, comma = _sniff(sample)

    def fields(line: str) -> list[str]:
        return _split(line.replace(",", ".") if comma else line, delim)

    head = fields(first)
    names = None
    if not all(_is_number(v) for v in head):
        names = _split(first, delim)  # header names keep their own commas
        numbered = numbered[1:]
        if not numbered:
            raise ValueError(f"{p}: only a header row, no rows of numbers")
    width = len(fields(numbered[0][1]))
    if names is not None and len(names) != width:
        raise ValueError(
            f"{p}: the header (line 1) names {len(names)} columns but line {numbered[0][0]} "
            f"has {width} values ({_delim_name(delim)}-separated)"
        )
    body = [ln.replace(",", ".") if comma else ln for _, ln in numbered]
    try:
        arr = np.loadtxt(
            body, delimiter=delim, ndmin=2, dtype=np.float64, comments=None, quotechar='"'
        )
    except ValueError:
        arr = None
    if arr is None or arr.shape[1] != width:
        _explain_bad_line(p, numbered, fields, width, delim)
    assert arr is not None
    if names is not None and names[0] in ("", "Unnamed: 0") and width > 1:
        col = arr[:, 0]
        n = len(col)
        for start in (0, 1):
            if np.array_equal(col, np.arange(start, start + n)):
                warnings.warn(
                    DataWarning(
                        f"{p}: dropped the first column: it has no name and holds "
                        f"{start}..{start + n - 1}, a row index (as pandas writes it), not data"
                    ),
                    stacklevel=4,
                )
                arr, names = arr[:, 1:], names[1:]
                break
    return arr, names


def _explain_bad_line(
    p: str,
    numbered: list[tuple[int, str]],
    fields: Callable[[str], list[str]],
    width: int,
    delim: str | None,
) -> None:
    """Raise the ValueError that names the first line numpy could not read, and why."""
    sep = f"{_delim_name(delim)}-separated"
    first_line = numbered[0][0]
    for lineno, line in numbered:
        vals = fields(line)
        if len(vals) != width:
            raise ValueError(
                f"{p}: line {lineno} has {_count(len(vals))} but line {first_line} has {width} "
                f"({sep}); every row needs the same number of columns"
            )
        for j, v in enumerate(vals):
            if not _is_number(v):
                raise ValueError(
                    f"{p}: line {lineno}, column {j + 1}: {v!r} is not a number ({sep})"
                )
    raise ValueError(f"{p}: cannot read as {sep} numbers")


def _read_path(path: str | os.PathLike[str]) -> tuple[np.ndarray, list[str] | None]:
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise ValueError(f"data file {p!r} does not exist")
    ext = os.path.splitext(p)[1].lower()
    if ext == ".npy":
        try:
            return np.load(p, allow_pickle=False), None  # never unpickle user files
        except ValueError as exc:
            raise ValueError(f"{p}: cannot read as a numeric .npy array: {exc}") from None
    if ext in _TEXT_EXTS:
        return _read_text(p)
    raise ValueError(
        f"data file {p!r}: unsupported extension {ext!r} (use .npy, .csv, .tsv or .txt)"
    )


def _pick_columns(
    arr: np.ndarray, names: list[str] | None, columns: Sequence[str | int], name: str
) -> np.ndarray:
    """The columns named (header names) or numbered (0-based) in ``columns``, in that order."""
    if isinstance(columns, (str, bytes)) or not isinstance(columns, Sequence) or not columns:
        raise TypeError(f"columns must be a non-empty list of names or indices, got {columns!r}")
    idx = []
    for c in columns:
        if isinstance(c, str):
            if names is None:
                raise ValueError(
                    f"columns: {c!r} is a name, but {name} has no header row; use 0-based indices"
                )
            if c not in names:
                raise ValueError(
                    f"columns: no column named {c!r} in {name} (it has {', '.join(names)})"
                )
            idx.append(names.index(c))
        else:
            i = as_int(c, "columns entry", 0)
            if i >= arr.shape[1]:
                raise ValueError(
                    f"columns: index {i} is out of range: {name} has {arr.shape[1]} column(s), "
                    f"numbered from 0"
                )
            idx.append(i)
    return arr[:, idx]


def as_array(
    data: Any,
    name: str = "data",
    min_rows: int = 2,
    *,
    columns: Sequence[str | int] | None = None,
) -> np.ndarray:
    """Convert user data to a float64 array [N, d].

    Accepts a numpy array, a torch tensor, a nested list, or a path (str / os.PathLike) to a
    ``.npy`` file or a text file of numbers (``.csv``, ``.tsv``, ``.txt``; one row per point).
    In a text file the delimiter (comma, semicolon, tab or whitespace; a decimal comma with
    semicolons or tabs) and a header row are detected, and an unnamed leading column that
    holds 0..N-1 (or 1..N) -- the row index pandas writes by default -- is dropped with a
    :class:`DataWarning`. ``columns`` keeps only the columns given by header name or 0-based
    index, in that order. A 1-D array is read as N points in d = 1. Raises TypeError for
    non-numeric input and ValueError for a wrong shape, too few rows, NaN/Inf values, or a
    line of a file that is not read (the message names the line).
    """
    names: list[str] | None = None
    if isinstance(data, (str, os.PathLike)):
        arr, names = _read_path(data)
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
    if columns is not None:
        label = os.fspath(data) if isinstance(data, (str, os.PathLike)) else name
        arr = _pick_columns(arr, names, columns, label)
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {arr.shape[0]}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.all(np.isfinite(arr), axis=1)))
        raise ValueError(f"{name} contains NaN or Inf in {bad} row(s)")
    return arr


def as_points(x: Any, d: int, name: str = "x") -> np.ndarray:
    """Points for a model of dimension d: float64 [n, d] by :func:`as_array` ([n] accepted for
    d = 1, paths to .npy/.csv files read), n >= 1, finite and within float32's range (the
    engine evaluates the model in float32)."""
    arr = as_array(x, name, min_rows=1)
    if arr.shape[1] != d:
        raise ValueError(
            f"{name} must have shape [n, {d}] (the model's dimension is {d}), got {arr.shape}"
        )
    big = np.flatnonzero(np.any(np.abs(arr) > F32_MAX, axis=1))
    if big.size:
        raise ValueError(
            f"{name} has values beyond float32 range, the engine's precision, in row(s) "
            f"{', '.join(str(int(i)) for i in big[:10])}{' ...' if big.size > 10 else ''}"
        )
    return arr
