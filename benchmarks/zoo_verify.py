"""Re-run every model of a generated zoo on its task's test split and compare with the
manifest: each checkpoint must load as a Net and reproduce its recorded metric.

    python benchmarks/zoo_verify.py ZOO_DIR [--tol 1e-6]

Prints, per task kind, the number of models checked and the largest difference between
the recomputed and the recorded metric (accuracy, R², PSNR in dB); exits 1 on a mismatch.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict

import torch

from zoolens.zoo import Zoo
from zoolens.zoo.evaluation import evaluate

COLUMN = {"classification": "accuracy", "regression": "r2", "inr": "psnr"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("zoo")
    ap.add_argument("--tol", type=float, default=1e-6, help="relative tolerance")
    args = ap.parse_args()
    torch.set_num_threads(1)
    zoo = Zoo.open(args.zoo)
    start = time.perf_counter()
    worst: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    bad = []
    for net, row in zoo:
        kind = str(row["kind"])
        recorded = float(row[COLUMN[kind]])
        got = evaluate(net, row)
        diff = abs(got - recorded)
        worst[kind] = max(worst[kind], diff)
        count[kind] += 1
        if not math.isclose(got, recorded, rel_tol=args.tol, abs_tol=args.tol):
            bad.append((row["id"], kind, recorded, got))
    print(f"{zoo.path}: {sum(count.values())} models in {time.perf_counter() - start:.0f} s")
    for kind in sorted(count):
        print(f"  {kind:14s} {count[kind]:5d}, max |recomputed - recorded|: {worst[kind]:.1e}")
    for model_id, kind, recorded, got in bad[:20]:
        print(f"  MISMATCH {model_id} ({kind}): recorded {recorded}, recomputed {got}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
