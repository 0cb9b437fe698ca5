"""GenICam cameras through the whole runtime (`lineside run` in its own process) and `lineside cameras`.

pylon's camera emulation replays a folder of synthetic parts on software triggers, the tiny brightness
bundle inspects them, a log:// actuator takes the rejects: every BlockID is one decision and exactly the
defective parts are ejected. Aravis's fake GigE Vision camera on 127.0.0.1 checks the frame-id
accounting. `lineside cameras` discovers both inside a private network namespace (only its own
loopback), so the GigE Vision discovery broadcast never leaves the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from camera_support import ADDRESS, FAKE_CAMERA, FakeGigECamera, aravis_or_skip, pylon_or_skip
from runtime_support import make_bundle, write_folder

LINESIDE = Path(sys.executable).with_name("lineside")
DEFECTS = [False, False, True, False, False, True, False, False, False, True, False, False]


def run_line(bundle: Path, source: str, log: Path, parts: int, *extra: str) -> subprocess.CompletedProcess[str]:
    """`lineside run` with a log:// actuator until `parts` parts; the emulation switched on."""
    argv = [str(LINESIDE), "run", str(bundle), "--source", source, "--actuator", "log://", "--log", str(log)]
    argv += ["--max-parts", str(parts), "--quiet", *extra]
    env = {**os.environ, "PYLON_CAMEMU": "1"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env)


def part_records(log: Path) -> list[dict]:
    """The part records in part order (a reject is logged when its pulse is over, after later passes)."""
    records = [r for r in map(json.loads, log.read_text().splitlines()) if r["type"] == "part"]
    return sorted(records, key=lambda r: r["part_id"])


@pytest.mark.network
def test_pylon_emulation_parts_through_lineside_run(tmp_path: Path):
    pylon_or_skip()
    folder = write_folder(tmp_path / "parts", DEFECTS)
    bundle = make_bundle(tmp_path / "bundle").path
    log = tmp_path / "results.jsonl"
    source = (
        f"pylon://0815-0000?device_class=BaslerCamEmu&trigger=software&pixel_format=BayerRG8&exposure_us=2000"
        f"&ImageFilename={folder}&ImageFileMode=On&TestImageSelector=Off&Width=160&Height=120"
    )
    done = run_line(bundle, source, log, len(DEFECTS), "--rate", "25", "--delay-ms", "150", "--pulse-ms", "20")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{len(DEFECTS)} parts: 9 PASS, 3 REJECT, 0 ERROR"), done.stdout
    records = part_records(log)
    assert [r["part_id"] for r in records] == list(range(len(DEFECTS)))
    assert [r["counter"] for r in records] == list(range(len(DEFECTS)))  # BlockID of each frame, no gap
    assert [r["verdict"] == "REJECT" for r in records] == DEFECTS
    assert [r["eject"] for r in records] == ["ejected" if d else "none" for d in DEFECTS]
    assert "pylon://0815-0000: model=Basler Emulation" in done.stderr and "pixel_format=BayerRG8" in done.stderr


@pytest.mark.network
def test_fake_gige_camera_frame_ids_through_lineside_run(tmp_path: Path):
    aravis_or_skip()
    camera = FakeGigECamera().start()
    try:
        bundle = make_bundle(tmp_path / "bundle").path
        log = tmp_path / "results.jsonl"
        source = f"genicam://{ADDRESS}?trigger=software&pixel_format=Mono8&timeout_ms=3000"  # 3 s: a loaded machine
        done = run_line(bundle, source, log, 15, "--rate", "20")
    finally:
        camera.stop()
    assert done.returncode == 0, done.stderr
    records = part_records(log)
    assert [r["part_id"] for r in records] == list(range(15))
    ids = [r["counter"] for r in records]
    assert ids == [(ids[0] - 1 + k) % 65535 + 1 for k in range(15)]  # consecutive 16-bit GigE Vision block ids
    assert all(r["verdict"] in ("PASS", "REJECT") and "infer" in r["latency_ms"] for r in records)


NAMESPACE = """
ip link set lo up
{camera} -i 127.0.0.1 -s NETNS1 >/dev/null 2>&1 &
camera=$!
sleep 1
"$0" cameras --json
status=$?
kill $camera
exit $status
"""


@pytest.mark.network
def test_lineside_cameras_discovers_both_paths_in_a_private_network(tmp_path: Path):
    aravis_or_skip()
    pylon_or_skip()
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"]).returncode != 0:
        pytest.skip("cannot make a private network namespace here (unshare -n)")
    script = NAMESPACE.format(camera=FAKE_CAMERA)
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", script, str(LINESIDE)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYLON_CAMEMU": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    urls = {camera["url"]: camera for camera in json.loads(done.stdout)}
    assert urls["genicam://Aravis-Fake-NETNS1"]["address"] == "127.0.0.1"
    assert urls["genicam://Aravis-Fake-NETNS1"]["protocol"] == "GigEVision"
    assert urls["pylon://0815-0000?device_class=BaslerCamEmu"]["model"] == "Emulation"


@pytest.mark.network
def test_lineside_cameras_by_address_and_one_transport_layer():
    aravis_or_skip()
    pylon_or_skip()
    camera = FakeGigECamera("ADDR1").start()
    try:
        done = subprocess.run(
            [str(LINESIDE), "cameras", "--address", ADDRESS, "--device-class", "BaslerCamEmu"],
            capture_output=True, text=True, timeout=60, env={**os.environ, "PYLON_CAMEMU": "1"},
        )  # fmt: skip
    finally:
        camera.stop()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == [
        "genicam://127.0.0.1  Aravis Fake  serial ADDR1  127.0.0.1 (GigEVision)",
        "pylon://0815-0000?device_class=BaslerCamEmu  Basler Emulation  serial 0815-0000  Emulation (0815-0000) (BaslerCamEmu)",
    ]


BLOCKED = r"""
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # as if the extra were not installed
from lineside.cli import main
sys.exit(main(["cameras", "--via", sys.argv[2], "--device-class", "BaslerCamEmu", "--address", "127.0.0.3"]))
"""


@pytest.mark.parametrize(
    ("blocked", "via", "code", "message"),
    [
        ("gi", "genicam", 2, "pip install 'lineside[genicam]'"),
        ("pypylon", "pylon", 2, "pip install 'lineside[pylon]'"),
        ("gi,pypylon", "all", 2, "pip install 'lineside[genicam]' and apt-get install gir1.2-aravis-0.8"),
        ("gi", "all", 0, "note: genicam:// needs Aravis and PyGObject"),  # pylon still lists; a note for genicam
    ],
)
def test_lineside_cameras_names_the_missing_extra(blocked: str, via: str, code: int, message: str):
    env = {**os.environ, "PYLON_CAMEMU": "1"}
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED, blocked, via], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == code, done.stderr
    assert message in done.stderr and len(done.stderr.splitlines()) == 1


BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "runtime_overhead.py"


@pytest.mark.network
def test_overhead_bench_measures_a_camera_source(tmp_path: Path):
    """benchmarks/runtime_overhead.py --source: the emulation replays the bench's own parts ({parts})."""
    pylon_or_skip()
    bundle = make_bundle(tmp_path / "bundle").path
    source = (
        "pylon://?device_class=BaslerCamEmu&trigger=software&pixel_format=BGR8&ImageFilename={parts}"
        "&ImageFileMode=On&TestImageSelector=Off&Width=160&Height=120"
    )
    argv = [sys.executable, str(BENCH), "--bundle", str(bundle), "--frames", "40", "--frame-size", "120x160"]
    argv += ["--source", source, "--out", str(tmp_path / "out")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, env={**os.environ, "PYLON_CAMEMU": "1"})
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "out" / "runtime_overhead.json").read_text())
    assert result["source"] == source and result["decisions"] == 40 and result["one_decision_per_part"]
    assert result["verdicts"]["REJECT"] == 6  # every 7th synthetic part has a defect: parts 3, 10, ..., 38
    assert 0 < result["overhead_ms"]["p50"] <= result["overhead_ms"]["p99"]
    assert (tmp_path / "out" / "runtime_overhead.md").read_text().startswith(f"40 parts from {source} with")


def test_overhead_bench_refuses_a_bad_camera_url_before_rendering(tmp_path: Path):
    bundle = make_bundle(tmp_path / "bundle").path
    argv = [sys.executable, str(BENCH), "--bundle", str(bundle), "--source", "genicam://?trigger=sometimes"]
    done = subprocess.run(argv + ["--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "trigger must be one of" in done.stderr
    assert done.stderr.strip().count("\n") == 0 and not (tmp_path / "out").exists()
