"""Run the zoolens command inside the test process."""

from __future__ import annotations

import pytest


def run_zoolens(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the real ``zoolens`` entry point in this process (encoders registered by the test
    are then known) and return ``(exit code, stdout, stderr)``."""
    import sys
    from unittest.mock import patch

    from zoolens.cli import run  # registers every command

    with patch.object(sys, "argv", ["zoolens", *args]):
        try:
            run()
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
