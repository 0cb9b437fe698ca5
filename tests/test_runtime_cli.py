"""`lineside run` as users call it: clear one-line errors (exit 2), and SIGTERM shutdown that decides every
captured part, flushes the log and leaves the reject output off."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runtime_support import SerialListener, SocatPair, make_bundle, write_folder, write_video


def _lineside(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lineside", "run", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def line(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    return {
        "bundle": make_bundle(root / "bundle").path,
        "bare": make_bundle(root / "bare", thresholds={}).path,
        "nan": make_bundle(root / "nan", broken=True).path,
        "video": write_video(root / "parts.avi", [i % 5 == 2 for i in range(10)]),
        "root": root,
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{bare}", "--source", "{video}"], "lineside calibrate"),
        (["{bundle}", "--source", "{root}/nope.avi"], "--source"),
        (["{bundle}", "--source", "{video}", "--actuator", "relay://x"], "unknown actuator"),
        (["{bundle}", "--source", "{video}", "--actuator", "serial:///dev/ttyNOPE0"], "does not respond"),
        (["{bundle}", "--source", "{video}", "--delay-ms", "100", "--timeout-ms", "200"], "--timeout-ms"),
        (["{bundle}", "--source", "{video}", "--class", "bolt"], "not in the bundle"),
        (["{bundle}", "--source", "{video}", "--roi", "1,2,3"], "--roi"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(line: dict[str, Path], args: list[str], message: str):
    done = _lineside(*(a.format(**line) for a in args))
    assert done.returncode == 2, done.stderr
    errors = [e for e in done.stderr.splitlines() if "error" in e]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in done.stderr


def test_a_bundle_that_outputs_nan_stops_at_warm_up_and_keeps_the_log(line: dict[str, Path], tmp_path: Path):
    log = tmp_path / "r.jsonl"
    log.write_text('{"type": "event", "event": "stop"}\n')  # an earlier run's record
    done = _lineside(str(line["nan"]), "--source", str(line["video"]), "--log", str(log), "--quiet")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    errors = [e for e in done.stderr.splitlines() if "error" in e]
    assert len(errors) == 1 and "warm-up" in errors[0] and "non-finite" in errors[0]
    assert log.read_text() == '{"type": "event", "event": "stop"}\n'


def test_run_writes_summary_and_log(line: dict[str, Path], tmp_path: Path):
    log, summary = tmp_path / "r.jsonl", tmp_path / "summary.json"
    done = _lineside(str(line["bundle"]), "--source", str(line["video"]), "--log", str(log), "--summary", str(summary),
                     "--actuator", "serial://loop://?protocol=lcus", "--quiet")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("10 parts: 8 PASS, 2 REJECT, 0 ERROR")
    assert json.loads(summary.read_text())["decisions"] == 10
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["event"] for r in (lines[0], lines[-1])] == ["start", "stop"]  # a run is framed in the log
    assert lines[0]["threshold"] == 0.7 and lines[-1]["summary"]["decisions"] == 10
    # a rejected part is logged once its pulse is over (with what the output did), so after later passes
    assert sorted(r["part_id"] for r in lines[1:-1]) == list(range(10))
    ejects = {r["part_id"]: r["eject"] for r in lines[1:-1]}
    assert {ejects[r["part_id"]] for r in lines[1:-1] if r["verdict"] == "PASS"} == {"none"}
    assert sum(e == "ejected" for e in ejects.values()) == lines[-1]["summary"]["eject"]["ejected"]


@pytest.mark.slow
def test_sigterm_decides_parts_in_flight_and_leaves_output_off(line: dict[str, Path], tmp_path: Path):
    folder = write_folder(tmp_path / "frames", [i % 4 == 1 for i in range(200)])
    pair = SocatPair(tmp_path).start()
    listener = SerialListener(pair.b)
    log = tmp_path / "r.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lineside", "run", str(line["bundle"]), "--source", str(folder), "--rate", "10",
         "--actuator", f"serial://{pair.a}?on=ON&off=OFF", "--delay-ms", "400", "--pulse-ms", "30", "--log", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while (not log.exists() or len(log.read_text().splitlines()) < 15) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        listener.close()
        pair.stop()
    assert proc.returncode == 0, err
    records = [r for r in map(json.loads, log.read_text().splitlines()) if r["type"] == "part"]
    ids = [r["part_id"] for r in records]
    assert sorted(ids) == list(range(len(ids))) and 15 <= len(ids) < 200  # stopped early, nothing lost
    rejects = sum(r["verdict"] == "REJECT" for r in records)
    commands = [cmd for _, cmd in listener.events]
    assert commands.count(b"ON") == rejects  # pulses of parts in flight were still delivered
    assert commands[-1] == b"OFF"
    assert "finishing the parts in flight" in err


@pytest.mark.slow
def test_auto_backend_takes_the_bundle_engine_and_never_falls_back_silently(line: dict[str, Path], tmp_path: Path):
    import shutil

    from lineside.cuda_device import current_gpu

    if current_gpu() is not None:
        pytest.skip("on a GPU machine the engine would run; this checks the CPU-only refusal")
    bundle = tmp_path / "bundle"
    shutil.copytree(line["bundle"], bundle)
    built = subprocess.run(
        [sys.executable, "-m", "lineside", "build", str(bundle), "--target", "sm86", "--out", str(bundle / "model.engine")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if built.returncode != 0:
        pytest.skip(f"TensorRT-RTX cannot build here: {built.stderr.strip()[-200:]}")
    refused = _lineside(str(bundle), "--source", str(line["video"]), "--quiet")
    assert refused.returncode == 2 and "--backend ort" in refused.stderr
    forced = _lineside(str(bundle), "--source", str(line["video"]), "--quiet", "--backend", "ort")
    assert forced.returncode == 0 and '"backend": "ort"' in forced.stdout
