"""``zoolens inspect``: tables and JSON for nets and tensor sets; one-line errors, exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from zoolens.cli import main
from zoolens.examples import example_path

EXAMPLE = example_path("mlp_digits")


def _export(model: nn.Module, shape: tuple[int, ...], path: Path) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.randn(2, *shape),), str(path), dynamo=False)
    return path


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def _softmax_net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1))


def run_cli(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """Run ``zoolens ARGS`` in this process through the app's error boundary."""
    monkeypatch.setattr(sys, "argv", ["zoolens", *args])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def run_subprocess(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zoolens.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_inspect_example_as_a_user_runs_it() -> None:
    done = run_subprocess(["inspect", EXAMPLE])
    assert done.returncode == 0, done.stderr
    assert "read as Net" in done.stdout and "total parameters: 2,410" in done.stdout
    assert "relu" in done.stdout and "weight 32x64" in done.stdout


def test_inspect_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["inspect", EXAMPLE, "--json"], monkeypatch, capsys)
    assert code == 0
    report = json.loads(out)
    assert report["kind"] == "Net" and report["num_params"] == 2410
    assert [layer["kind"] for layer in report["layers"]] == ["linear", "act", "linear"]
    assert report["layers"][1]["activation"] == "relu"
    assert report["layers"][2]["output_shape"] == [10]
    assert report["input_shape"] == [64]


def test_inspect_onnx_with_input_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _export(_cnn(), (1, 8, 8), tmp_path / "cnn.onnx")
    code, out, _ = run_cli(["inspect", str(path)], monkeypatch, capsys)
    assert code == 0 and "importer: onnx" in out and "(4, 8, 8)" in out and "gap" in out
    code, out, _ = run_cli(
        ["inspect", str(path), "--json", "--input-shape", "1,12,12"], monkeypatch, capsys
    )
    assert code == 0
    assert json.loads(out)["layers"][0]["output_shape"] == [4, 12, 12]


def test_inspect_state_dict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.save(nn.LSTM(3, 4).state_dict(), tmp_path / "lstm.pt")
    code, out, _ = run_cli(["inspect", str(tmp_path / "lstm.pt")], monkeypatch, capsys)
    assert code == 0 and "read as TensorSet" in out and "weight_ih_l0" in out
    code, out, _ = run_cli(["inspect", str(tmp_path / "lstm.pt"), "--json"], monkeypatch, capsys)
    report = json.loads(out)
    assert report["kind"] == "TensorSet" and report["num_params"] == 4 * 4 * (3 + 4 + 2)


def test_unsupported_onnx_without_strict_is_a_tensorset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _export(_softmax_net(), (4,), tmp_path / "softmax.onnx")
    code, out, _ = run_cli(["inspect", str(path)], monkeypatch, capsys)
    assert code == 0 and "read as TensorSet" in out and "unsupported ops: Softmax" in out


def _nan_safetensors(p: Path) -> None:
    save_file({"fc.weight": torch.tensor([1.0, float("nan")])}, str(p))


BAD_INPUTS: dict[str, tuple[str, Callable[[Path], object], list[str], str]] = {
    "corrupt onnx": (
        "bad.onnx",
        lambda p: p.write_bytes(np.random.default_rng(0).bytes(300)),
        [],
        "corrupt",
    ),
    "truncated pt": (
        "trunc.pt",
        lambda p: p.write_bytes(b"PK\x03\x04" + b"\0" * 40),
        [],
        "corrupt or truncated",
    ),
    "empty file": ("empty.safetensors", lambda p: p.write_bytes(b""), [], "empty"),
    "unknown extension": ("weights.h5", lambda p: p.write_bytes(b"x"), [], "unknown extension"),
    "nan weights": ("nan.safetensors", _nan_safetensors, [], "NaN"),
    "pickled class": (
        "module.pt",
        lambda p: torch.save(nn.Linear(2, 2), p),
        [],
        "needs code execution",
    ),
    "unsupported op, strict": (
        "softmax.onnx",
        lambda p: _export(_softmax_net(), (4,), p),
        ["--strict"],
        "Softmax",
    ),
    "bad input shape": (
        "net.pt",
        lambda p: torch.save({"w": torch.ones(2)}, p),
        ["--input-shape", "1,a"],
        "--input-shape",
    ),
    "missing file": ("missing.onnx", lambda p: None, [], "no such file"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_stderr_line_and_exit_2(
    tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name, make, flags, what = BAD_INPUTS[case]
    path = tmp_path / name
    make(path)
    code, out, err = run_cli(["inspect", str(path), *flags], monkeypatch, capsys)
    _assert_one_line_error(code, out, err, what, None if case == "bad input shape" else path)


@pytest.mark.parametrize("case", ["pickled class", "unsupported op, strict"])
def test_bad_input_through_the_real_command(tmp_path: Path, case: str) -> None:
    """The installed entry point, in its own process: exit code 2 and no traceback."""
    name, make, flags, what = BAD_INPUTS[case]
    path = tmp_path / name
    make(path)
    done = run_subprocess(["inspect", str(path), *flags])
    _assert_one_line_error(done.returncode, done.stdout, done.stderr, what, path)


def _assert_one_line_error(code: int, out: str, err: str, what: str, path: Path | None) -> None:
    assert code == 2, err
    assert "Traceback" not in err and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("zoolens: error:") and what in lines[0]
    assert path is None or str(path) in lines[0]


def test_usage_error_is_exit_2_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["inspect"], monkeypatch, capsys)
    assert code == 2 and "Missing argument" in err and "Traceback" not in err
