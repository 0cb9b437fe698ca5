"""benchmarks/runtime_overhead.py refuses bad input with one line and exit code 2, before any replay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "runtime_overhead.py"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--frame-size", "640"], "--frame-size must be HEIGHTxWIDTH"),
        ([], "bundle folder not found"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, extra: list[str], message: str) -> None:
    args = [sys.executable, str(SCRIPT), "--bundle", str(tmp_path / "missing"), "--out", str(tmp_path / "out"), *extra]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert not (tmp_path / "out").exists()
