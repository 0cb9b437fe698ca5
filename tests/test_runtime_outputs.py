"""Outputs that fail on a running line (issue 16, findings 1 and 6): a reject relay whose serial writes fail,
a socat serial link killed mid-run, a dashboard observer that is slow or raises, a heartbeat driver that
raises. Every failed output makes the line unhealthy, every part's record says what the output really did,
and the actuation thread neither waits for bookkeeping nor dies."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from runtime_support import SerialListener, SocatPair, make_bundle, write_folder
from serial_faults import protocol_dead

from lineside.errors import LinesideError
from lineside.runtime.actuators.base import ActuatorError, open_actuator
from lineside.runtime.actuators.log import LogActuator
from lineside.runtime.backends.onnxruntime import OrtBackend
from lineside.runtime.dashboard.feed import line_stats
from lineside.runtime.decision import Eject, Verdict
from lineside.runtime.ejector import Ejector, EjectorConfig
from lineside.runtime.health import LineHealth
from lineside.runtime.pipeline import Pipeline
from lineside.runtime.results import ResultsLog
from lineside.runtime.runner import RunOptions, check_options
from lineside.runtime.sources.base import source_factory
from lineside.runtime.sources.capture import Capture, CaptureConfig


@pytest.fixture
def dead_port():
    """The `dead://` pyserial port, plugged in; unplugged again by the test when it wants."""
    protocol_dead.UNPLUGGED.clear()
    protocol_dead.WRITTEN.clear()
    yield protocol_dead
    protocol_dead.UNPLUGGED.clear()


def _parts(path: Path) -> dict[int, dict]:
    parts = [r for r in map(json.loads, path.read_text().splitlines()) if r["type"] == "part"]
    by_id = {r["part_id"]: r for r in parts}
    assert len(by_id) == len(parts) and sorted(by_id) == list(range(len(by_id))), "a part has not one decision"
    return by_id


def _line(tmp_path: Path, defects: list[bool], rate: float) -> tuple[OrtBackend, Capture, ResultsLog]:
    folder = write_folder(tmp_path / "frames", defects)
    backend = OrtBackend(make_bundle(tmp_path / "bundle"))
    capture = Capture(source_factory(str(folder), rate=rate), CaptureConfig(rate=rate))
    capture.open()
    return backend, capture, ResultsLog(tmp_path / "r.jsonl")


def test_failed_serial_writes_make_the_output_unhealthy_until_a_write_succeeds(dead_port):
    actuator = open_actuator("serial://dead://?on=ON&off=OFF")
    actuator.connect()
    actuator.set(True)
    assert actuator.ok and actuator.writes == 1 and dead_port.WRITTEN == [b"OFF\n", b"ON\n"]
    dead_port.UNPLUGGED.set()  # the USB adapter is pulled out
    with pytest.raises(ActuatorError, match="Input/output error"):
        actuator.set(False)
    assert not actuator.ok and actuator.errors == 1 and actuator.state is None
    with pytest.raises(ActuatorError, match="link down"):  # refused during the back-off: not a new error
        actuator.set(False)
    assert actuator.errors == 1
    health = actuator.health()
    assert health == {
        "url": "serial://dead://?on=ON&off=OFF", "ok": False, "errors": 1, "writes": 1,
        "last_error": "SerialException: write failed: [Errno 5] Input/output error",
    }  # fmt: skip
    dead_port.UNPLUGGED.clear()
    time.sleep(0.55)  # first back-off: 0.5 s
    actuator.set(False)
    assert actuator.ok and actuator.state is False and actuator.errors == 1 and actuator.writes == 2
    actuator.close()


def test_dead_reject_relay_stops_the_heartbeat_raises_the_alarm_and_logs_eject_failed(tmp_path: Path, dead_port):
    """Finding 1: the relay's USB adapter is pulled mid-run. Before: heartbeat kept toggling, eject_time logged."""
    defects = [i % 3 == 0 for i in range(24)]
    backend, capture, log = _line(tmp_path, defects, rate=10)
    relay = open_actuator("serial://dead://?on=ON&off=OFF")
    relay.connect()
    beat, alarm = LogActuator("log://heartbeat"), LogActuator("log://alarm")
    beat.connect(), alarm.connect()
    config = EjectorConfig(delay_s=0.2, pulse_s=0.05, heartbeat_s=0.05)
    pipeline = Pipeline(capture, backend, log, 0.7, config, relay, heartbeat=beat, alarm=alarm, paced=True)

    def unplug_after_four_pulses() -> None:  # between the pulses of parts 9 and 12
        written = dead_port.WRITTEN
        while not (written.count(b"ON\n") >= 4 and written[-1] == b"OFF\n") and capture.stats.frames < 24:
            time.sleep(0.005)
        dead_port.UNPLUGGED.set()

    threading.Thread(target=unplug_after_four_pulses, daemon=True).start()
    wall_minus_mono = time.time() - time.monotonic()
    pipeline.run()
    log.close()
    parts = _parts(tmp_path / "r.jsonl")
    assert len(parts) == 24
    assert {p for p, r in parts.items() if r["verdict"] == "REJECT"} == {i for i, d in enumerate(defects) if d}
    assert all(r["eject"] == "none" for r in parts.values() if r["verdict"] == "PASS")
    ejected = [p for p, r in parts.items() if r["eject"] == "ejected"]
    failed = [p for p, r in parts.items() if r["eject"] == "eject_failed"]
    assert ejected == [0, 3, 6, 9] and failed == [12, 15, 18, 21]  # the relay never comes back
    assert all("eject_time" in parts[p] for p in ejected) and protocol_dead.WRITTEN.count(b"ON\n") == 4
    assert all("eject_time" not in parts[p] and "Input/output error" in parts[p]["eject_error"] for p in failed[:1])
    assert all("eject_time" not in parts[p] and parts[p]["eject_error"] for p in failed)
    first_failure = parts[12]["capture_time"] - wall_minus_mono + 0.2  # monotonic: the first write that failed
    assert not any(on for t, on in beat.transitions if t > first_failure + 0.02)  # the heartbeat stopped
    assert sum(on for t, on in beat.transitions if t < first_failure) >= 10  # it toggled while healthy
    assert [on for t, on in alarm.transitions if t > first_failure][:1] == [True]  # the alarm went ON
    assert not pipeline.healthy() and pipeline.health.seen["reject output"] == 1
    stats = line_stats(pipeline)()  # the dashboard's counters
    assert not stats["healthy"] and "reject output" in stats["faults"]
    assert stats["eject"] == {"ejected": 4, "eject_failed": 4, "not_ejected_fail_open": 0}
    assert stats["outputs"][0]["ok"] is False and stats["outputs"][0]["errors"] >= 1


def test_a_relay_that_dies_between_defects_is_found_by_the_refresh(dead_port):
    """Finding 1: with no defect to pulse, nothing was written, so a dead relay was found only by the next defect
    (which then shipped). The reject output's state is re-written every `refresh_s`."""
    relay = open_actuator("serial://dead://?on=ON&off=OFF")
    beat = LogActuator("log://heartbeat")
    relay.connect(), beat.connect()
    ejector = Ejector(relay, EjectorConfig(heartbeat_s=0.02, refresh_s=0.1), heartbeat=beat)
    stop = threading.Event()
    loop = threading.Thread(target=ejector.run, args=(stop,))
    loop.start()
    time.sleep(0.3)
    refreshed = dead_port.WRITTEN.count(b"OFF\n")
    dead_port.UNPLUGGED.set()
    unplugged = time.monotonic()
    time.sleep(0.5)
    faults = ejector.health.faults()
    stop.set()
    loop.join(5)
    ejector.close()
    assert refreshed >= 3  # OFF at connect, then every 0.1 s
    assert "reject output" in faults and "Input/output error" in faults["reject output"]
    assert not any(on for t, on in beat.transitions if t > unplugged + 0.25)  # found by a refresh (0.1 s)


def test_socat_link_killed_mid_run_exits_3_with_eject_failed_parts(tmp_path: Path):
    """Finding 1 end to end: `lineside run` into a socat PTY pair whose socat dies (EIO on every write)."""
    folder = write_folder(tmp_path / "frames", [i % 2 == 0 for i in range(30)])
    bundle = make_bundle(tmp_path / "bundle")
    pair = SocatPair(tmp_path).start()
    listener = SerialListener(pair.b)
    log, summary = tmp_path / "r.jsonl", tmp_path / "summary.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lineside", "run", str(bundle.path), "--source", str(folder), "--rate", "10",
         "--actuator", f"serial://{pair.a}?on=ON&off=OFF", "--delay-ms", "200", "--pulse-ms", "30",
         "--log", str(log), "--summary", str(summary), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while (not log.exists() or len(log.read_text().splitlines()) < 8) and time.monotonic() < deadline:
            time.sleep(0.05)
        pair.stop()  # the serial link dies
        _, err = proc.communicate(timeout=60)  # before: shutdown retried the dead output forever
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        listener.close()
        pair.stop()
    assert proc.returncode == 3, err
    assert "an output failed" in err
    parts = _parts(log)
    result = json.loads(summary.read_text())
    outcomes = [parts[p]["eject"] for p in sorted(parts) if p % 2 == 0]
    assert set(outcomes) == {"ejected", "eject_failed"} and outcomes[-1] == "eject_failed"  # dead to the end
    ejected = outcomes.count("ejected")
    assert ejected >= 2 and [cmd for _, cmd in listener.events].count(b"ON") <= ejected  # no ON without its part
    assert result["output_failed"] and result["eject"]["eject_failed"] == outcomes.count("eject_failed")
    relay = result["outputs"][0]
    assert relay["ok"] is False and relay["errors"] >= 1 and "ttyRuntime" in relay["last_error"]  # link gone
    assert result["faults"]["reject output"] >= 1


class SlowFailingObserver:
    """A dashboard observer on a slow SD card: every call takes 150 ms, and the third raises."""

    def __init__(self) -> None:
        self.calls = 0
        self.threads: set[str] = set()

    def decided(self, record: dict, image: np.ndarray | None, anomaly_map: np.ndarray | None) -> None:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        time.sleep(0.15)
        if self.calls == 3:
            raise KeyError("latency_ms")


class HangingBackend(OrtBackend):
    """The real ORT backend, each inference 0.3 s late (past the 0.2 s deadline): every part times out."""

    def _run(self, images: np.ndarray):  # noqa: ANN202 - InferenceResult
        time.sleep(0.3)
        return super()._run(images)


def test_actuation_never_waits_for_records_or_observers(tmp_path: Path):
    """Finding 6: timeout bookkeeping (JSON, log write, observer) ran before the due pulse, and an observer
    exception killed the actuation thread. Every timed-out part's pulse must fire at capture + delay."""
    folder = write_folder(tmp_path / "frames", [False] * 8)
    backend = HangingBackend(make_bundle(tmp_path / "bundle"))
    capture = Capture(source_factory(str(folder), rate=10), CaptureConfig(rate=10))
    capture.open()
    log = ResultsLog(tmp_path / "r.jsonl")
    relay = LogActuator("log://")
    relay.connect()
    observer = SlowFailingObserver()
    config = EjectorConfig(delay_s=0.2, pulse_s=0.05)
    pipeline = Pipeline(capture, backend, log, 0.7, config, relay, paced=False, observer=observer)
    wall_minus_mono = time.time() - time.monotonic()
    pipeline.run()
    log.close()
    parts = _parts(tmp_path / "r.jsonl")
    assert len(parts) == 8 and all(r["reason"].startswith("timeout") for r in parts.values())
    assert observer.calls == 8  # the observer's exception cost neither a record nor the calls after it
    assert "lineside-actuation" not in observer.threads  # the actuation thread never calls back into the line
    ons = [t for t, on in list(relay.transitions)[1:] if on]
    due = [r["capture_time"] - wall_minus_mono + 0.2 for r in parts.values()]
    assert len(ons) == 8
    lateness = [on - at for on, at in zip(ons, due, strict=True)]
    assert all(-0.002 <= late <= 0.1 for late in lateness), lateness  # the observer sleeps 150 ms per call
    assert all(r["eject"] == "ejected" for r in parts.values())


class BuggyHeartbeat(LogActuator):
    """A third-party output driver with a bug: its `set` raises TypeError instead of ActuatorError."""

    def set(self, on: bool) -> None:
        if self.writes >= 4:
            raise TypeError("unsupported operand type(s) for +: 'NoneType' and 'int'")
        super().set(on)


def test_an_exception_in_the_actuation_loop_makes_the_line_unhealthy_not_unactuated(tmp_path: Path):
    """Finding 6: any exception but ActuatorError killed the actuation thread while inference went on."""
    defects = [i % 4 == 1 for i in range(16)]
    backend, capture, log = _line(tmp_path, defects, rate=10)
    relay, beat = LogActuator("log://"), BuggyHeartbeat("log://heartbeat")
    relay.connect(), beat.connect()
    config = EjectorConfig(delay_s=0.2, pulse_s=0.05, heartbeat_s=0.05)
    pipeline = Pipeline(capture, backend, log, 0.7, config, relay, heartbeat=beat, paced=True)
    pipeline.run()
    log.close()
    parts = _parts(tmp_path / "r.jsonl")
    rejected = [p for p, r in parts.items() if r["verdict"] == "REJECT"]
    assert rejected == [i for i, d in enumerate(defects) if d]
    assert all(parts[p]["eject"] == "ejected" for p in rejected)  # the pulses went on after the bug
    assert sum(on for _, on in relay.transitions) == len(rejected)
    assert pipeline.ejector.loop_errors > 0 and pipeline.health.seen["actuation"] >= 1  # held as a fault


def _run_to_end(ejector: Ejector) -> list:
    """Run the actuation loop until what is in flight is done; the events it reported, in order."""
    stop = threading.Event()
    stop.set()  # finish what is in flight, then return
    ejector.run(stop)
    events = []
    while not ejector.events.empty():
        events.append(ejector.events.get())
    return events


def test_fail_open_parts_are_logged_not_ejected_fail_open():
    """Every part's outcome is named: fail-open lets ERROR and timed-out parts through, and says so."""
    relay = LogActuator("log://")
    relay.connect()
    ejector = Ejector(relay, EjectorConfig(delay_s=0.05, pulse_s=0.1, fail_open=True))
    now = time.monotonic()
    assert ejector.register(0, now, Verdict.ERROR) is Eject.FAIL_OPEN  # a bad frame
    for part in (1, 2, 3):
        assert ejector.register(part, now) is Eject.PENDING
    assert ejector.resolve(1, Verdict.PASS) is Eject.NONE
    assert ejector.resolve(2, Verdict.REJECT) is Eject.PENDING
    events = _run_to_end(ejector)
    assert [(e.part_id, e.eject, e.expired) for e in events] == [(3, Eject.FAIL_OPEN, True), (2, Eject.EJECTED, False)]
    assert ejector.resolve(3, Verdict.PASS) is None  # its deadline decided it
    assert ejector.outcomes == {"ejected": 1, "eject_failed": 0, "not_ejected_fail_open": 2}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ejector": EjectorConfig(fault_stops_heartbeat=False)}, "--on-fault alarm needs --alarm"),
        ({"ejector": EjectorConfig(encoder_timeout_s=1.0)}, "--encoder-timeout-ms needs --encoder"),
        ({"ejector": EjectorConfig(delay_s=float("nan"))}, "--delay-ms must be a finite number"),
        ({"ejector": EjectorConfig(pulse_s=float("inf"))}, "--pulse-ms must be a finite number"),
        ({"ejector": EjectorConfig(delay_s=1.0, timeout_s=float("nan"))}, "--timeout-ms must be a finite number"),
    ],
)
def test_fault_options_are_checked(changes: dict, message: str):
    with pytest.raises(LinesideError, match=message):
        check_options(RunOptions(bundle=Path("bundle"), source="parts/", **changes))


def test_on_fault_alarm_keeps_the_heartbeat_unless_the_alarm_output_itself_fails(dead_port):
    """`--on-fault alarm`: a fault raises the alarm and the heartbeat goes on; a dead alarm stops the heartbeat."""
    relay, beat = LogActuator("log://"), LogActuator("log://heartbeat")
    alarm = open_actuator("serial://dead://?on=ALARM&off=CLEAR")
    for output in (relay, beat, alarm):
        output.connect()
    camera_up = threading.Event()
    health = LineHealth(hold_s=0.0)
    health.add("source", lambda: None if camera_up.is_set() else "no frames from the source")
    config = EjectorConfig(heartbeat_s=0.02, fault_stops_heartbeat=False, refresh_s=0.05)
    ejector = Ejector(relay, config, heartbeat=beat, alarm=alarm, health=health)
    stop = threading.Event()
    loop = threading.Thread(target=ejector.run, args=(stop,))
    loop.start()
    time.sleep(0.3)  # the camera is down: alarm ON, heartbeat still toggling
    alarm_on, beats_while_alarm = alarm.state, sum(on for _, on in beat.transitions)
    dead_port.UNPLUGGED.set()  # now the alarm output dies too: the heartbeat is the only signal left
    unplugged = time.monotonic()
    time.sleep(0.5)
    stop.set()
    loop.join(5)
    ejector.close()
    assert alarm_on is True and dead_port.WRITTEN[:2] == [b"CLEAR\n", b"ALARM\n"]
    assert beats_while_alarm >= 5
    assert not any(on for t, on in beat.transitions if t > unplugged + 0.25)  # found by a refresh (0.05 s)


class _OffFailsRelay(LogActuator):
    """A relay whose link dies right after a pulse went ON: every OFF write fails (soak finding, part 2912)."""

    def _write(self, on: bool) -> None:
        if not on and self.transitions:
            raise OSError(5, "Input/output error")
        super()._write(on)


def _one_reject(relay: LogActuator, delay_s: float, pulse_s: float, late_s: float = 0.0) -> tuple[list, LineHealth]:
    """One rejected part through an Ejector on `relay` (its loop starting `late_s` late); (outcomes, health)."""
    relay.connect()  # connect's OFF comes before any transition
    health = LineHealth(hold_s=5.0)
    ejector = Ejector(relay, EjectorConfig(delay_s=delay_s, pulse_s=pulse_s, refresh_s=None), health=health)
    assert ejector.register(0, time.monotonic()) is Eject.PENDING
    assert ejector.resolve(0, Verdict.REJECT) is Eject.PENDING
    time.sleep(late_s)
    events = _run_to_end(ejector)
    return events, health


def test_a_pulse_window_a_late_actuation_loop_missed_is_failed_and_a_fault():
    """Soak finding (parts 8069, 8360): a stalled loop logged eject_failed but the heartbeat went on."""
    events, health = _one_reject(LogActuator("log://"), 0.02, 0.02, late_s=0.15)  # the window is over first
    assert [(e.part_id, e.eject) for e in events] == [(0, Eject.FAILED)]
    assert "late" in events[0].detail["eject_error"]
    assert "reject output" in health.faults()  # the heartbeat stops: the PLC sees it


@pytest.mark.parametrize("late_s", [0.0, 0.01])  # 0.01: the ON went out late and is held past the part's window
def test_a_pulse_whose_off_write_failed_is_not_called_ejected(late_s: float):
    """Soak finding (part 2912): ON went into a dying link and the failed OFF showed it; the part was 'ejected'.
    CI finding: a late ON is held for its full width, and its window was reported before the OFF was written."""
    events, health = _one_reject(_OffFailsRelay("log://"), 0.0, 0.03, late_s=late_s)
    assert [(e.part_id, e.eject) for e in events] == [(0, Eject.FAILED)]
    assert "write failed" in events[0].detail["eject_error"] and "reject output" in health.faults()


class _SlowRelay(LogActuator):
    """A relay link that takes 80 ms to accept a write (a congested serial/PLC link)."""

    def _write(self, on: bool) -> None:
        time.sleep(0.08)
        super()._write(on)


def test_an_on_write_that_returned_after_the_window_is_not_called_ejected():
    """Soak finding (part 7301): the record said ejected on time while the ON reached the wire after the part."""
    events, health = _one_reject(_SlowRelay("log://"), 0.0, 0.03)
    assert [(e.part_id, e.eject) for e in events] == [(0, Eject.FAILED)] and "reject output" in health.faults()
