"""Load on the real server: 16 concurrent clients against an index of 10^5 models.

    python benchmarks/serve_load.py [--models 100000] [--clients 16] [--requests 100]
        [--uploads 10] [--dir /tmp/serve_load] [--map-wait] [--kind hnsw]

The index is built directly through `ModelIndex.add_embeddings`: 10^5 synthetic vectors
(Gaussian clusters, the weight-stats encoder's dimension) with catalog rows (task, family,
accuracy), recorded under the ``weight-stats`` encoder, so that uploads are embedded for
real by that cheap, unlearned encoder. `zoolens serve` then runs in a subprocess (uvicorn)
and, once it answers (and, with --map-wait, once its zoo map is laid out: the server makes it
on the first ``GET /api/map``, answering 202 until then), `--clients` threads each send
`--requests` id queries (``POST /api/search {"id"}``, k=10, random ids) and then `--uploads`
search-by-upload requests (a small zoolens zip or ONNX file of an MLP). Printed: p50 / p99 /
max latency and throughput per kind, and `uptime` before and after.

The clients share the machine's cores with the server, so they are kept light: id queries go
through one keep-alive `http.client` connection per client (0.3 ms of client CPU per request,
against 1.4 ms through httpx), uploads through httpx (multipart).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import torch

from zoolens.index import ModelIndex
from zoolens.ir import load_net
from zoolens.nn.baselines.stats import WeightStats

TASKS = ("digits", "fashion", "iris", "wine", "moons", "blobs", "synth-a", "diabetes")
FAMILIES = ("mlp", "resmlp", "cnn1d", "cnn2d", "cnn2d-bn")


def build_index(path: Path, n: int, seed: int = 0, kind: str | None = None) -> int:
    """`n` synthetic rows in a new index at `path` (vector index `kind`, default the
    index's "auto"); returns the embedding dimension."""
    encoder = WeightStats()
    d = int(encoder.encode([load_net(_mlp(0))]).shape[1])
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((64, d))
    x = centres[rng.integers(64, size=n)] + 0.3 * rng.standard_normal((n, d))  # (n, d)
    metadata = [
        {
            "task": TASKS[int(rng.integers(len(TASKS)))],
            "family": FAMILIES[int(rng.integers(len(FAMILIES)))],
            "accuracy": round(float(rng.uniform(0.3, 1.0)), 4),
        }
        for _ in range(n)
    ]
    with ModelIndex.open(path, encoder=encoder, kind=kind) as index:
        index.add_embeddings(
            x.astype(np.float32), [f"s{i:06d}" for i in range(n)], metadata=metadata
        )
    return d


def _mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))


def upload_files(root: Path) -> list[Path]:
    """Two zoolens zips and, when torch can export it, one ONNX file."""
    out = []
    for seed in (1, 2):
        net = load_net(_mlp(seed))
        net.save(str(root / f"m{seed}"))
        out.append(root / f"m{seed}.zip")
        with zipfile.ZipFile(out[-1], "w") as zf:
            for f in sorted(os.listdir(root / f"m{seed}")):
                zf.write(root / f"m{seed}" / f, f"m{seed}/{f}")
    try:
        torch.onnx.export(_mlp(3), (torch.zeros(1, 8),), str(root / "m3.onnx"), dynamo=False)
        out.append(root / "m3.onnx")
    except Exception as e:  # no ONNX exporter here: zips only
        print(f"(no ONNX upload: {type(e).__name__}: {e})")
    return out


def start_server(index: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "zoolens.cli", "serve", "--index", str(index)]
    return subprocess.Popen([*cmd, "--port", str(port)], env=env)


def wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 300) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            if httpx.get(url + "/api/health", timeout=5).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not answer in time")


class LightClient:
    """One keep-alive `http.client` connection: far less client CPU per request than httpx."""

    def __init__(self, url: str, timeout: float = 60) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)

    def post_json(self, path: str, body: object) -> tuple[int, str]:
        self.conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        text = response.read().decode()
        return response.status, text

    def close(self) -> None:
        self.conn.close()


def drive(url: str, clients: int, per_client: int, make, seed: int) -> tuple[list[float], float]:
    """Run `clients` threads of `per_client` requests each (`make(client, rng)` sends one
    and returns its status and text); latencies (s) and wall time."""
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []

    def work(k: int) -> None:
        rng = np.random.default_rng(seed + k)
        mine = []
        light, client = LightClient(url), httpx.Client(base_url=url, timeout=60)
        try:
            for _ in range(per_client):
                t0 = time.perf_counter()
                status, text = make(light, client, rng)
                mine.append(time.perf_counter() - t0)
                if status != 200:
                    errors.append(f"{status} {text[:200]}")
        finally:
            light.close()
            client.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        print(f"{len(errors)} failed requests, first: {errors[0]}")
    return latencies, wall


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux ``/proc``; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(name: str, latencies: list[float], wall: float, cpu: float, client: float) -> None:
    """Latency percentiles, throughput and the server's and the clients' CPU time per request
    (which the machine's other load changes far less than latency)."""
    ms = np.asarray(latencies) * 1e3
    print(
        f"{name:<14} n={len(ms):5d}  p50 {np.percentile(ms, 50):7.1f} ms  p99 "
        f"{np.percentile(ms, 99):7.1f} ms  max {ms.max():7.1f} ms  "
        f"{len(ms) / wall:7.1f} req/s  server CPU {cpu / len(ms) * 1e3:5.2f} ms/req  "
        f"client CPU {client / len(ms) * 1e3:5.2f} ms/req"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=100, help="id queries per client")
    parser.add_argument("--uploads", type=int, default=10, help="uploads per client")
    parser.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    parser.add_argument("--map-wait", action="store_true", help="lay the zoo map out first")
    parser.add_argument("--kind", default=None, help="vector index kind (flat, hnsw, ...)")
    args = parser.parse_args()

    work = Path(args.dir or tempfile.mkdtemp(prefix="serve_load_"))
    work.mkdir(parents=True, exist_ok=True)
    index = work / f"index-{args.models}"
    if not ModelIndex.exists(index):
        t0 = time.perf_counter()
        d = build_index(index, args.models, kind=args.kind)
        print(f"built {args.models} rows (d={d}) in {time.perf_counter() - t0:.1f} s")
    files = upload_files(work)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    proc = start_server(index, port)
    try:
        print(f"server up in {wait_until_up(url, proc):.1f} s")
        if args.map_wait:
            t0 = time.perf_counter()
            while (answer := httpx.get(url + "/api/map", timeout=1800)).status_code == 202:
                time.sleep(2)
            method = answer.json()["method"]
            print(f"zoo map ({method}) ready {time.perf_counter() - t0:.1f} s later")
        print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
        ids = [f"s{i:06d}" for i in range(args.models)]

        def by_id(light: LightClient, _: httpx.Client, rng: np.random.Generator) -> tuple[int, str]:
            return light.post_json("/api/search?k=10", {"id": ids[int(rng.integers(len(ids)))]})

        def upload(
            _: LightClient, client: httpx.Client, rng: np.random.Generator
        ) -> tuple[int, str]:
            path = files[int(rng.integers(len(files)))]
            with path.open("rb") as f:
                response = client.post("/api/search?k=10", files={"file": (path.name, f)})
            return response.status_code, response.text

        drive(url, args.clients, 5, by_id, seed=1000)  # warm-up
        for name, make, n, seed in (
            ("id query", by_id, args.requests, 0),
            ("upload search", upload, args.uploads, 500),
        ):
            cpu, client = cpu_seconds(proc.pid), time.process_time()
            latencies, wall = drive(url, args.clients, n, make, seed)
            cpu, client = cpu_seconds(proc.pid) - cpu, time.process_time() - client
            report(name, latencies, wall, cpu, client)
        print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
