"""OpenMP scaling of the C++ engine: threads 1..all at fixed N, speed-up and parallel efficiency.

    python bench/scaling.py [--n 100000] [--smoke]

Writes bench/results/scaling.json. Checks (unless --no-check): 2 threads >= 1.8x one thread.
"""

from __future__ import annotations

import argparse
import os
import sys

from gensamp import benchmark as B

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--no-check", dest="check", action="store_false")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    n = 2_000 if args.smoke else args.n
    all_threads = os.cpu_count() or 1
    rows = []
    for d, h in [(1, 128)] if args.smoke else [(1, 128), (64, 256)]:
        w = B.export(B.network(d, h))
        T = max(1, round((2e8 if args.smoke else 3e10) / (B.flops_per_step(d, h) * n * B.L_LEVELS)))
        base = None
        for th in range(1, all_threads + 1):
            t = B.timed(lambda w=w, T=T, th=th: B.engine(w, n, T, th), 1 if args.smoke else 3)
            rate = n * B.L_LEVELS * T / t
            base = base or rate
            rows.append(
                dict(
                    d=d,
                    hidden=h,
                    n=n,
                    T=T,
                    threads=th,
                    chain_steps_s=rate,
                    speedup=rate / base,
                    efficiency=rate / base / th,
                )
            )
            print(
                f"d={d:3d} h={h:3d} N={n} threads={th:2d}: {rate:10.4g} chain-steps/s  "
                f"speed-up {rate / base:5.2f}  efficiency {rate / base / th:5.2f}",
                flush=True,
            )
    checks = [
        dict(
            target=f"2 threads / 1 thread, ({r['d']},{r['hidden']}) N={n}",
            measured=r["speedup"],
            required=1.8,
            ok=r["speedup"] >= 1.8,
        )
        for r in rows
        if r["threads"] == 2
    ]
    for c in checks:
        print(f"{c['target']}: {c['measured']:.2f} (>= 1.8) {'PASS' if c['ok'] else 'FAIL'}")
    name = "scaling_smoke.json" if args.smoke else "scaling.json"
    common.write_json(
        os.path.join(args.out, name), dict(machine=B.machine(), rows=rows, targets=checks)
    )
    return 1 if args.check and not args.smoke and not all(c["ok"] for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
