"""``zoolens zoo generate`` and ``zoolens zoo info``."""

from __future__ import annotations

from typer.testing import CliRunner

from zoolens.cli import app
from zoolens.zoo import PRESETS, Zoo, ZooPreset


def test_info_prints_counts(micro_zoo: Zoo) -> None:
    result = CliRunner().invoke(app, ["zoo", "info", micro_zoo.path])
    assert result.exit_code == 0, result.output
    assert f"{len(micro_zoo)} models" in result.output and "digits" in result.output
    assert "families:" in result.output


def test_generate_resumes_a_finished_zoo(micro_zoo: Zoo, micro_preset: ZooPreset) -> None:
    PRESETS[micro_preset.name] = micro_preset
    try:
        result = CliRunner().invoke(
            app, ["zoo", "generate", "--preset", "micro", "--out", micro_zoo.path, "--no-progress"]
        )
    finally:
        PRESETS.pop(micro_preset.name)
    assert result.exit_code == 0, result.output
    assert f"{len(micro_zoo)} models" in result.output


def test_unknown_preset_fails_cleanly(tmp_path) -> None:
    result = CliRunner().invoke(
        app, ["zoo", "generate", "--preset", "nope", "--out", str(tmp_path / "z")]
    )
    assert result.exit_code != 0
