"""Peak resident memory of one engine run: N = 1e6 chains, d = 2, no trajectory.

Runs the sampler in a fresh subprocess, so the peak (ru_maxrss) belongs to this run alone,
and reports it above the process's resident size just before the call. Target: the output
array + the weights + less than 64 MiB.

    python bench/memory.py [--n 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, os, resource
import numpy as np, gensamp
from gensamp import benchmark as B
w = B.export(B.network(2, 128))
gensamp.annealed_langevin(w, B.SIGMAS, 1e-3, 1, n=100, seed=1)  # warm: code pages, OpenMP pool
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = rss()
peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
x = gensamp.annealed_langevin(w, B.SIGMAS, 1e-3, 1, n={n}, seed=1)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
wbytes = sum(W.nbytes + b.nbytes for W, b in w.layers)
print(json.dumps(dict(n={n}, rss_before=before, peak_before=peak_before, peak=peak,
                      output_bytes=x.nbytes, weight_bytes=wbytes)))
"""


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    code = CHILD.format(n=args.n)
    res = json.loads(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    extra = (
        max(res["peak"], res["peak_before"])
        - res["rss_before"]
        - res["output_bytes"]
        - res["weight_bytes"]
    )
    res["extra_bytes"] = extra
    res["ok"] = extra < 64 * 2**20
    mib = 2**20
    print(
        f"N={args.n}, d=2: output {res['output_bytes'] / mib:.1f} MiB, weights "
        f"{res['weight_bytes'] / mib:.2f} MiB, peak RSS above pre-call "
        f"{(res['peak'] - res['rss_before']) / mib:.1f} MiB -> extra {extra / mib:.1f} MiB "
        f"(< 64 MiB: {'PASS' if res['ok'] else 'FAIL'})"
    )
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import common
    from gensamp import benchmark as B

    common.write_json(os.path.join(args.out, "memory.json"), dict(machine=B.machine(), **res))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
