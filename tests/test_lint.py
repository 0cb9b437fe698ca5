"""Style gates CI runs with the tests: ruff (lint + format) over the tree, mypy over the core, runtime and bench."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON_FOLDERS = ("lineside", "train", "export", "calibration", "runtime", "benchmarks", "tests")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_lint_and_format() -> None:
    pytest.importorskip("ruff", reason="ruff is not installed: pip install 'lineside[dev]'")
    lint = _run(sys.executable, "-m", "ruff", "check", ".")  # this interpreter's ruff: CI runs pytest unactivated
    assert lint.returncode == 0, lint.stdout
    fmt = _run(sys.executable, "-m", "ruff", "format", "--check", *PYTHON_FOLDERS)
    assert fmt.returncode == 0, fmt.stdout


@pytest.mark.slow
def test_mypy_core_and_runtime() -> None:
    pytest.importorskip("mypy", reason="mypy is not installed: pip install 'lineside[dev]'")
    result = _run(sys.executable, "-m", "mypy")  # files = lineside, runtime, export/bench (pyproject.toml)
    assert result.returncode == 0, result.stdout
