"""Sampling on a Dask cluster: one run cut into shards of chains, the same bits as one call.

``pip install 'gensamp[distributed]'`` (dask, distributed, zarr). Each function takes exactly
the arguments of its local counterpart in :mod:`gensamp.samplers`, plus

* ``chunks`` -- chains per shard: an int (shards of that size, the last one smaller), or a
  tuple of shard sizes that sums to ``n``;
* ``client`` -- a ``dask.distributed.Client``, checked here so that a dead cluster fails now
  rather than at compute time. The array runs where dask computes it: ``x.compute()`` and
  ``x.to_zarr(...)`` use the current client (a new ``Client`` makes itself current), or dask's
  local thread pool when there is none; ``client.compute(x)`` names one explicitly.

and returns a lazy ``dask.array.Array`` [n, d] (float32) chunked along the chains, with a
trajectory [steps // k, n, d] beside it when ``record_every=k``. Each chunk is one engine call
on chains [a, b) with ``chain_offset = chain_offset + a``; since chain j's noise and default
starting point depend only on (seed, j, step), ``x.compute()`` equals the local call bit for
bit, whatever the chunking, the number of workers or their thread counts. A shard is a pure
function of (model bytes, settings, seed, offset, count): when a worker dies, Dask recomputes
its shards elsewhere with the same result. ``x.to_zarr(store)`` streams the shards to disk
(each worker writes its own; the store must be reachable from every worker, e.g. a shared file
system or object storage) and refuses a store that already holds an array unless
``overwrite=True``. Unequal ``chunks`` are rechunked by dask before writing to zarr: use an int.

Models travel as data, never as a pickle of arbitrary objects: Weights as the bytes of their
weights file (:meth:`Weights.to_bytes`, parsed and validated on the worker by
:func:`gensamp.weights.from_bytes`), a GaussianMixture as its plain float parameters. The model
is one node of the task graph, so each worker receives it once, however many shards it runs.
Workers need gensamp, numpy and dask, not torch.

Threads: each shard runs the engine with ``threads=1`` unless ``threads`` is given, and a Dask
worker runs one shard per worker thread, so a worker uses exactly its thread budget. Dask's
defaults give one worker thread per core (``dask worker`` with no options, ``LocalCluster()``),
hence one engine thread per core and no oversubscription. With workers started as one slot of
k cores each (``dask worker --nthreads 1`` on a k-core node), pass ``threads=k``. Measurements
of both layouts: docs/distributed.md.

Chains that diverge: each shard's :class:`~gensamp.DivergenceWarning` is raised on its worker
(in the worker's log, with global chain indices); their rows are NaN/Inf in the result, so
``da.flatnonzero(~da.isfinite(x).all(axis=1))`` lists them.

:func:`sample` picks the sampler from the model as ``gensamp sample`` does, and runs
:func:`gensamp.sample`'s few-step samplers (``method``, ``steps``) shard by shard.

Only this module imports dask (import-linter contract in pyproject.toml); ``import gensamp``
does not load it.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

try:
    import dask
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
    from dask.task_spec import DataNode, Task, TaskRef
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("gensamp.distributed needs dask: pip install 'gensamp[distributed]'") from exc

from . import samplers
from ._inputs import DEFAULT_N, as_model
from ._resources import resolve_threads
from ._validate import as_bool, as_int
from .mixture import GaussianMixture, _restore
from .weights import Weights, from_bytes

__all__ = ["annealed_langevin", "connect", "langevin", "sample", "to_zarr", "vae_sample"]


# ---- the worker side ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _weights(data: bytes) -> Weights:
    # Every shard on a worker gets the same bytes object from the worker's store; parsing and
    # validating it once per process instead of once per shard keeps small shards cheap.
    return from_bytes(data)


def _model(payload: tuple[str, Any]) -> Weights | GaussianMixture:
    kind, data = payload
    if kind == "weights":
        return _weights(data)
    return _restore(*data)


def _shard(
    payload: tuple[str, Any],
    sampler: str,
    settings: dict[str, Any],
    offset: int,
    count: int,
    x0: np.ndarray | None,
) -> Any:
    """One engine call: chains [offset, offset + count) of the run ``settings`` describes."""
    model = _model(payload)
    if sampler == "vae_sample":
        return samplers.vae_sample(model, count, chain_offset=offset, **settings)
    if sampler == "sample":
        return samplers.sample(model, count, x0=x0, chain_offset=offset, progress=False, **settings)
    fn = samplers.langevin if sampler == "langevin" else samplers.annealed_langevin
    return fn(model, n=count, x0=x0, chain_offset=offset, **settings)


# ---- the client side ----------------------------------------------------------------------------


def _payload(model: Weights | GaussianMixture) -> tuple[str, Any]:
    if isinstance(model, Weights):
        return ("weights", model.to_bytes())
    _, params = model.__reduce__()  # plain floats, rebuilt through the constructor's checks
    return ("mixture", params)


MAX_SHARDS = 1_000_000  # a task graph of more shards takes longer to build than to run


def _chunk_sizes(chunks: Any, n: int) -> tuple[int, ...]:
    if isinstance(chunks, (str, bytes)) or chunks is None:
        raise TypeError(f"chunks must be an int or a tuple of ints, got {chunks!r}")
    if isinstance(chunks, (Sequence, np.ndarray)):
        sizes = tuple(as_int(c, f"chunks[{i}]", 1) for i, c in enumerate(chunks))
        if sum(sizes) != n:
            raise ValueError(f"chunks must sum to n={n}, got {sum(sizes)} ({len(sizes)} chunks)")
    else:
        size = as_int(chunks, "chunks", 1)
        full, rest = divmod(n, size)
        sizes = (size,) * min(full, MAX_SHARDS + 1) + ((rest,) if rest else ())
    if len(sizes) > MAX_SHARDS:
        raise ValueError(
            f"chunks gives more than {MAX_SHARDS} shards for n={n}: use larger chunks "
            "(docs/distributed.md: a shard should run for seconds, not milliseconds)"
        )
    return sizes


def _check_client(client: Any) -> None:
    if client is None:
        return
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - depends on the installation
        raise ImportError(
            "client= needs dask.distributed: pip install 'gensamp[distributed]'"
        ) from None
    if not isinstance(client, Client):
        raise TypeError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
    if client.status not in ("running", "connecting", "newly-created"):
        raise ValueError(f"client is {client.status}: connect a running Client")


def _dask_x0(x0: Any, n: Any, d: int, sizes_of: Any) -> tuple[Any, Any]:
    """(n, x0 rechunked to the shards) for a dask x0, whose values each shard checks on its
    worker; (n, None) for any other x0 (checked whole by the caller)."""
    if not isinstance(x0, da.Array):
        return n, None
    if x0.ndim == 1 and d == 1:
        x0 = x0[:, None]
    if x0.ndim != 2 or x0.shape[1] != d:
        raise ValueError(f"x0 must have shape [n, {d}], got {x0.shape}")
    if any(np.isnan(s) for s in x0.shape):
        raise ValueError("x0 has unknown chunk sizes: call x0.compute_chunk_sizes() first")
    rows = int(x0.shape[0])
    if n is not None and as_int(n, "n", 1) != rows:
        raise ValueError(f"x0 has {rows} rows but n={n}")
    if rows == 0:
        raise ValueError("x0 is empty")
    return rows, x0.rechunk((sizes_of(rows), (d,)))


def _build(
    model: Weights | GaussianMixture,
    sampler: str,
    settings: dict[str, Any],
    sizes: tuple[int, ...],
    chain_offset: int,
    x0: np.ndarray | None,
    x0_dask: Any,
    nrec: int,
) -> Any:
    """The dask array(s): one task per shard, keyed as the array's own chunks, so that Dask
    schedules exactly one task per shard (a from_delayed/concatenate graph costs two)."""
    d = model.dim
    payload = _payload(model)
    token = tokenize(
        payload,
        sampler,
        settings,
        sizes,
        chain_offset,
        x0,
        None if x0_dask is None else x0_dask.name,
    )
    name = f"gensamp-{sampler.replace('_', '-')}-{token}"
    model_key = f"gensamp-model-{token}"
    shard_layer: dict[Any, Any] = {model_key: DataNode(model_key, payload)}
    x_layer: dict[Any, Any] = {}
    t_layer: dict[Any, Any] = {}
    start = 0
    for i, count in enumerate(sizes):
        if x0_dask is not None:
            block: Any = TaskRef((x0_dask.name, i, 0))
        else:
            block = None if x0 is None else x0[start : start + count]
        args = (TaskRef(model_key), sampler, settings, chain_offset + start, count, block)
        if nrec < 0:
            shard_layer[(name, i, 0)] = Task((name, i, 0), _shard, *args)
        else:  # the shard returns (x, trajectory): each array takes its half
            key = (f"{name}-shard", i)
            shard_layer[key] = Task(key, _shard, *args)
            x_layer[(name, i, 0)] = Task((name, i, 0), operator.getitem, TaskRef(key), 0)
            tkey = (f"{name}-trajectory", 0, i, 0)
            t_layer[tkey] = Task(tkey, operator.getitem, TaskRef(key), 1)
        start += count
    layers: dict[str, Any] = {}
    deps: dict[str, set[str]] = {}
    inputs = set()
    if x0_dask is not None:
        graph = x0_dask.__dask_graph__()
        layers.update(graph.layers)
        deps.update(graph.dependencies)
        inputs = set(x0_dask.__dask_layers__())
    shards = name if nrec < 0 else f"{name}-shard"
    layers[shards], deps[shards] = shard_layer, inputs
    meta = np.empty((0, d), np.float32)
    if nrec < 0:
        return da.Array(HighLevelGraph(layers, deps), name, (sizes, (d,)), meta=meta)
    layers[name], deps[name] = x_layer, {shards}
    tname = f"{name}-trajectory"
    layers[tname], deps[tname] = t_layer, {shards}
    graph = HighLevelGraph(layers, deps)
    x = da.Array(graph, name, (sizes, (d,)), meta=meta)
    traj = da.Array(graph, tname, ((nrec,), sizes, (d,)), meta=meta[None])
    return x, traj


def _threads(threads: Any) -> int:
    # One engine thread per Dask worker thread unless asked: see the module docstring.
    return 1 if threads is None else resolve_threads(threads)


def _langevin_family(
    sampler: str,
    model: Weights | GaussianMixture,
    schedule: dict[str, Any],
    steps: int,
    chunks: Any,
    client: Any,
    n: Any,
    x0: Any,
    threads: Any,
    **run: Any,
) -> Any:
    _check_client(client)
    threads = _threads(threads)
    n, x0_dask = _dask_x0(x0, n, model.dim, lambda rows: _chunk_sizes(chunks, rows))
    local_x0 = None if x0_dask is not None else x0
    # the same checks as the local call, on the whole run
    n, local_x0, seed, record_every, tile, chain_offset = samplers._run_args(
        model, steps, n, local_x0, **run
    )
    settings = dict(schedule, seed=seed, threads=threads, record_every=record_every, tile=tile)
    nrec = steps // record_every if record_every else -1
    sizes = _chunk_sizes(chunks, n)
    return _build(model, sampler, settings, sizes, chain_offset, local_x0, x0_dask, nrec)


def langevin(
    weights: Any,
    eps: float | None = None,
    T: int | None = None,
    *,
    n: int | None = None,
    x0: Any = None,
    seed: int = 0,
    threads: int | None = None,
    record_every: int = 0,
    sigma: float | None = None,
    tile: int | None = None,
    chain_offset: int = 0,
    chunks: Any,
    client: Any = None,
) -> Any:
    """:func:`gensamp.langevin` as a dask array [n, d] cut into ``chunks`` of chains.

    ``x0`` may be a numpy array (checked here) or a dask array (checked by each shard).
    Everything else as in the module docstring.
    """
    model, sig, eps, T = samplers._langevin_settings(weights, eps, T, sigma)
    schedule = {"eps": eps, "T": T, "sigma": None if sigma is None else sig[0]}
    return _langevin_family(
        "langevin",
        model,
        schedule,
        T,
        chunks,
        client,
        n,
        x0,
        threads,
        seed=seed,
        record_every=record_every,
        denoise=False,
        tile=tile,
        chain_offset=chain_offset,
    )


def annealed_langevin(
    weights: Any,
    sigmas: Any = None,
    eps: float | None = None,
    T: int | None = None,
    *,
    n: int | None = None,
    x0: Any = None,
    seed: int = 0,
    threads: int | None = None,
    denoise: bool = False,
    record_every: int = 0,
    tile: int | None = None,
    chain_offset: int = 0,
    chunks: Any,
    client: Any = None,
) -> Any:
    """:func:`gensamp.annealed_langevin` as a dask array [n, d] cut into ``chunks`` of chains
    (the stored sigmas, eps and T are read here, on the client). See the module docstring."""
    model, sig, eps, T = samplers._annealed_settings(weights, sigmas, eps, T)
    schedule = {"sigmas": sig, "eps": eps, "T": T, "denoise": denoise}
    return _langevin_family(
        "annealed_langevin",
        model,
        schedule,
        len(sig) * T,
        chunks,
        client,
        n,
        x0,
        threads,
        seed=seed,
        record_every=record_every,
        denoise=denoise,
        tile=tile,
        chain_offset=chain_offset,
    )


def vae_sample(
    decoder: Any,
    n: int = DEFAULT_N,
    *,
    seed: int = 0,
    noise: bool = True,
    threads: int | None = None,
    tile: int | None = None,
    chain_offset: int = 0,
    chunks: Any,
    client: Any = None,
) -> Any:
    """:func:`gensamp.vae_sample` as a dask array [n, d] cut into ``chunks`` of chains."""
    model = samplers._vae_decoder(decoder)
    noise = as_bool(noise, "noise")
    _check_client(client)
    threads = _threads(threads)
    n = as_int(n, "n", 1)
    # the same checks as the local call, on the whole run
    _, _, seed, _, tile, chain_offset = samplers._run_args(
        model, 0, n, None, seed, 0, False, tile, chain_offset
    )
    settings = {"seed": seed, "threads": threads, "tile": tile, "noise": noise}
    sizes = _chunk_sizes(chunks, n)
    return _build(model, "vae_sample", settings, sizes, chain_offset, None, None, -1)


def _sample_method(
    model: Weights | GaussianMixture,
    n: Any,
    method: Any,
    steps: Any,
    *,
    chunks: Any,
    client: Any,
    seed: Any,
    threads: Any,
    tile: Any,
    chain_offset: Any,
) -> Any:
    _check_client(client)
    threads = _threads(threads)
    # the whole run checked here, on the client: a tiny local call with the same settings
    samplers.sample(
        model, 1, method=method, steps=steps, seed=seed, threads=1, tile=tile, progress=False
    )
    n, _, seed, _, tile, chain_offset = samplers._run_args(
        model, 0, n, None, seed, 0, False, tile, chain_offset
    )
    settings = {"method": method, "steps": steps, "seed": seed, "threads": threads, "tile": tile}
    sizes = _chunk_sizes(chunks, n)
    return _build(model, "sample", settings, sizes, chain_offset, None, None, -1)


def connect(address: str, timeout: float = 10.0) -> Any:
    """A ``dask.distributed.Client`` for the scheduler at ``address`` (e.g.
    ``tcp://scheduler-host:8786``), made the current one; OSError if none answers within
    ``timeout`` seconds."""
    from distributed import Client

    return Client(address, timeout=f"{timeout}s")


def to_zarr(
    x: Any, store: Any, *, overwrite: bool = False, attrs: dict[str, Any] | None = None
) -> None:
    """Writes the dask array ``x`` to a zarr store shard by shard (each task writes its own
    rows, so the samples are never in one place), with ``attrs`` and gensamp's version in the
    array's attributes. A store that already holds an array is refused (ValueError) unless
    ``overwrite=True``. Unequal chunks are first rechunked to equal ones, which zarr needs."""
    import zarr

    from . import __version__

    if len(set(x.chunks[0][:-1])) > 1 or x.chunks[0][-1] > x.chunks[0][0]:
        x = x.rechunk({0: max(x.chunks[0])})
    pending = da.to_zarr(x, store, overwrite=overwrite, compute=False)
    arr = zarr.open_array(store, mode="r+")
    arr.attrs.update({"gensamp_version": __version__, **(attrs or {})})
    dask.compute(pending)


def sample(
    weights: Any,
    n: int,
    *,
    chunks: Any,
    client: Any = None,
    method: str | None = None,
    steps: int | None = None,
    sigmas: Any = None,
    eps: float | None = None,
    T: int | None = None,
    sigma: float | None = None,
    denoise: bool = False,
    seed: int = 0,
    threads: int | None = None,
    tile: int | None = None,
    chain_offset: int = 0,
) -> Any:
    """n samples from any model, the sampler chosen by its role as ``gensamp sample`` does:

    * a VAE decoder -> :func:`vae_sample`;
    * a score network (role ``score``) -> :func:`langevin` with its stored eps and T (and, for
      a noise-conditional one, sigma = its stored last sigma unless ``sigma`` is given);
    * an NCSN or a GaussianMixture given ``sigmas``, ``eps``, ``T`` or ``denoise`` ->
      :func:`annealed_langevin` with those (the rest stored);
    * otherwise, or given ``method`` / ``steps`` -> :func:`gensamp.sample`'s sampler at its
      budget (the NCSN's stored method and steps, else gensamp.methods' defaults), each shard
      one call of it with its ``chain_offset``: the same bits as the local call.

    Arguments given explicitly override the stored ones; one the chosen sampler does not take
    is refused (ValueError) rather than ignored. Returns the dask array [n, d].
    """
    model = as_model(weights)
    given = {"sigmas": sigmas, "eps": eps, "T": T, "sigma": sigma, "denoise": denoise or None}
    common: dict[str, Any] = dict(chunks=chunks, client=client, seed=seed, threads=threads)
    common.update(tile=tile, chain_offset=chain_offset)
    role = model.role if isinstance(model, Weights) else "mixture"
    schedule_given = any(given[k] is not None for k in ("sigmas", "eps", "T", "denoise"))
    if (
        method is not None
        or steps is not None
        or (role in ("ncsn", "mixture") and not schedule_given)
    ):
        if schedule_given or sigma is not None:
            raise ValueError(
                "method/steps take a budget; sigmas, eps, T, sigma and denoise set a Langevin "
                "schedule: give one or the other"
            )
        return _sample_method(model, n, method, steps, **common)

    def refuse(*names: str) -> None:
        bad = [k for k in names if given[k] is not None]
        if bad:
            raise ValueError(f"{', '.join(bad)} does not apply to a {role} model's sampler")

    if role == "vae_decoder":
        refuse("sigmas", "eps", "T", "sigma", "denoise")
        return vae_sample(model, n, **common)
    if role == "score":
        refuse("sigmas", "denoise")
        if sigma is None and isinstance(model, Weights) and model.conditioned:
            stored = model.sampler.get("sigmas")
            sigma = stored[-1] if stored else None
        return langevin(model, eps, T, n=n, sigma=sigma, **common)
    refuse("sigma")
    return annealed_langevin(model, sigmas, eps, T, n=n, denoise=denoise, **common)
