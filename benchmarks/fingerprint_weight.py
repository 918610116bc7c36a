"""Choose the weight (and the per-output normalisation) of the function fingerprint of a
trained neural-graph encoder, of its function, class and render heads if it has them,
and of its interface part, on the validation split; show what each gives on the test
split.

    python benchmarks/fingerprint_weight.py --zoo ZOO --run RUN --heldout-run RUN2
        --heldout-tasks a,b,c --heldout-families f [--weights 0,0.1,...]
        [--head-weights 0,0.2,...] [--interface-weights 0,0.1,...] [--class-weights 0,...]
        [--render-weights 0,0.1,...] [--norms none,centre,zscore] [--save DIR]

``--head-weights`` (``--class-weights``, ``--render-weights``) needs encoders with a
function head (a class head, a render head): `zoolens fit-function [--head class|render]
--out RUN/best`, the counterpart's fit without the held-out tasks and families; copy the
training run's metrics.csv and train_config.json beside it. A render weight r scales the
row's other weights by 1 - r (the table prints the scaled ones, which the encoders use):
the nets that are not drawn then keep their neighbours' order among themselves.

The criterion, fixed before looking: the mean of three validation mAPs — every validation
query (encoder `RUN`), and the queries of the held-out tasks and of the held-out families
(encoder `RUN2`, trained without them); gallery: every validation model. The test split
only reports. `--save DIR` writes both runs with the chosen weight set (DIR/trained,
DIR/heldout: the encoder in best/, the run's metrics.csv and train_config.json beside it),
for `zoolens benchmark --pretrained`.
"""

from __future__ import annotations

import argparse
import os
import shutil

import numpy as np
import torch

from zoolens.bench.measure import subset_retrieval
from zoolens.eval import retrieval_metrics
from zoolens.nn import NeuralGraphEncoder, load_encoder
from zoolens.nn.fingerprint import fingerprints
from zoolens.nn.neural_graph_encoder import EmbeddingParts
from zoolens.nn.render import renders
from zoolens.train.data import group_labels
from zoolens.zoo import Zoo


def learned_part(enc: NeuralGraphEncoder, graphs: list, batch: int = 64) -> np.ndarray:
    """The encoder's learned embeddings of `graphs` (norm-independent: once per encoder)."""
    with torch.no_grad():
        parts = [enc.forward(graphs[s : s + batch]) for s in range(0, len(graphs), batch)]
    return torch.cat(parts).double().numpy()


def fingerprint_part(enc: NeuralGraphEncoder, graphs: list, norm: str) -> np.ndarray:
    dim, seed = int(enc.config["fingerprint_dim"]), int(enc.config["seed"])
    return fingerprints(graphs, dim, seed, norm)


def scores(
    zoo: Zoo, split: str, encs: dict, args: argparse.Namespace, grid: list, weighed: list
) -> list:
    """(all, held-out tasks, held-out families) mAP on `split` for each (norm, weight,
    head weight, interface weight, class head weight, render head weight) of `grid`;
    `weighed` holds both encoders under each row's weights."""
    m = zoo.manifest
    df = m[m["split"] == split].reset_index(drop=True)
    nets = [zoo.load(str(i)).to(torch.float32) for i in df["id"]]
    labels = group_labels(df)
    held_tasks = df["task"].isin(args.heldout_tasks.split(",")).to_numpy()
    held_fams = df["family"].isin(args.heldout_families.split(",")).to_numpy()
    graphs = {key: enc.graphs(nets) for key, enc in encs.items()}  # their own probes
    learned = {key: learned_part(enc, graphs[key]) for key, enc in encs.items()}
    fps = {
        (key, norm): fingerprint_part(enc, graphs[key], norm)
        for key, enc in encs.items()
        for norm in dict.fromkeys(row[0] for row in grid)
    }
    iface = {key: enc.interfaces(nets, graphs[key]) for key, enc in encs.items()}
    sides = {key: int(enc.config["render_side"]) for key, enc in encs.items()}
    drawings = {side: renders(nets, side) for side in set(sides.values())}  # once per side
    rows = []
    for (norm, *_), pair in zip(grid, weighed, strict=True):
        z, h = (  # each encoder under these weights (its head reads this norm's fingerprint)
            pair[key].compose(
                EmbeddingParts(learned[key], fps[key, norm], iface[key], *drawings[sides[key]])
            )
            for key in ("trained", "heldout")
        )
        rows.append(
            (
                retrieval_metrics(z, labels)["mAP"],
                subset_retrieval(h, labels, held_tasks)["mAP"],
                subset_retrieval(h, labels, held_fams)["mAP"],
            )
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--zoo", "--run", "--heldout-run", "--heldout-tasks", "--heldout-families"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--weights", default="0,0.1,0.2,0.25,0.3,0.35,0.4,0.5")
    ap.add_argument("--head-weights", default="0")
    ap.add_argument("--interface-weights", default="0")
    ap.add_argument("--class-weights", default="0")
    ap.add_argument("--render-weights", default="0")
    ap.add_argument("--norms", default="none")
    ap.add_argument("--save", default="")
    args = ap.parse_args()
    zoo = Zoo.open(args.zoo)
    encs = {}
    for key, run in (("trained", args.run), ("heldout", args.heldout_run)):
        enc = load_encoder(os.path.join(run, "best"))
        if not isinstance(enc, NeuralGraphEncoder):
            raise SystemExit(f"{run}: not a neural-graph encoder")
        encs[key] = enc
    grid = [
        (n, *(float(x) * (1 - float(r)) for x in (w, v, k, u)), float(r))
        for n in args.norms.split(",")
        for w in args.weights.split(",")
        for v in args.head_weights.split(",")
        for k in args.interface_weights.split(",")
        for u in args.class_weights.split(",")
        for r in args.render_weights.split(",")
        if float(w) + float(v) + float(k) + float(u) < 1 and 0 <= float(r) < 1
    ]
    heads = ((2, "--head-weights", "function"), (4, "--class-weights", "classes"))
    for col, flag, attr in (*heads, (5, "--render-weights", "render")):
        if any(row[col] for row in grid) and any(getattr(e, attr) is None for e in encs.values()):
            raise SystemExit(f"{flag}: both encoders need that head (zoolens fit-function)")
    weighed = [  # built once, for both splits and --save
        {key: enc.with_fingerprint(w, norm, v, k, u, r) for key, enc in encs.items()}
        for norm, w, v, k, u, r in grid
    ]
    val, test = (scores(zoo, s, encs, args, grid, weighed) for s in ("val", "test"))
    best = max(range(len(grid)), key=lambda i: float(np.mean(val[i])))
    print(
        "| norm | weight | head weight | interface weight | class weight | render weight "
        "| val mAP "
        "| val held-out tasks "
        "| val held-out family | val mean | test mAP | test held-out tasks "
        "| test held-out family |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for i, (norm, w, v, k, u, r) in enumerate(grid):
        mark = " (chosen)" if i == best else ""
        cells = " | ".join(f"{x:.3f}" for x in (*val[i], np.mean(val[i]), *test[i]))
        print(f"| {norm} | {w:.6g} | {v:.6g} | {k:.6g} | {u:.6g} | {r:g}{mark} | {cells} |")
    if args.save:
        for key, run in zip(encs, (args.run, args.heldout_run), strict=True):
            out = os.path.join(args.save, key)
            weighed[best][key].save(os.path.join(out, "best"))
            for fname in ("metrics.csv", "train_config.json"):  # the run's history and data
                shutil.copy(os.path.join(run, fname), os.path.join(out, fname))
        print(
            "saved both encoders with (norm, weight, head, interface, class, render weights) "
            f"{grid[best]} under {args.save}"
        )


if __name__ == "__main__":
    main()
