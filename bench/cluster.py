"""gensamp.distributed on this machine: throughput with 1 and 2 local Dask workers against the
local call at n = 10^6, worker layouts (one engine thread per worker thread, or one shard at a
time with all of a worker's cores, or oversubscribed), chunk sizes, and Dask's cost per shard.

    python bench/cluster.py [--n 1000000] [--smoke]

Writes bench/results/cluster.json (cluster_smoke.json with --smoke). The network is the
throughput benchmark's (1, 128) shape -- 3 layers, ReLU, log-sigma input, 10 noise levels --
built with numpy, so the workers (spawned processes) never load torch. Every cluster run is
also checked bit for bit against the local call. Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any

import gensamp
import numpy as np
from gensamp import distributed as D

HERE = os.path.dirname(os.path.abspath(__file__))

L_LEVELS = 10
SIGMAS = np.geomspace(10.0, 0.1, L_LEVELS).tolist()
EPS = 1e-3


def network(d: int = 1, hidden: int = 128, seed: int = 0) -> gensamp.Weights:
    """The benchmark's network shape, with torch's default (uniform) initialisation."""
    rng = np.random.default_rng(seed)
    sizes = [d + 1, hidden, hidden, d]
    layers = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / np.sqrt(i)
        layers.append((rng.uniform(-bound, bound, (o, i)), rng.uniform(-bound, bound, o)))
    return gensamp.Weights(layers, ["relu", "relu"], sigma_input="log_sigma", divide_by_sigma=True)


def _noop(i: int) -> int:
    return i


def best_of(fn: Any, reps: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def cluster(workers: int, threads: int) -> Any:
    from distributed import Client, LocalCluster

    cl = LocalCluster(
        n_workers=workers,
        threads_per_worker=threads,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
        silence_logs=logging.CRITICAL,  # a closing cluster logs its workers' lost heartbeats
    )
    return cl, Client(cl)


def main() -> int:
    import common  # torch (through gensamp.benchmark): loaded here, never by the workers
    from gensamp.benchmark import flops_per_step, machine

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    n = 20_000 if args.smoke else args.n
    reps = 1 if args.smoke else 3
    load_before = list(os.getloadavg())
    w = network()
    # about 1e7 chain-steps per run: ~2 s on this machine's two cores when they are free
    T = max(1, round((4e5 if args.smoke else 1e7) / (n * L_LEVELS)))
    steps = n * L_LEVELS * T
    run = dict(sigmas=SIGMAS, eps=EPS, T=T, n=n, seed=1)
    print(f"n={n}, {L_LEVELS} levels x T={T}: {steps:.3g} chain-steps per run", flush=True)

    local = {}
    ref = None
    for th in (1, 2):
        t, ref = best_of(lambda th=th: gensamp.annealed_langevin(w, threads=th, **run), reps)
        local[th] = steps / t
        print(f"local call, threads={th}: {t:6.2f} s  {steps / t:10.4g} chain-steps/s", flush=True)

    shard = max(1, n // 10)
    layouts = [
        ("1 worker x 1 thread", 1, 1, 1),
        ("2 workers x 1 thread", 2, 1, 1),
        ("1 worker x 2 threads, threads=1 per shard", 1, 2, 1),
        ("1 worker x 1 thread, threads=2 per shard", 1, 1, 2),
        ("2 workers x 1 thread, threads=2 per shard (oversubscribed)", 2, 1, 2),
    ]
    rows = []
    sweep = []
    overhead: dict[str, Any] = {}
    for name, workers, wthreads, sthreads in layouts:
        cl, client = cluster(workers, wthreads)
        try:
            client.wait_for_workers(workers)
            D.annealed_langevin(w, **dict(run, n=2_000), chunks=1_000).compute()  # warm-up
            # The local 2-thread call again, just before: the machine is shared, and a ratio
            # of two runs minutes apart would measure the other jobs as much as Dask.
            t2, _ = best_of(lambda: gensamp.annealed_langevin(w, threads=2, **run), reps)
            local2 = steps / t2
            x = D.annealed_langevin(w, threads=sthreads, chunks=shard, **run)
            t, out = best_of(x.compute, reps)
            rate = steps / t
            rows.append(
                dict(
                    layout=name,
                    workers=workers,
                    threads_per_worker=wthreads,
                    threads_per_shard=sthreads,
                    chunks=shard,
                    shards=x.numblocks[0],
                    seconds=t,
                    chain_steps_s=rate,
                    local_2_threads_chain_steps_s=local2,
                    vs_local_2_threads=rate / local2,
                    bit_identical=bool(np.array_equal(out, ref)),
                )
            )
            print(
                f"{name:58s} {t:6.2f} s  {rate:10.4g} chain-steps/s  "
                f"{rate / local2:5.2f}x the local 2-thread call ({local2:.4g})  "
                f"identical={rows[-1]['bit_identical']}",
                flush=True,
            )
            if name in ("1 worker x 1 thread", "2 workers x 1 thread"):
                # Dask's own cost per shard: many shards of one chain and 10 steps, whose engine
                # time (microseconds) is nothing next to the scheduling of the task.
                tiny_n = 200 if args.smoke else 1_000
                tiny = dict(run, T=1, n=tiny_n)
                xt = D.annealed_langevin(w, chunks=1, **tiny)
                tt, _ = best_of(xt.compute, reps)
                overhead[name] = dict(shards=tiny_n, seconds=tt, per_shard_s=tt / tiny_n)
                # the same number of tasks that do nothing: Dask's floor on this machine
                tn, _ = best_of(
                    lambda c=client, k=tiny_n: c.gather(c.map(_noop, range(k), pure=False)), reps
                )
                overhead[name]["noop_task_s"] = tn / tiny_n
                print(
                    f"  {tiny_n} one-chain shards: {1e3 * tt / tiny_n:.2f} ms per shard "
                    f"(a no-op Dask task: {1e3 * tn / tiny_n:.2f} ms)"
                )
            if name == "2 workers x 1 thread":
                for c in [n // 1000, n // 100, n // 10, n // 4]:
                    xs = D.annealed_langevin(w, chunks=max(1, c), **run)
                    ts, _ = best_of(xs.compute, min(reps, 2))
                    t2, _ = best_of(
                        lambda: gensamp.annealed_langevin(w, threads=2, **run), min(reps, 2)
                    )
                    local2 = steps / t2
                    sweep.append(
                        dict(
                            chunks=c,
                            shards=xs.numblocks[0],
                            shard_chain_steps=c * L_LEVELS * T,
                            seconds=ts,
                            chain_steps_s=steps / ts,
                            local_2_threads_chain_steps_s=local2,
                            vs_local_2_threads=steps / ts / local2,
                        )
                    )
                    print(
                        f"  chunks={c:8d} ({xs.numblocks[0]:4d} shards): {ts:6.2f} s  "
                        f"{steps / ts / local2:5.2f}x the local 2-thread call",
                        flush=True,
                    )
        finally:
            client.close()
            cl.close()

    # How many shards a second one scheduler hands out when workers wait on nothing else: one
    # worker with 8 threads (a bound from below: the scheduler shares these 2 cores).
    cl, client = cluster(1, 8)
    try:
        client.wait_for_workers(1)
        tiny_n = 200 if args.smoke else 1_000
        xt = D.annealed_langevin(w, chunks=1, **dict(run, T=1, n=tiny_n))
        xt.compute()
        tt, _ = best_of(xt.compute, reps)
        overhead["1 worker x 8 threads"] = dict(shards=tiny_n, seconds=tt, per_shard_s=tt / tiny_n)
        print(f"scheduler throughput: {tiny_n / tt:.0f} one-chain shards/s with 8 worker threads")
    finally:
        client.close()
        cl.close()

    # A shard's cost is o (Dask) + c * S / r (engine; r chain-steps/s per thread): overhead
    # below 5% needs c * S / r >= 19 o, i.e. >= 19 * o * r chain-steps per shard.
    o = overhead["1 worker x 1 thread"]["per_shard_s"]
    r1 = local[1]
    model = dict(
        per_shard_overhead_s=o,
        scheduler_shards_per_s=1 / overhead["1 worker x 8 threads"]["per_shard_s"],
        engine_chain_steps_s_per_thread=r1,
        min_shard_chain_steps_for_5pct=19 * o * r1,
        min_shard_seconds_for_5pct=19 * o,
    )
    print(
        f"overhead per shard {1e3 * o:.2f} ms, engine {r1:.3g} chain-steps/s per thread: "
        f"shards of >= {19 * o * r1:.3g} chain-steps ({19 * o:.3f} s) keep it under 5%"
    )
    payload = dict(
        machine=machine(),
        # the machine is shared: other jobs' load while this ran (1, 5, 15 min averages)
        load_average_before=load_before,
        load_average_after=list(os.getloadavg()),
        network=dict(d=1, hidden=128, levels=L_LEVELS, flops_per_step=flops_per_step(1, 128)),
        n=n,
        T=T,
        chain_steps=steps,
        local_chain_steps_s={str(k): v for k, v in local.items()},
        layouts=rows,
        chunk_sweep=sweep,
        overhead=overhead,
        overhead_model=model,
        versions={m: sys.modules[m].__version__ for m in ("dask", "distributed")},
    )
    name = "cluster_smoke.json" if args.smoke else "cluster.json"
    common.write_json(os.path.join(args.out, name), payload)
    return 0 if all(r["bit_identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
