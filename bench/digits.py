"""8x8 digits (issue 16's protocol): an NCSN and a VAE (mixture and N(0, I) priors) trained on
the 1,400 train images, 10,000 engine samples each, scored against the 397 test images, next
to the 40-component Gaussian-mixture baseline, for several training seeds.

The pipeline is :func:`gensamp.digits_demo.measure` (what ``gensamp demo digits`` runs); this
script repeats it over seeds and reports means, the issue's targets judged on the means.
Training uses one torch thread per model; the engine all cores.

    python bench/digits.py                 # seeds 0,1,2 -> bench/results/digits.json
    python bench/digits.py --seeds 0       # one seed
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))  # run from a checkout without installing

from gensamp import digits_demo  # noqa: E402
from gensamp.benchmark import machine  # noqa: E402

METRICS = [
    "energy_distance_sq",
    "mmd",
    "nn_ratio",
    "near_copies",
    "confidence",
    "max_share_deviation",
    "train_seconds",
    "sample_seconds",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "digits.json"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    t0 = time.time()
    runs = []
    for s in seeds:
        print(f"seed {s} ...", flush=True)
        runs.append(digits_demo.measure(s, quiet=False))
    models = list(runs[0]["models"])
    mean = {
        k: {
            m: float(np.mean([r["models"][k][m] for r in runs]))
            for m in METRICS
            if m in runs[0]["models"][k]
        }
        for k in models
    }
    floors = {
        "energy_distance_sq": float(
            np.mean([r["models"]["ncsn"]["energy_distance_sq_floor"] for r in runs])
        ),
        "mmd": float(np.mean([r["models"]["ncsn"]["mmd_floor"] for r in runs])),
        "test_confidence": float(np.mean([r["models"]["ncsn"]["test_confidence"] for r in runs])),
    }
    targets = digits_demo.judge_targets(mean)
    lines = [
        f"### 8x8 digits, means over seeds {seeds} (10,000 engine samples per model vs the "
        "397 test images)",
        "",
        "| model | ED^2 | MMD^2 | NN ratio | near-copies | confidence | class shares off by "
        "| train s | sample s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k in models:
        v = mean[k]
        lines.append(
            f"| {k} | {v['energy_distance_sq']:.4f} | {v['mmd']:.5f} | {v['nn_ratio']:.2f} | "
            f"{v['near_copies']:.3f} | {v['confidence']:.3f} | {v['max_share_deviation']:.3f} | "
            f"{v['train_seconds']:.0f} | {v.get('sample_seconds', 0):.1f} |"
        )
    lines.append(
        f"| floor: train vs test | {floors['energy_distance_sq']:.4f} | {floors['mmd']:.5f} "
        f"| 1 | | {floors['test_confidence']:.3f} (real test) | | | |"
    )
    lines += ["", "| target (on the means) | measured | status |", "|---|---|---|"]
    for t in targets:
        tag = " (stretch)" if t["stretch"] else ""
        lines.append(
            f"| {t['model']} {t['metric']} {t['bound']}{tag} | {t['value']:.4g} | {t['status']} |"
        )
    table = "\n".join(lines)
    print(table)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(
            {
                "machine": machine(),
                "seeds": seeds,
                "ncsn_settings": {
                    k: list(v) if isinstance(v, tuple) else v
                    for k, v in digits_demo.NCSN_SETTINGS.items()
                },
                "vae_settings": digits_demo.VAE_SETTINGS,
                "runs": runs,
                "mean": mean,
                "floors": floors,
                "targets": targets,
                "table": table,
                "seconds": time.time() - t0,
            },
            fh,
            indent=1,
            default=float,
        )
    print(f"wrote {args.out} in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
