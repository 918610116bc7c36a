"""The README's code runs exactly as written, on files generated here.

Convention in README.md: ```python blocks run in order in one namespace; in ```console blocks
every line starting with ``$ zoolens`` runs (other commands, such as ``make`` or ``pip``, are
set-up and are not run here). Both run in a directory holding ``model.onnx`` and
``ckpts/{a,b,c}.onnx``, small MLPs of two interfaces.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

README = Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(kind: str) -> list[str]:
    """The bodies of the README's fenced blocks tagged `kind`, in order."""
    return [body for tag, body in _FENCE.findall(README.read_text()) if tag == kind]


def commands() -> list[str]:
    """The ``zoolens`` command lines of the README's console blocks."""
    lines = [line for body in blocks("console") for line in body.splitlines()]
    return [line[2:] for line in lines if line.startswith("$ zoolens ")]


def _export(model: nn.Module, n_in: int, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.randn(2, n_in),), str(path), dynamo=False)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("readme")
    (d / "ckpts").mkdir()
    torch.manual_seed(0)
    _export(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)), 8, d / "model.onnx")
    for name, width in (("a", 16), ("b", 32)):
        mlp = nn.Sequential(nn.Linear(8, width), nn.Tanh(), nn.Linear(width, 3))
        _export(mlp, 8, d / "ckpts" / f"{name}.onnx")
    _export(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), 4, d / "ckpts" / "c.onnx")
    return d


def test_readme_has_runnable_examples() -> None:
    assert blocks("python"), "the README lost its Python example"
    assert len(commands()) >= 3, "the README lost its command-line example"
    assert README.read_text().index("make demo") < README.read_text().index("```python")


def test_python_blocks_run(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    for body in blocks("python"):
        exec(compile(body, str(README), "exec"), namespace)
    z = namespace["z"]
    said = re.search(r"z = encoder.encode\(\[net\]\) +# \((\d+), (\d+)\)", README.read_text())
    assert said, "the README no longer says the embedding's shape"
    assert z.shape == (int(said[1]), int(said[2]))  # type: ignore[attr-defined]
    ids = namespace["ids"]
    assert ids[0][0] in {"a", "b", "c"}  # type: ignore[index]


def test_console_blocks_run(workdir: Path) -> None:
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    for line in commands():
        run = subprocess.run(
            shlex.split(line), cwd=workdir, env=env, capture_output=True, text=True, timeout=600
        )
        assert run.returncode == 0, f"README command failed: {line}\n{run.stderr[-2000:]}"
        assert run.stdout.strip(), f"README command printed nothing: {line}"
