"""``zoolens embed``: an (n, d) float32 array in input order, one summary line; a bad
path is one error line and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from zoolens.nn import LayerwiseEncoder, load_encoder
from zoolens.testing import random_net


def _zoolens(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zoolens.cli", *args], capture_output=True, text=True, timeout=240
    )


@pytest.fixture(scope="module")
def net_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("nets")
    g = torch.Generator().manual_seed(0)
    paths = []
    for i, family in enumerate(("mlp", "cnn2d", "resmlp_ln")):
        path = str(root / f"{i}-{family}")
        random_net(family, g).save(path)
        paths.append(path)
    return paths


def test_embed_writes_rows_in_input_order(net_dirs: list[str], tmp_path: Path) -> None:
    order = [net_dirs[2], net_dirs[0], net_dirs[1]]
    out = tmp_path / "z.npy"
    r = _zoolens("embed", *order, "--out", str(out), "--batch-size", "2")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 1 and "3" in r.stdout and str(out) in r.stdout
    z = np.load(out)
    default = load_encoder("default")
    assert z.shape == (3, default.dim) and z.dtype == np.float32
    np.testing.assert_allclose(z, default.encode(order), atol=1e-6)


def test_embed_with_a_saved_encoder_dir(net_dirs: list[str], tmp_path: Path) -> None:
    enc = LayerwiseEncoder({"dim": 32, "hidden": 32, "edge_hidden": 8, "seed": 4})
    enc.save(str(tmp_path / "enc"))
    out = tmp_path / "z.npy"
    r = _zoolens("embed", *net_dirs, "-o", str(out), "--encoder", str(tmp_path / "enc"))
    assert r.returncode == 0, r.stderr
    assert enc.id in r.stdout
    np.testing.assert_allclose(np.load(out), enc.encode(net_dirs), atol=1e-6)


def test_bad_path_is_one_error_line(net_dirs: list[str], tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-model")
    r = _zoolens("embed", net_dirs[0], missing, "--out", str(tmp_path / "z.npy"))
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoolens: error:") and missing in lines[0]
    assert "Traceback" not in r.stderr and not (tmp_path / "z.npy").exists()


def test_probe_inputs_read_nets_on_the_users_samples(net_dirs: list[str], tmp_path: Path) -> None:
    """--probe-inputs: the fingerprint is the net's outputs on the given samples; other
    samples give another embedding (sensitivity); a symmetric copy the same (invariance);
    the encoder's id records the samples; bad files are one line, exit 2."""
    from zoolens.ir import load_net
    from zoolens.nn import NeuralGraphEncoder
    from zoolens.symmetry import random_exact_action

    default = load_encoder("default")
    assert isinstance(default, NeuralGraphEncoder)
    net = load_net(net_dirs[0])
    n = default.config.n_probes
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n + 5, *net.input_shape))
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "z.npy"
    r = _zoolens("embed", net_dirs[0], "--out", str(out), "--probe-inputs", str(tmp_path / "x.npy"))
    assert r.returncode == 0, r.stderr
    probed = default.with_probe_inputs(x)
    assert probed.id != default.id and probed.id in r.stdout
    np.testing.assert_allclose(np.load(out), probed.encode([net]), atol=1e-5)
    graph = probed.graph(net.to(torch.float64))
    with torch.no_grad():
        want = net.to(torch.float64)(torch.as_tensor(x[:n])).reshape(n, -1)
    from zoolens.nn.fingerprint import output_responses

    torch.testing.assert_close(output_responses(graph), want, rtol=1e-4, atol=1e-5)
    twin = random_exact_action(net.to(torch.float64), torch.Generator().manual_seed(1))
    z, z_twin = probed.encode([net, twin])
    assert float(z @ z_twin / np.linalg.norm(z) / np.linalg.norm(z_twin)) > 0.9999
    other = default.with_probe_inputs(rng.standard_normal(x.shape) * 3)
    z_other = other.encode([net])[0]
    assert float(z @ z_other / np.linalg.norm(z) / np.linalg.norm(z_other)) < 0.9999
    np.save(tmp_path / "few.npy", x[:3])
    r = _zoolens("embed", net_dirs[0], "-o", str(out), "--probe-inputs", str(tmp_path / "few.npy"))
    assert r.returncode == 2 and "few.npy" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    r = _zoolens("embed", net_dirs[0], "-o", str(out), "--probe-inputs", str(tmp_path / "bad.npy"))
    assert r.returncode == 2 and "bad.npy" in r.stderr and "Traceback" not in r.stderr
