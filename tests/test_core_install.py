"""The core package, installed alone into a fresh virtual environment (torch 2.13.0 first, then
``pip install <repo>`` without extras), embeds ONNX files, keeps that torch, and brings none of
the optional packages. An install that breaks fails this test; it never skips."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from zoolens.nn import load_encoder

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ["mnist1d", "mlxtend", "matplotlib", "umap", "tensorboard"]
TIMEOUT = 1800  # seconds per step: the core install downloads ~200 MB on a cold cache


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert r.returncode == 0, f"{' '.join(map(str, args))} failed:\n{r.stderr[-3000:]}"
    return r


def _export_mlp(seed: int, path: Path) -> Path:
    """A small torch MLP exported by the TorchScript ONNX exporter."""
    with torch.random.fork_rng():  # the seed stays local to this net
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.randn(2, 6),), str(path), dynamo=False)
    return path


def _source_copy(dest: Path) -> Path:
    """What the package builds from, copied so that the build leaves the work tree alone."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "src", dest / "src", ignore=ignore)
    return dest


@pytest.mark.slow
def test_core_install_embeds_onnx_without_optional_packages(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    py = venv / "bin" / "python"
    _run(sys.executable, "-m", "venv", venv)
    source = _source_copy(tmp_path / "source")
    start = time.perf_counter()
    _run(py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "torch==2.13.0")
    _run(py, "-m", "pip", "install", "-q", "--disable-pip-version-check", source)
    print(f"core install: {time.perf_counter() - start:.0f} s")

    files = [_export_mlp(seed, tmp_path / f"mlp{seed}.onnx") for seed in (0, 1)]
    out = tmp_path / "z.npy"
    _run(venv / "bin" / "zoolens", "embed", *files, "--out", out)
    z = np.load(out)
    default = load_encoder("default")
    assert z.shape == (2, default.dim) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(z[0], z[1], atol=1e-3)  # two different nets, two vectors
    np.testing.assert_allclose(z, default.encode([str(f) for f in files]), atol=1e-5)

    probe = (
        "import importlib.util, json, sys, torch; "
        "print(json.dumps({'torch': torch.__version__, 'found': "
        "[m for m in sys.argv[1:] if importlib.util.find_spec(m) is not None]}))"
    )
    seen = json.loads(_run(py, "-c", probe, *OPTIONAL).stdout)
    assert seen["found"] == [], f"the core install brought optional packages: {seen['found']}"
    assert seen["torch"].split("+")[0] == "2.13.0"  # the core install kept the torch it found
