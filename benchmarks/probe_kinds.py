"""Which probe inputs tell tasks apart? Retrieval by raw probe outputs, per probe design.

    python benchmarks/probe_kinds.py --zoo ZOO

Each test-split net of the zoo is run on fixed probe inputs of its own input shape; its
outputs, flattened and zero-padded, are the embedding (the `probe` baseline, wide enough
not to truncate). Leave-one-out mAP, relevant = same task (INRs: same digit), over all test
models and over the queries of INRs, of the other models, and of image-shaped inputs
(rank >= 3). Designs: standard-normal draws (the encoders' old default), scrambled Sobol
points in [-1, 1]^d (the current default), and "smooth" probes for image-shaped inputs —
Sobol points on a 3 x 3 grid per channel, bilinearly upsampled — Sobol elsewhere, and
"structured" probes: the smooth ones for images, a pixel lattice then Sobol points for
coordinate inputs (INRs), Sobol elsewhere.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from zoolens.bench.measure import subset_retrieval
from zoolens.eval import retrieval_metrics
from zoolens.nn import encoder_class
from zoolens.train.data import group_labels
from zoolens.zoo import Zoo

DESIGNS = {  # label → `default_probes` kind
    "normal": "normal",
    "sobol": "sobol",
    "smooth images, sobol elsewhere": "smooth",
    "structured (+ INR pixel lattice)": "structured",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--n", default="16,64", help="probe counts to try")
    args = ap.parse_args()
    torch.set_num_threads(1)
    zoo = Zoo.open(args.zoo)
    test = zoo.manifest[zoo.manifest["split"] == "test"].reset_index(drop=True)
    nets = [zoo.load(str(i)).to(torch.float64) for i in test["id"]]
    labels = group_labels(test)
    inr = test["kind"].eq("inr").to_numpy()
    image = np.array([len(net.input_shape) == 3 for net in nets])
    subsets = {"INRs": inr, "non-INR": ~inr, "image inputs": image}
    print(f"{len(nets)} test models; mAP (relevant = same task; INRs: same digit)")
    print(f"{'probes':34s} {'n':>3s} {'all':>6s} " + " ".join(f"{k:>12s}" for k in subsets))
    for name, kind in DESIGNS.items():
        for n in (int(v) for v in args.n.split(",")):
            width = n * int(test["n_outputs"].max())  # every output on every probe
            probe = encoder_class("probe")({"n_probes": n, "probes": kind, "dim": width})
            z = probe.encode(nets)
            row = [retrieval_metrics(z, labels)["mAP"]]
            row += [subset_retrieval(z, labels, q)["mAP"] for q in subsets.values()]
            print(f"{name:34s} {n:3d} {row[0]:6.3f} " + " ".join(f"{v:12.3f}" for v in row[1:]))


if __name__ == "__main__":
    main()
