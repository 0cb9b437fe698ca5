"""The Jetson install keeps the system's GStreamer OpenCV: the runtime wheel carries no OpenCV of its own.

JetPack's cv2 lives in /usr/lib/python3/dist-packages and docs/jetson.md prescribes a
`--system-site-packages` venv. Debian's python3-opencv is the same situation on this machine (a
system cv2 built with GStreamer), so the slow test makes that venv, installs the wheel with the ONNX
Runtime extra, and checks that the system cv2 is the one imported and that `lineside run` reads a
GStreamer pipeline through it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from runtime_support import make_bundle, write_folder
from test_packaging import copy_source, run, skip_without_index

SYSTEM_PYTHON = Path("/usr/bin/python3")
SYSTEM_SITE = "/usr/lib/python3/dist-packages"
PROBE = (
    "import cv2, json, re; print(json.dumps({'file': cv2.__file__, "
    "'gstreamer': re.search(r'GStreamer:\\s+YES', cv2.getBuildInformation()) is not None}))"
)
PIPELINE = "videotestsrc num-buffers=400 pattern=ball ! video/x-raw,width=160,height=120 ! videoconvert ! appsink"

NO_CV2 = r"""
import sys
sys.modules["cv2"] = None  # as if no OpenCV were installed
from lineside.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_missing_cv2_is_a_one_line_error_naming_the_extra(tmp_path: Path):
    bundle = make_bundle(tmp_path / "bundle")
    parts = write_folder(tmp_path / "parts", [False, True])
    done = subprocess.run(
        [sys.executable, "-c", NO_CV2, "run", str(bundle.path), "--source", str(parts), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "pip install 'lineside[opencv]'" in done.stderr and "docs/jetson.md" in done.stderr


def _system_cv2_or_skip() -> None:
    if not SYSTEM_PYTHON.exists():
        pytest.skip("no /usr/bin/python3")
    probe = subprocess.run([SYSTEM_PYTHON, "-c", PROBE], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0 or not json.loads(probe.stdout)["file"].startswith(SYSTEM_SITE):
        pytest.skip("the system Python has no cv2 (apt-get install python3-opencv python3-venv)")


@pytest.mark.slow
def test_system_site_venv_runtime_install_keeps_the_system_gstreamer_cv2(tmp_path: Path):
    _system_cv2_or_skip()
    source = copy_source(tmp_path / "src")
    built = run([sys.executable, "-m", "pip", "wheel", source, "--no-deps", "--no-build-isolation", "-w", tmp_path])
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = tmp_path.glob("lineside-*.whl")
    venv = tmp_path / "venv"
    made = run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", venv])
    assert made.returncode == 0, made.stderr
    installed = run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", f"{wheel}[ort]"])
    skip_without_index(installed)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    (site,) = (venv / "lib").glob("python3*/site-packages")
    listed = run([venv / "bin" / "python", "-m", "pip", "list", "--format", "json", "--path", site])
    assert not [p["name"] for p in json.loads(listed.stdout) if "opencv" in p["name"].lower()]
    probe = run([venv / "bin" / "python", "-c", PROBE])
    report = json.loads(probe.stdout)
    assert report["file"].startswith(SYSTEM_SITE), f"cv2 from {report['file']}, not the system's"
    assert report["gstreamer"] is True

    bundle = make_bundle(tmp_path / "bundle")
    log = tmp_path / "results.jsonl"
    line = run([venv / "bin" / "lineside", "run", bundle.path, "--source", PIPELINE, "--max-parts", "12",
                "--log", log, "--quiet"])  # fmt: skip
    assert line.returncode == 0, line.stderr
    assert line.stdout.startswith("12 parts:")
    parts = [r for r in map(json.loads, log.read_text().splitlines()) if r["type"] == "part"]
    assert sorted(r["part_id"] for r in parts) == list(range(12))  # a reject is logged when its pulse is over
