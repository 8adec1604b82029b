"""What the machine can give a run: the thread count and the memory a run may allocate.

Both are decided here once, for the engine samplers and log_prob: the thread
count from ``threads=``, ``$GENSAMP_NUM_THREADS`` or OpenMP's default, capped; the memory
from the smallest of MemAvailable, the cgroup limit's room and RLIMIT_AS, so a run that
cannot fit is refused with a MemoryError before it allocates.
"""

from __future__ import annotations

import contextlib
import os
import resource
from typing import Any

from . import _core
from ._validate import as_int

THREADS_ENV = "GENSAMP_NUM_THREADS"
MAX_THREADS = 4096  # for threads= and $GENSAMP_NUM_THREADS alike


def resolve_threads(threads: object) -> int:
    """The engine's thread count. threads=None: $GENSAMP_NUM_THREADS if set, else OpenMP's
    default (OMP_NUM_THREADS, else the cores), capped at MAX_THREADS like every other source:
    OMP_NUM_THREADS=100000 must not reach the thread pool."""
    if threads is None:
        env = os.environ.get(THREADS_ENV)
        if env:
            try:
                threads = int(env)
            except ValueError:
                raise ValueError(f"{THREADS_ENV}={env!r} is not an integer") from None
            if not 1 <= threads <= MAX_THREADS:
                # An absurd count would make OpenMP fail to create threads, which kills the process.
                raise ValueError(f"{THREADS_ENV} must be in [1, {MAX_THREADS}], got {threads}")
            return threads
        return min(MAX_THREADS, max(1, int(_core.max_threads())))
    return as_int(threads, "threads", 1, MAX_THREADS)


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_room() -> int | None:
    """Bytes left under this container's memory limit (cgroup v2, else v1), None if unlimited."""
    for limit_f, usage_f, stat_f, inactive in (
        ("memory.max", "memory.current", "memory.stat", "inactive_file"),
        (
            "memory/memory.limit_in_bytes",
            "memory/memory.usage_in_bytes",
            "memory/memory.stat",
            "total_inactive_file",
        ),
    ):
        limit = _read_int("/sys/fs/cgroup/" + limit_f)
        usage = _read_int("/sys/fs/cgroup/" + usage_f)
        if limit is None or usage is None or limit >= 2**60:  # "max" or the v1 "no limit" value
            continue
        reclaimable = 0  # page cache the kernel drops before it OOM-kills
        try:
            with open("/sys/fs/cgroup/" + stat_f) as fh:
                for line in fh:
                    key, _, val = line.partition(" ")
                    if key == inactive and val.strip().isdigit():
                        reclaimable = int(val)
        except OSError:
            pass
        return max(0, limit - max(0, usage - reclaimable))
    return None


def _address_space_room() -> int | None:
    """Bytes left under RLIMIT_AS (ulimit -v), None if unlimited."""
    try:
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/status") as fh:
            vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
        return max(0, soft - vm)
    except (OSError, ValueError, StopIteration):
        return None


def _available_memory() -> int | None:
    """Memory a new allocation can get without swapping or an OOM kill: the smallest of the
    system's MemAvailable (free + reclaimable cache), the cgroup limit's room and RLIMIT_AS."""
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if avail is None:
        with contextlib.suppress(ValueError, OSError, AttributeError):  # non-POSIX
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for room in (_cgroup_room(), _address_space_room()):
        if room is not None:
            avail = room if avail is None else min(avail, room)
    return avail


SAMPLING_HINT = "draw fewer chains, record less often (record_every) or sample in batches"


def check_memory(nbytes: int, what: str, hint: str = SAMPLING_HINT) -> None:
    """MemoryError naming the size when ``nbytes`` is over 80 % of what an allocation can get."""
    avail = _available_memory()
    if avail is None:  # pragma: no cover - nothing to measure against
        return
    if nbytes > 0.8 * avail:
        raise MemoryError(
            f"{what} would need {nbytes / 2**30:.2f} GiB but only {avail / 2**30:.2f} GiB is "
            f"available; {hint}"
        )


def check_engine_memory(model: Any) -> None:
    """Refuses, before it is built, an engine copy of ``model`` (Weights or GaussianMixture)
    that cannot fit (the weights and the packed copies the kernels read: many times the
    weights for a narrow layer)."""
    if model._engine_cache is None:
        check_memory(
            model._engine_bytes(),
            "the engine's copy of this model (with the packed weights its kernels read)",
            "use a smaller model",
        )


def check_run_memory(
    states: int, parts: dict[str, int], what: str, levels: int, hint: str = SAMPLING_HINT
) -> None:
    """Refuses a run whose output (``states`` bytes) and engine allocations do not fit. The
    engine says what it will allocate (``_core.run_bytes`` and the like: noise-level tables,
    per-thread tile buffers); a part over 1 % of the total is named in the message, the
    largest in the hint."""
    total = states + parts["levels"] + parts["tiles"]
    if parts["levels"] * 100 > total:
        what += f" and the engine's tables for {levels} noise levels"
        if parts["levels"] > max(states, parts["tiles"]):
            hint = "use fewer noise levels"
    if parts["tiles"] * 100 > total:
        what += " and the engine's per-thread buffers"
        if parts["tiles"] > max(states, parts["levels"]):
            hint = "use fewer threads or a smaller tile"
    check_memory(total, what, hint)
