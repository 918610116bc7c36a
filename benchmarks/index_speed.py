"""Index speed: build time, bytes per vector, search latency p50/p99 and recall@10 against exact.

Random unit vectors (d = 512, the default embedding's) go straight into a `ModelIndex` through
`add_embeddings` (SQLite commits per 10 000 rows, then the FAISS index is built and its cache
saved). Then the index is rebuilt as each approximate kind — HNSW (several ``efSearch``), IVF
and IVF-PQ (several ``nprobe``; IVF-PQ re-ranks its candidates with the catalog's exact
vectors). Latency is end to end through `ModelIndex.search` (one query at a time, ids looked up
in SQLite); recall@10 is against the exact top 10; bytes per vector is the saved FAISS file
over n (the catalog's SQLite copy of every vector is not counted).

``--large N`` measures IVF-PQ alone at N vectors (e.g. 1e7: 20 GB as float32, more than fits):
clustered vectors are generated and added in chunks into a bare `VectorIndex` trained on a
sample (256·nlist vectors of the first chunk, FAISS' own cap; with 64·nlist, 2·10⁶ reached a
``rerank`` of only 0.61), so only PQ codes + ids are kept; exact top 10 for a sample of queries
is computed chunk by chunk. Without the raw vectors there is no re-ranking: recall@10 is
reported on PQ scores and, as ``rerank``, the share of the true top 10 among PQ's top
``pq_rerank·10`` — what exact re-ranking of those candidates would reach.

Two kinds of random data:

- ``uniform``: uniform on the sphere, queries too. The worst case for any approximate index:
  in 256 dimensions the 10th neighbour of a query is barely closer than the 1000th.
- ``clustered``: ``n/100`` random centres, members ``centre + noise`` (cosine ≈ 0.7 to their
  centre), queries new members of existing clusters — models of one family, task or seed sweep
  sit together, as embeddings of a model zoo do.

Usage::

    python benchmarks/index_speed.py                      # 1e3 … 1e6, both data kinds
    python benchmarks/index_speed.py --sizes 1000,10000 --data uniform --ef 64,256
    python benchmarks/index_speed.py --sizes 1e6 --data clustered --large 1e7
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace

import faiss
import numpy as np

from zoolens.index import IndexConfig, ModelIndex
from zoolens.index.vectors import VectorIndex

log = logging.getLogger("index_speed")
nan = float("nan")


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


def clustered_chunks(
    n: int, d: int, n_queries: int, chunk: int, seed: int
) -> tuple[np.ndarray, Callable[[int], np.ndarray]]:
    """Queries and a function giving chunk i of n clustered vectors (regenerated, not stored)."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((max(1, n // 100), d), dtype=np.float32))
    noise = 1.0 / np.sqrt(d)

    def members(m: int, r: np.random.Generator) -> np.ndarray:
        picks = r.integers(0, len(centres), m)
        return unit(centres[picks] + noise * r.standard_normal((m, d), dtype=np.float32))

    def part(i: int) -> np.ndarray:
        return members(min(chunk, n - i * chunk), np.random.default_rng([seed, i]))

    return members(n_queries, rng), part


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


def _row(base: dict, kind: str, param: object, build_s: float, bpv: float, lat, rec) -> dict:
    return {
        **base,
        "kind": kind,
        "param": param,
        "build s": build_s,
        "B/vec": bpv,
        "p50": lat[0],
        "p99": lat[1],
        "recall": rec,
    }


def _cache_bytes(work: str, kind: str) -> int:
    """Size of the newest saved FAISS file of `kind` (rebuilds leave other kinds' files)."""
    files = glob.glob(os.path.join(work, f"vectors.*.{kind}.faiss"))
    return os.path.getsize(max(files, key=os.path.getmtime)) if files else 0


def run_size(
    kind: str, n: int, args: argparse.Namespace, rng: np.random.Generator, rows: list[dict]
) -> None:
    x, queries = make_data(kind, n, args.dim, args.queries, rng)
    work = tempfile.mkdtemp(prefix="index_speed_", dir=args.dir)
    base = {"data": kind, "n": n}
    try:
        config = IndexConfig(
            hnsw_m=args.hnsw_m,
            ef_construction=args.ef_construction,
            ivf_nlist=args.nlist,
            ivf_min_count=0,
            pq_m=args.pq_m,
            pq_rerank=args.pq_rerank,
        )
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
        bpv = _cache_bytes(work, "flat") / n
        search = lambda q: index.search(q, k=args.k)  # noqa: E731
        rows.append(_row(base, "flat", "", add_s, bpv, latencies(search, queries), 1.0))
        filtered = lambda q: index.search(q, k=args.k, where={"bucket": 3})  # noqa: E731
        rows.append(_row(base, "flat+where10%", "", nan, nan, latencies(filtered, queries), 1.0))
        print("\n".join(format_row(r) for r in rows[-2:]), flush=True)
        _, truth = index.search(queries, k=args.k)
        for approx in args.kinds:
            t = time.perf_counter()
            index.rebuild(kind=approx)
            build_s, bpv = time.perf_counter() - t, _cache_bytes(work, approx) / n
            for p in args.ef if approx == "hnsw" else args.nprobe:
                if approx == "hnsw":
                    index.configure_search(ef_search=p)
                else:
                    index.configure_search(nprobe=p)
                lat = latencies(search, queries)
                rec = recall_at_k(index.search(queries, k=args.k)[1], truth)
                rows.append(_row(base, approx, p, build_s, bpv, lat, rec))
                print(format_row(rows[-1]), flush=True)  # a 10⁶ run takes a while
            if approx != "flat":
                lat = latencies(filtered, queries)
                rows.append(_row(base, approx + "+where10%", "", nan, nan, lat, nan))
                print(format_row(rows[-1]), flush=True)
        index.autosave = False
        index.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_large(n: int, args: argparse.Namespace, rows: list[dict]) -> None:
    """IVF-PQ over n clustered vectors generated in chunks; only codes + ids are kept."""
    chunk = 500_000
    n_chunks = (n + chunk - 1) // chunk
    queries, part = clustered_chunks(n, args.dim, args.queries, chunk, seed=1)
    nlist = args.large_nlist
    config = IndexConfig(ivf_nlist=nlist, ivf_min_count=0, pq_m=args.pq_m, pq_rerank=args.pq_rerank)
    vi = VectorIndex(args.dim, "ivfpq", config)
    t = time.perf_counter()
    first = part(0)
    sample = first[np.random.default_rng(2).permutation(len(first))[: 256 * nlist]]  # FAISS cap
    vi.train(sample)
    wide = args.k * config.pq_rerank
    best_s = np.full((len(queries), args.k), -np.inf, np.float32)
    best_i = np.full((len(queries), args.k), -1, np.int64)
    for i in range(n_chunks):
        x = first if i == 0 else part(i)
        ids = np.arange(i * chunk, i * chunk + len(x), dtype=np.int64)
        vi.add(ids, x)
        s, j = faiss.knn(queries, x, args.k, metric=faiss.METRIC_INNER_PRODUCT)  # exact, chunk
        s, j = np.concatenate([best_s, s], 1), np.concatenate([best_i, ids[j]], 1)
        order = np.argsort(-s, axis=1, kind="stable")[:, : args.k]
        best_s, best_i = np.take_along_axis(s, order, 1), np.take_along_axis(j, order, 1)
        log.warning("large: %d / %d chunks, %.0f s", i + 1, n_chunks, time.perf_counter() - t)
    build_s = time.perf_counter() - t
    del first, x
    inner = faiss.downcast_index(vi.index_)
    code_bytes = inner.code_size + 8  # per vector: PQ code + id in the inverted lists
    base = {"data": "clustered", "n": n}
    for p in args.nprobe:
        vi.config = replace(config, ivf_nprobe=p)
        vi._apply_search_params()
        lat = latencies(lambda q: vi.search(q[None], args.k), queries)
        _, got = vi.search(queries, wide)
        rec = recall_at_k(got[:, : args.k], best_i)
        rows.append(_row(base, "ivfpq(codes)", p, build_s, code_bytes, lat, rec))
        rows[-1]["rerank"] = recall_at_k(got, best_i)


HEADER = (
    f"{'data':<10}{'n':>11}  {'kind':<17}{'param':>6}{'build s':>9}{'B/vec':>7}"
    f"{'p50 ms':>8}{'p99 ms':>8}{'recall@10':>10}"
)


def format_row(r: dict) -> str:
    build = "" if np.isnan(r["build s"]) else f"{r['build s']:.1f}"
    bpv = "" if np.isnan(r["B/vec"]) else f"{r['B/vec']:.0f}"
    extra = f"  (rerank {r['rerank']:.3f})" if "rerank" in r else ""
    return (
        f"{r['data']:<10}{r['n']:>11,}  {r['kind']:<17}{r['param']!s:>6}{build:>9}{bpv:>7}"
        f"{r['p50']:>8.2f}{r['p99']:>8.2f}{r['recall']:>10.3f}{extra}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--data", default="uniform,clustered")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ef", default="64,128,256")
    parser.add_argument("--kinds", default="hnsw,ivf,ivfpq", help="approximate kinds to measure")
    parser.add_argument("--nprobe", default="8,16,32")
    parser.add_argument("--nlist", type=int, default=None, help="IVF cells (default 4·√n)")
    parser.add_argument("--pq-m", type=int, default=64, help="IVF-PQ bytes per code")
    parser.add_argument("--pq-rerank", type=int, default=IndexConfig.pq_rerank)
    parser.add_argument("--large", default="", help="also IVF-PQ alone at this n, e.g. 1e7")
    parser.add_argument("--large-nlist", type=int, default=4096)
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
    args.nprobe = [int(p) for p in args.nprobe.split(",")]
    args.kinds = [k for k in args.kinds.split(",") if k]
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
    for n in (int(float(s)) for s in args.sizes.split(",") if s):  # --sizes "": --large only
        for kind in args.data.split(","):
            run_size(kind, n, args, rng, rows)
    if args.large:
        start = len(rows)
        run_large(int(float(args.large)), args, rows)
        print("\n".join(format_row(r) for r in rows[start:]), flush=True)
    print(f"load at end: {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
