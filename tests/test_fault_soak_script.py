"""benchmarks/fault_soak.py end to end on a small run: 150 parts through real `lineside run` processes with
real stand-ins (socat relay, pymodbus PLC process) and a few faults; the must-be-zero counters are zero."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from runtime_support import make_bundle, render_part

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fault_soak.py"
KEYS = ("parts", "parts_without_decision", "defects_shipped_silently", "false_rejects_from_faults", "torn_log_lines",
        "recovery_s")  # fmt: skip


def labelled_parts(root: Path) -> Path:
    """An MVTec-layout set the test bundle's brightness detector separates: part/test/good and part/test/blob."""
    for kind, defect in (("good", False), ("blob", True)):
        folder = root / "part" / "test" / kind
        folder.mkdir(parents=True)
        for index in range(6):
            cv2.imwrite(str(folder / f"{index:03d}.png"), render_part(defect, 100 * defect + index))
    return root


@pytest.mark.network
def test_small_soak_accounts_for_every_part(tmp_path: Path) -> None:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (apt-get install socat)")
    bundle = make_bundle(tmp_path / "bundle")
    data = labelled_parts(tmp_path / "data")
    args = [sys.executable, str(SCRIPT), "--bundle", str(bundle.path), "--data", str(data), "--parts", "150",
            "--faults", "drop,corrupt,serial_loss,modbus_restart,restart", "--out", str(tmp_path / "out")]  # fmt: skip
    run = subprocess.run(args, capture_output=True, text=True, timeout=240, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "fault_soak.json").read_text())
    assert all(key in result for key in KEYS)
    assert (result["parts"], result["decisions_logged"]) == (150, 150)
    assert result["parts_without_decision"] == result["defects_shipped_silently"] == result["torn_log_lines"] == 0
    assert result["faults"] == {"drop": 1, "corrupt": 1, "serial_loss": 1, "modbus_restart": 1, "restart": 1}
    assert result["error_causes"]["frame_dropped"] >= 1 and result["error_causes"]["bad_frame"] == 1
    assert set(result["recovery_s"]) == set(result["faults"])
    assert "| parts_without_decision (must be 0) | 0 |" in (tmp_path / "out" / "fault_soak.md").read_text()


def test_bad_fault_kind_is_one_line_exit_2(tmp_path: Path) -> None:
    args = [sys.executable, str(SCRIPT), "--bundle", str(tmp_path), "--data", str(tmp_path), "--faults", "meteor",
            "--out", str(tmp_path / "out")]  # fmt: skip
    run = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "unknown kind(s) meteor" in run.stderr
    assert not (tmp_path / "out").exists()
