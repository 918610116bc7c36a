"""Index speed: add throughput, search latency p50/p99, and recall@10 of HNSW against exact.

Random unit vectors (d = 256) go straight into a `ModelIndex` through `add_embeddings`
(SQLite commits per 10 000 rows, then the FAISS index is built and its cache saved). Latency is
end to end through `ModelIndex.search` (one query at a time, ids looked up in SQLite), exact
(flat) and approximate (HNSW at several ``efSearch``); recall@10 is against the exact top 10.

Two kinds of random data:

- ``uniform``: uniform on the sphere, queries too. The worst case for any approximate index:
  in 256 dimensions the 10th neighbour of a query is barely closer than the 1000th.
- ``clustered``: ``n/100`` random centres, members ``centre + noise`` (cosine ≈ 0.7 to their
  centre), queries new members of existing clusters — models of one family, task or seed sweep
  sit together, as embeddings of a model zoo do.

Usage::

    python benchmarks/index_speed.py                      # 1e3 … 1e6, both data kinds
    python benchmarks/index_speed.py --sizes 1000,10000 --data uniform --ef 64,256
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable

import faiss
import numpy as np

from zoolens.index import IndexConfig, ModelIndex

log = logging.getLogger("index_speed")


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_data(
    kind: str, n: int, d: int, n_queries: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(database (n, d), queries (n_queries, d))`` unit vectors."""
    if kind == "uniform":
        return unit(rng.standard_normal((n, d), dtype=np.float32)), unit(
            rng.standard_normal((n_queries, d), dtype=np.float32)
        )
    centres = unit(rng.standard_normal((max(1, n // 100), d), dtype=np.float32))
    noise = 1.0 / np.sqrt(d)  # noise norm ≈ 1: cosine to the centre ≈ 0.7

    def members(m: int) -> np.ndarray:
        picks = rng.integers(0, len(centres), m)
        return unit(centres[picks] + noise * rng.standard_normal((m, d), dtype=np.float32))

    x = np.concatenate([members(min(100_000, n - s)) for s in range(0, n, 100_000)])
    return x, members(n_queries)


def latencies(fn: Callable[[np.ndarray], object], queries: np.ndarray) -> tuple[float, float]:
    """p50 and p99 in milliseconds over single-query calls (after 5 warm-up calls)."""
    for q in queries[:5]:
        fn(q)
    times = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def recall_at_k(got: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(t)) / len(t) for g, t in zip(got, truth, strict=True)]))


def run_size(
    kind: str, n: int, args: argparse.Namespace, rng: np.random.Generator, rows: list[dict]
) -> None:
    x, queries = make_data(kind, n, args.dim, args.queries, rng)
    work = tempfile.mkdtemp(prefix="index_speed_", dir=args.dir)
    try:
        config = IndexConfig(hnsw_m=args.hnsw_m, ef_construction=args.ef_construction)
        index = ModelIndex.open(work, encoder=None, kind="flat", config=config)
        t = time.perf_counter()
        index.add_embeddings(
            x,
            [f"v{i}" for i in range(n)],
            encoder_id="random-unit",
            metadata=[{"bucket": i % 10} for i in range(n)],
        )
        add_s = time.perf_counter() - t
        del x
        base = {"data": kind, "n": n}
        p50, p99 = latencies(lambda q: index.search(q, k=args.k), queries)
        rows.append(
            {
                **base,
                "kind": "flat",
                "ef": "",
                "build/s": n / add_s,
                "p50": p50,
                "p99": p99,
                "recall": 1.0,
            }
        )
        p50, p99 = latencies(lambda q: index.search(q, k=args.k, where={"bucket": 3}), queries)
        rows.append(
            {
                **base,
                "kind": "flat+where10%",
                "ef": "",
                "build/s": float("nan"),
                "p50": p50,
                "p99": p99,
                "recall": 1.0,
            }
        )
        _, truth = index.search(queries, k=args.k)
        t = time.perf_counter()
        index.rebuild(kind="hnsw")
        build_s = time.perf_counter() - t
        for ef in args.ef:
            index.configure_search(ef_search=ef)
            p50, p99 = latencies(lambda q: index.search(q, k=args.k), queries)
            _, got = index.search(queries, k=args.k)
            rows.append(
                {
                    **base,
                    "kind": "hnsw",
                    "ef": ef,
                    "build/s": n / build_s,
                    "p50": p50,
                    "p99": p99,
                    "recall": recall_at_k(got, truth),
                }
            )
        index.autosave = False
        index.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


HEADER = (
    f"{'data':<10}{'n':>10}  {'kind':<14}{'ef':>5}{'add|build vec/s':>17}"
    f"{'p50 ms':>9}{'p99 ms':>9}{'recall@10':>11}"
)


def format_row(r: dict) -> str:
    rate = "" if np.isnan(r["build/s"]) else f"{r['build/s']:,.0f}"
    return (
        f"{r['data']:<10}{r['n']:>10,}  {r['kind']:<14}{r['ef']!s:>5}{rate:>17}"
        f"{r['p50']:>9.2f}{r['p99']:>9.2f}{r['recall']:>11.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--data", default="uniform,clustered")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ef", default="64,128,256")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=64)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="FAISS OpenMP threads for building (default: FAISS' own)",
    )
    parser.add_argument("--dir", default=None, help="scratch directory (default: system tmp)")
    args = parser.parse_args()
    args.ef = [int(e) for e in args.ef.split(",")]
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    print(
        f"d={args.dim} k={args.k} queries={args.queries} faiss={faiss.__version__} "
        f"threads={faiss.omp_get_max_threads()} cpus={os.cpu_count()} "
        f"load={os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rng = np.random.default_rng(0)
    rows: list[dict] = []
    print(HEADER + "\n" + "-" * len(HEADER), flush=True)
    for n in (int(float(s)) for s in args.sizes.split(",")):
        for kind in args.data.split(","):
            start = len(rows)
            run_size(kind, n, args, rng, rows)
            for r in rows[start:]:
                print(format_row(r), flush=True)
    print(f"load at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
