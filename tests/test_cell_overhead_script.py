"""benchmarks/cell_overhead.py: one line and exit 2 for a bad bundle; a short real run writes its report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from runtime_support import make_bundle

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "cell_overhead.py"


def test_bad_bundle_is_one_line_exit_2(tmp_path: Path) -> None:
    args = [sys.executable, str(SCRIPT), "--bundle", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and "bundle" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.network
def test_short_run_reports_every_configuration(tmp_path: Path) -> None:
    pytest.importorskip("snap7")
    pytest.importorskip("asyncua")
    pytest.importorskip("paho.mqtt")
    bundle = make_bundle(tmp_path / "bundle").path
    args = [sys.executable, str(SCRIPT), "--bundle", str(bundle), "--out", str(tmp_path / "out"), "--frames", "14",
            "--frame-size", "60x80", "--rounds", "1", "--calls", "200"]  # fmt: skip
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "cell_overhead.json").read_text())
    assert [r["config"] for r in report["runs"]] == ["log", "serial", "s7", "opcua", "mqtt"]
    assert report["all_decisions_logged"] and all(r["actuator_errors"] == 0 for r in report["runs"])
    assert report["runs"][-1]["publish"]["published"] == 14 and report["decided_call_ms"]["published"] == 200
    assert "| s7 |" in (tmp_path / "out" / "cell_overhead.md").read_text()
