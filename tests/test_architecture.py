"""The import contract (`.importlinter`): the package keeps the direction of shared/DESIGN.md.

`lint-imports` runs on the package as it is (every contract kept) and on copies with one
forbidden import injected (the contract that forbids it breaks and names the import), so
the contract can fail.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"
SRC = ROOT / "src"

LAYERS = "Layers point downward"
EVAL_LEAF = "eval holds metrics only"
ZOO_USES_IR = "zoo and examples use only ir"
ZOO_USERS = "zoo is used by train, bench and cli/service only"
TESTING = "testing is imported by tests only"
NO_CYCLES = "No import cycle between the subpackages"


def _lint(src: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `lint-imports` with `.importlinter` on the `zoolens` package under `src`."""
    exe = Path(sys.executable).parent / "lint-imports"
    command = str(exe) if exe.exists() else shutil.which("lint-imports")
    assert command, "lint-imports not found: pip install 'zoolens[test]' (import-linter)"
    env = {**os.environ, "PYTHONPATH": str(src), "COLUMNS": "250", "NO_COLOR": "1"}
    return subprocess.run(
        [command, "--no-cache", str(CONFIG)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _verdicts(output: str) -> dict[str, str]:
    """{contract name: 'KEPT' | 'BROKEN'} from the summary of a `lint-imports` run."""
    flat = re.sub(r"\s*\n\s*", " ", output)  # a long contract name may wrap
    names = _contract_names()
    found = {}
    for name in names:
        m = re.search(re.escape(name) + r"\s+(KEPT|BROKEN)", flat)
        assert m, f"contract {name!r} missing from lint-imports output:\n{output}"
        found[name] = m.group(1)
    return found


def _contract_names() -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    return [
        " ".join(parser[s]["name"].split())
        for s in parser.sections()
        if s.startswith("importlinter:contract:")
    ]


def test_contract_is_kept(tmp_path: Path) -> None:
    result = _lint(SRC, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = _verdicts(result.stdout)
    assert len(verdicts) == 6 and set(verdicts.values()) == {"KEPT"}, verdicts
    # the cycle contract is among them: no import cycle between subpackages
    assert any(name.startswith(NO_CYCLES) for name in verdicts)


def test_contract_names_every_subpackage() -> None:
    """A new subpackage or root module must be placed in the contract, not slip past it."""
    text = CONFIG.read_text()
    package = SRC / "zoolens"
    children = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    children |= {p.parent.name for p in package.glob("*/__init__.py")}
    missing = sorted(c for c in children if not re.search(rf"\b{c}\b", text))
    assert not missing, f"{CONFIG.name} does not place: {missing}"
    assert {"bench", "eval", "cli", "ir", "zoo", "testing"} <= children


# (file under zoolens/, injected import, the import line lint-imports must name, contracts
# it must break)
CASES = [
    ("ir/ops.py", "zoolens.nn", "zoolens.ir.ops -> zoolens.nn", {LAYERS, NO_CYCLES}),
    ("eval/retrieval.py", "zoolens.train", "zoolens.eval.retrieval -> zoolens.train", {EVAL_LEAF}),
    ("train/data.py", "zoolens.index", "zoolens.train.data -> zoolens.index", {LAYERS}),
    ("zoo/manifest.py", "zoolens.testing", "zoolens.zoo.manifest -> zoolens.testing", {TESTING}),
    ("zoo/archs.py", "zoolens.graph", "zoolens.zoo.archs -> zoolens.graph", {ZOO_USES_IR}),
    ("graph/build.py", "zoolens.zoo", "zoolens.graph.build -> zoolens.zoo", {ZOO_USERS}),
]


@pytest.mark.parametrize(("target", "module", "named", "broken"), CASES)
def test_contract_breaks_on_a_forbidden_import(
    tmp_path: Path, target: str, module: str, named: str, broken: set[str]
) -> None:
    """Sensitivity twin of `test_contract_is_kept`: one forbidden import in a copy."""
    copy = tmp_path / "src"
    shutil.copytree(
        SRC / "zoolens",
        copy / "zoolens",
        ignore=shutil.ignore_patterns("__pycache__", "*.safetensors", "weights"),
    )
    path = copy / "zoolens" / target
    path.write_text(path.read_text() + f"\nimport {module}  # injected by the test\n")
    result = _lint(copy, tmp_path)
    assert result.returncode != 0, result.stdout
    verdicts = _verdicts(result.stdout)
    for prefix in broken:
        [name] = [n for n in verdicts if n.startswith(prefix)]
        assert verdicts[name] == "BROKEN", (name, result.stdout)
    assert named in result.stdout, result.stdout
