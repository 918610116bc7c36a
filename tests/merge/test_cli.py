"""``zoolens align`` and ``zoolens merge`` through the real entry point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.cli_runner import run_zoolens

from zoolens.ir import Net, load_net
from zoolens.merge import merge
from zoolens.merge.align import weight_distance
from zoolens.symmetry import random_exact_action
from zoolens.testing import assert_same_function, random_input, random_net


@pytest.fixture
def nets(tmp_path: Path) -> dict[str, Path]:
    g = torch.Generator().manual_seed(0)
    ref = random_net("cnn2d_bn", g)
    paths = {"ref": tmp_path / "ref", "moved": tmp_path / "moved", "other": tmp_path / "other"}
    ref.save(str(paths["ref"]))
    random_exact_action(ref, g).save(str(paths["moved"]))
    random_net("mlp", g).save(str(paths["other"]))
    x = random_input(ref, g, 32).numpy()
    np.save(tmp_path / "data.npy", x)
    paths["data"] = tmp_path / "data.npy"
    return paths


def _read(path: Path) -> Net:
    net = load_net(path)
    assert isinstance(net, Net)
    return net


@pytest.mark.parametrize("method", ["weights", "activations"])
def test_align_writes_a_net_with_models_function(
    nets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], method: str
) -> None:
    out = tmp_path / "aligned"
    args = ["align", str(nets["ref"]), str(nets["moved"]), "--out", str(out), "--method", method]
    code, _, err = run_zoolens(capsys, *args, "--data", str(nets["data"]))
    assert code == 0, err
    ref, moved, aligned = _read(nets["ref"]), _read(nets["moved"]), _read(out)
    x = torch.as_tensor(np.load(nets["data"]))
    assert_same_function(moved, aligned, x, rtol=1e-5)
    assert weight_distance(ref, aligned) < 1e-6 * weight_distance(ref, moved)


def test_merge_writes_the_midpoint(
    nets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "merged"
    args = ["merge", str(nets["ref"]), str(nets["moved"]), "--out", str(out)]
    code, _, err = run_zoolens(capsys, *args, "--data", str(nets["data"]))
    assert code == 0, err
    # moved is ref under an exact action: aligned, the midpoint is ref (BN stats reset)
    ref, merged = _read(nets["ref"]), _read(out)
    x = torch.as_tensor(np.load(nets["data"]))
    assert torch.allclose(merged.ops[0].params["weight"], ref.ops[0].params["weight"])
    assert merged(x).shape == ref(x).shape


def test_align_writes_onnx_computing_the_model(
    nets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "aligned.onnx"
    code, _, err = run_zoolens(
        capsys, "align", str(nets["ref"]), str(nets["moved"]), "--out", str(out)
    )
    assert code == 0, err
    from zoolens.ir import load_net

    back, moved = load_net(str(out)), _read(nets["moved"])
    dtype = next(back.parameters()).dtype
    x = torch.as_tensor(np.load(nets["data"])).to(dtype)
    assert torch.allclose(back(x), moved.to(dtype)(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "average"], "--method 'average'"),
        (["--method", "ties"], "--base"),
    ],
)
def test_merge_usage_errors_exit_2_in_one_line(
    nets: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
    tmp_path: Path,
) -> None:
    args = ["merge", str(nets["ref"]), str(nets["moved"]), "--out", str(tmp_path / "m"), *extra]
    code, _, err = run_zoolens(capsys, *args)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["align", "merge"])
def test_different_architectures_exit_2_naming_the_difference(
    nets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    args = [command, str(nets["ref"]), str(nets["other"]), "--out", str(tmp_path / "o")]
    code, _, err = run_zoolens(capsys, *args)
    assert code == 2
    assert "input shape" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_bad_data_file_exits_2(
    nets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 3)))
    args = ["align", str(nets["ref"]), str(nets["moved"]), "--out", str(tmp_path / "o")]
    code, _, err = run_zoolens(capsys, *args, "--method", "activations", "--data", str(bad))
    assert code == 2
    assert "does not fit the nets" in err


def test_ties_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = torch.Generator().manual_seed(4)
    base = random_net("mlp", g)
    tuned = []
    for name in ("a", "b"):
        net = base.clone()
        for op in net.ops:
            op.params = {
                r: t + 0.1 * torch.randn(t.shape, generator=g, dtype=t.dtype)
                for r, t in op.params.items()
            }
        net.save(str(tmp_path / name))
        tuned.append(net)
    base.save(str(tmp_path / "base"))
    out = tmp_path / "ties"
    args = ["merge", str(tmp_path / "a"), str(tmp_path / "b"), "--method", "ties"]
    code, _, err = run_zoolens(
        capsys, *args, "--base", str(tmp_path / "base"), "--density", "1", "--out", str(out)
    )
    assert code == 0, err
    merged = _read(out)
    want = merge(tuned[0], tuned[1], method="ties", base=base, density=1.0)
    for got, ref in zip(merged.parameters(), want.parameters(), strict=True):
        assert torch.equal(got, ref)
    assert weight_distance(merged, base) > 0.05  # it moved along the task vectors
