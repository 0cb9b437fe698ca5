"""Faults on a running line: corrupt frames, a backend that raises or hangs, a camera that stalls, a PLC link
that drops and returns. Nothing may crash, and every part gets exactly one logged decision."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from runtime_support import MjpegCamera, ModbusServer, make_bundle, write_folder

from lineside.runtime.actuators.base import open_actuator
from lineside.runtime.actuators.log import LogActuator
from lineside.runtime.backends.base import InferenceResult
from lineside.runtime.backends.onnxruntime import OrtBackend
from lineside.runtime.ejector import EjectorConfig
from lineside.runtime.pipeline import Pipeline
from lineside.runtime.results import ResultsLog
from lineside.runtime.runner import RunOptions, run_line
from lineside.runtime.sources.base import source_factory
from lineside.runtime.sources.capture import Capture, CaptureConfig


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _parts(records: list[dict]) -> dict[int, dict]:
    parts = [r for r in records if r["type"] == "part"]
    by_id = {r["part_id"]: r for r in parts}
    assert len(by_id) == len(parts), "a part was decided twice"
    assert sorted(by_id) == list(range(len(by_id))), "a part id has no decision"
    return by_id


class FaultyBackend(OrtBackend):
    """The real ORT backend, with a device fault injected on chosen calls: raise, or hang past the deadline."""

    def __init__(self, *args, raise_on: set[int], hang_on: set[int], hang_s: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls, self.raise_on, self.hang_on, self.hang_s = 0, raise_on, hang_on, hang_s

    def _run(self, images: np.ndarray) -> InferenceResult:
        self.calls += 1
        if self.calls in self.raise_on:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if self.calls in self.hang_on:
            time.sleep(self.hang_s)
        return super()._run(images)


def test_corrupt_frames_and_backend_faults_are_rejected_not_fatal(tmp_path: Path):
    defects = [i in (4, 11) for i in range(16)]
    folder = write_folder(tmp_path / "frames", defects)
    (folder / "part0006.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # corrupt file
    import cv2

    cv2.imwrite(str(folder / "part0008.png"), np.zeros((120, 160, 3), np.uint8))  # blanked camera frame
    bundle = make_bundle(tmp_path / "bundle")
    # calls 1-3 are warm-up; the line's parts start at call 4 (part 0), corrupt frames never reach the backend
    backend = FaultyBackend(bundle, raise_on={3 + 2}, hang_on={3 + 9}, hang_s=0.6)
    backend.warmup(3)
    actuator = LogActuator("log://")
    actuator.connect()
    capture = Capture(source_factory(str(folder), rate=20), CaptureConfig(rate=20))
    capture.open()
    log = ResultsLog(tmp_path / "r.jsonl")
    pipeline = Pipeline(capture, backend, log, 0.7, EjectorConfig(delay_s=0.25, pulse_s=0.02), actuator, paced=True)
    counters = pipeline.run()
    log.close()
    parts = _parts(_records(tmp_path / "r.jsonl"))
    assert len(parts) == 16 and counters.decisions == 16
    assert any(why in parts[6]["reason"] for why in ("cannot decode", "truncated")) and "uniform" in parts[8]["reason"]
    assert "illegal memory access" in parts[1]["reason"]  # backend raised on part 1
    hung = [p for p, r in parts.items() if r["reason"] and r["reason"].startswith("timeout")]
    assert hung, "the hung inference must be decided by its deadline"
    errors = {p for p, r in parts.items() if r["verdict"] == "ERROR"}
    assert {1, 6, 8} <= errors
    assert {p for p, r in parts.items() if r["verdict"] == "REJECT"} | errors >= {4, 11}
    assert all(parts[p]["verdict"] == "PASS" for p in set(range(16)) - errors - {4, 11})
    assert pipeline.ejector.pulses == counters.verdicts["REJECT"] + counters.verdicts["ERROR"]
    switched_on = sum(1 for _, on in actuator.transitions if on)
    assert 1 <= switched_on <= pipeline.ejector.pulses  # parts timing out together share one (merged) pulse
    assert counters.late >= 1  # the hung result arrived after its deadline and was not logged as a decision
    assert actuator.state is False


@pytest.mark.slow
@pytest.mark.network
def test_stalled_camera_is_reopened_and_missed_parts_are_counted(tmp_path: Path):
    camera = MjpegCamera(fps=10, stall_after=12).start()
    bundle = make_bundle(tmp_path / "bundle")
    log = tmp_path / "r.jsonl"
    try:
        summary = run_line(
            RunOptions(
                bundle=bundle.path, source=camera.url, log_path=log, status=False, warmup=1,
                capture=CaptureConfig(rate=10, stall_s=0.5, backoff_s=0.2, max_parts=40),
                ejector=EjectorConfig(delay_s=0.5, pulse_s=0.02),
            )
        )  # fmt: skip
    finally:
        camera.stop()
    parts = _parts(_records(log))
    assert len(parts) == 40 and summary["outages"] == 1
    first, second = camera.sent[0], camera.sent[1]
    truly_missed = second[0] - first[-1] - 1  # parts the camera produced while we had no stream
    assert abs(summary["missed"] - truly_missed) <= 3, (summary["missed"], truly_missed)
    missed = [p for p, r in parts.items() if (r["reason"] or "").startswith("bad frame: missed: source was down")]
    assert len(missed) == summary["missed"] and missed == list(range(12, 12 + len(missed)))
    assert all(parts[p]["verdict"] == "ERROR" for p in missed)
    # parts that passed the ejector during the outage (delay 0.5 s) must NOT fire a pulse now (wrong part)
    too_late = [p for p in missed if "NOT rejected" in parts[p]["reason"]]
    assert too_late and too_late == missed[: len(too_late)]
    assert all("eject_time" not in parts[p] and parts[p]["eject"] == "eject_failed" for p in too_late)
    assert all("eject_time" in parts[p] for p in missed[len(too_late) :])
    assert summary["pulses"] == len(missed) - len(too_late)


@pytest.mark.slow
@pytest.mark.network
def test_modbus_link_drops_and_returns(tmp_path: Path):
    defects = [i % 3 == 0 for i in range(36)]
    folder = write_folder(tmp_path / "frames", defects)
    bundle = make_bundle(tmp_path / "bundle")
    server = ModbusServer().start()
    url = f"modbus+tcp://127.0.0.1:{server.port}?coil=0&unit=1&timeout=0.2"
    actuator = open_actuator(url)
    actuator.connect()
    capture = Capture(source_factory(str(folder), rate=12), CaptureConfig(rate=12))
    capture.open()
    log = ResultsLog(tmp_path / "r.jsonl")
    backend = OrtBackend(bundle)
    pipeline = Pipeline(capture, backend, log, 0.7, EjectorConfig(delay_s=0.2, pulse_s=0.03), actuator, paced=True)
    import threading

    runner = threading.Thread(target=pipeline.run)
    runner.start()
    time.sleep(1.0)
    server.stop()  # the PLC goes away for a second
    down_at = time.time()
    time.sleep(1.0)
    revived = ModbusServer(server.port).start()
    up_at = time.time()
    runner.join(20)
    pipeline.ejector.close()
    revived.stop()
    log.close()
    assert not runner.is_alive()
    parts = _parts(_records(tmp_path / "r.jsonl"))
    assert len(parts) == 36
    assert [p for p, r in parts.items() if r["verdict"] != "PASS"] == [i for i, d in enumerate(defects) if d]
    assert pipeline.ejector.actuator_errors > 0
    # the dead link is visible: the line went unhealthy, and each rejected part says whether it was ejected
    assert pipeline.health.seen["reject output"] >= 1
    rejected = [p for p, r in parts.items() if r["verdict"] != "PASS"]
    failed = [p for p in rejected if parts[p]["eject"] == "eject_failed"]
    ejected = [p for p in rejected if parts[p]["eject"] == "ejected"]
    assert failed and sorted(failed + ejected) == rejected
    assert all(down_at - 0.1 < parts[p]["capture_time"] + 0.2 and "eject_time" not in parts[p] for p in failed)
    ons = sum(1 for _, _, _, value in server.writes + revived.writes if value is True)
    assert ons >= len(ejected) and all("eject_time" in parts[p] for p in ejected)
    assert any(value for t, _, _, value in server.writes if t < down_at)
    assert any(value for t, _, _, value in revived.writes if t > up_at)  # pulses resume on the returned link
    assert revived.writes[-1][3] is False  # and the output is left off


def test_inference_slower_than_the_line_drops_oldest_parts_as_rejects(tmp_path: Path):
    defects = [i % 5 == 0 for i in range(30)]
    folder = write_folder(tmp_path / "frames", defects)
    bundle = make_bundle(tmp_path / "bundle")
    backend = FaultyBackend(bundle, raise_on=set(), hang_on=set(range(1, 1000)), hang_s=0.06)  # ~16 parts/s max
    actuator = LogActuator("log://")
    actuator.connect()
    capture = Capture(source_factory(str(folder), rate=40), CaptureConfig(rate=40))  # the line runs at 40 parts/s
    capture.open()
    log = ResultsLog(tmp_path / "r.jsonl")
    config = EjectorConfig(delay_s=1.0, pulse_s=0.005)
    pipeline = Pipeline(capture, backend, log, 0.7, config, actuator, paced=True, queue_size=2)
    counters = pipeline.run()
    log.close()
    parts = _parts(_records(tmp_path / "r.jsonl"))
    assert len(parts) == 30
    dropped = [p for p, r in parts.items() if (r["reason"] or "").startswith("dropped")]
    assert len(dropped) == counters.dropped >= 5
    assert all(parts[p]["verdict"] == "ERROR" for p in dropped)
    # each dropped part got its 5 ms pulse, unless the loaded box woke the actuation thread after its window
    # (then it says so instead of claiming an eject_time)
    outcomes = [parts[p]["eject"] for p in dropped]
    assert outcomes.count("ejected") >= len(dropped) - 2 and set(outcomes) <= {"ejected", "eject_failed"}
    assert all(("eject_time" in parts[p]) == (parts[p]["eject"] == "ejected") for p in dropped)
    inspected = [p for p in parts if p not in dropped]
    assert all(parts[p]["verdict"] == ("REJECT" if defects[p] else "PASS") for p in inspected)
    assert pipeline.ejector.pulses == len(dropped) + sum(defects[p] for p in inspected)


def test_roi_crops_before_inference(tmp_path: Path):
    folder = write_folder(tmp_path / "frames", [True] * 4)
    bundle = make_bundle(tmp_path / "bundle")
    results = {}
    for name, roi in (("belt", (0, 0, 30, 30)), ("part", (40, 20, 80, 80)), ("outside", (150, 0, 30, 30))):
        log = tmp_path / f"{name}.jsonl"
        run_line(RunOptions(bundle=bundle.path, source=str(folder), log_path=log, status=False, warmup=1,
                            capture=CaptureConfig(roi=roi)))  # fmt: skip
        results[name] = {r["verdict"] for r in _records(log) if r["type"] == "part"}
    assert results == {"belt": {"PASS"}, "part": {"REJECT"}, "outside": {"ERROR"}}
