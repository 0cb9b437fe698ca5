"""Runtime building blocks with real objects: URL parsing, thresholds, fail-safe timing, logs, reject store."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from runtime_support import make_bundle, render_part

from lineside.errors import LinesideError
from lineside.runtime.actuators.base import ActuatorError, open_actuator
from lineside.runtime.actuators.log import LogActuator
from lineside.runtime.actuators.modbus import ModbusActuator, RtuLink, TcpLink
from lineside.runtime.actuators.serial import SerialActuator, lcus_command, serial_commands
from lineside.runtime.decision import Verdict, decide, resolve_threshold
from lineside.runtime.ejector import Ejector, EjectorConfig
from lineside.runtime.frames import frame_problem
from lineside.runtime.health import LineHealth
from lineside.runtime.results import RejectStore, ResultsLog
from lineside.runtime.sources.capture import crop
from lineside.runtime.sources.opencv import gstreamer_pipeline


def test_lcus_frames_match_the_relay_protocol():
    assert lcus_command(1, True) == bytes.fromhex("A00101A2")
    assert lcus_command(1, False) == bytes.fromhex("A00100A1")
    assert lcus_command(2, True) == bytes.fromhex("A00201A3")


def test_serial_urls():
    assert serial_commands("serial:///dev/ttyUSB0?baud=115200&on=R1%20ON&off=R1%20OFF&eol=crlf") == (
        "/dev/ttyUSB0", 115200, b"R1 ON\r\n", b"R1 OFF\r\n"
    )  # fmt: skip
    assert serial_commands("serial://loop://?protocol=lcus&channel=2")[2:] == (
        lcus_command(2, True),
        lcus_command(2, False),
    )
    assert serial_commands("serial://COM3?protocol=hex&on=FF0101&off=FF0100")[2] == b"\xff\x01\x01"
    for bad in ("serial://?on=x", "serial://loop://?protocol=morse", "serial://loop://?protocol=hex&on=zz&off=00",
                "serial://loop://?baud=fast"):  # fmt: skip
        with pytest.raises(LinesideError):
            SerialActuator(bad)


def test_serial_loop_writes_commands_and_leaves_output_off():
    actuator = open_actuator("serial://loop://?on=EJECT&off=HOLD")
    actuator.connect()
    actuator.set(True)
    actuator.close()
    assert actuator.state is False


def test_modbus_and_unknown_urls():
    coil = ModbusActuator("modbus+tcp://127.0.0.1:1502?coil=3&unit=2")
    assert (coil.link, coil.address, coil.unit, coil.is_coil) == (TcpLink("127.0.0.1", 1502), 3, 2, True)
    reg = ModbusActuator("modbus+rtu:///dev/ttyUSB1?baud=19200&register=40&on=255&off=0")
    assert (reg.link, reg.address, reg.on_value, reg.is_coil) == (RtuLink("/dev/ttyUSB1", 19200, "N"), 40, 255, False)
    for bad in ("modbus+tcp://127.0.0.1:502", "modbus+tcp://127.0.0.1?coil=1&register=2", "ftp://x", "gpio://chip/x"):
        with pytest.raises(LinesideError):
            open_actuator(bad)


def test_unreachable_modbus_fails_at_start_with_a_clear_message():
    actuator = open_actuator("modbus+tcp://127.0.0.1:1?coil=0&timeout=0.2")
    with pytest.raises(LinesideError, match="does not respond"):
        actuator.connect()


def test_lost_link_backs_off_then_reconnects():
    class Flaky(LogActuator):
        down = False

        def _write(self, on: bool) -> None:
            if self.down:
                raise ConnectionError("cable pulled")
            super()._write(on)

    actuator = Flaky("log://")
    actuator.connect()
    actuator.down = True
    with pytest.raises(ActuatorError, match="cable pulled"):
        actuator.set(True)
    with pytest.raises(ActuatorError, match="link down"):
        actuator.set(True)  # inside the back-off interval: no hammering of a dead link
    actuator.down = False
    time.sleep(0.55)
    actuator.set(True)
    assert actuator.state is True and actuator.errors == 1


def test_thresholds(tmp_path: Path):
    bundle = make_bundle(tmp_path / "b", thresholds={"a": 0.3, "b": 0.6})
    assert resolve_threshold(bundle, None, "b") == 0.6
    assert resolve_threshold(bundle, 0.9, None) == 0.9
    with pytest.raises(LinesideError, match="--class"):
        resolve_threshold(bundle, None, None)
    bare = make_bundle(tmp_path / "bare", thresholds={})
    with pytest.raises(LinesideError, match="lineside calibrate"):
        resolve_threshold(bare, None, None)
    assert decide(0.71, 0.7) is Verdict.REJECT
    assert decide(0.7, 0.7) is Verdict.PASS
    assert decide(float("nan"), 0.7) is Verdict.ERROR
    for threshold in (float("nan"), float("inf")):  # a broken threshold can never let a part PASS
        assert decide(0.1, threshold) is Verdict.ERROR


def test_frame_checks_and_roi():
    part = render_part(False, 0)
    assert frame_problem(part) is None
    assert "uniform" in frame_problem(np.zeros((64, 64, 3), np.uint8))
    assert "shape" in frame_problem(np.ones((64, 64), np.uint8))
    assert frame_problem(None) == "no image"
    view, error = crop(part, (10, 20, 50, 40))
    assert error is None and view.shape == (40, 50, 3) and np.array_equal(view, part[20:60, 10:60])
    assert crop(part, (150, 0, 50, 50))[0] is None


def test_gstreamer_appsink_gets_drop_and_single_buffer():
    spec = "nvarguscamerasrc ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! appsink"
    assert gstreamer_pipeline(spec).endswith("appsink drop=true max-buffers=1 sync=false")
    assert gstreamer_pipeline(spec + " drop=false").endswith("appsink drop=false max-buffers=1 sync=false")


def _run_ejector(ejector: Ejector, seconds: float) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=ejector.run, args=(stop,))
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()


@pytest.mark.parametrize("fail_open", [False, True])
def test_ejector_is_fail_safe_and_times_pulses(fail_open: bool):
    actuator = LogActuator("log://")
    actuator.connect()
    config = EjectorConfig(delay_s=0.15, pulse_s=0.04, fail_open=fail_open)
    ejector = Ejector(actuator, config)
    t0 = time.monotonic()
    for part in range(4):
        ejector.register(part, t0 + 0.1 * part)
    assert ejector.resolve(0, Verdict.PASS)
    assert ejector.resolve(1, Verdict.REJECT)
    assert ejector.resolve(2, Verdict.ERROR)
    _run_ejector(ejector, 0.8)  # part 3 gets no verdict: its deadline decides
    events = []
    while not ejector.events.empty():
        events.append(ejector.events.get())
    assert [e.part_id for e in events if e.expired] == [3]
    assert {e.part_id: e.eject.value for e in events if not e.expired} == (
        {1: "ejected"} if fail_open else {1: "ejected", 2: "ejected", 3: "ejected"}
    )
    assert not ejector.resolve(3, Verdict.PASS)  # too late: already decided
    ons = [t - t0 for t, on in list(actuator.transitions)[1:] if on]
    expected = [0.25] if fail_open else [0.25, 0.35, 0.45]
    assert len(ons) == len(expected)
    for got, want in zip(ons, expected, strict=True):
        assert want - 0.002 <= got <= want + 0.03
    assert actuator.state is False


def test_ejector_wakes_its_thread_only_for_earlier_work():
    """Passed parts cost the line no thread switch; a reject arriving while the loop sleeps still fires on time."""
    actuator = LogActuator("log://")
    actuator.connect()
    ejector = Ejector(actuator, EjectorConfig(delay_s=0.3, pulse_s=0.04))
    notified = []

    class CountingCondition(threading.Condition):
        def notify(self, n: int = 1) -> None:
            notified.append(time.monotonic())
            super().notify(n)

    ejector._wake = CountingCondition()
    stop = threading.Event()
    thread = threading.Thread(target=ejector.run, args=(stop,), daemon=True)
    thread.start()
    time.sleep(0.05)  # the loop is asleep, nothing due
    for part in range(10):
        captured = time.monotonic()
        ejector.register(part, captured)
        assert ejector.resolve(part, Verdict.REJECT if part == 9 else Verdict.PASS)
        time.sleep(0.005)
    assert len(notified) <= 2  # the first deadline; the rest are later than the loop's planned wake-up
    time.sleep(0.45)
    stop.set()
    thread.join(2)
    ons = [t - captured for t, on in list(actuator.transitions)[1:] if on]
    assert len(ons) == 1 and 0.3 - 0.002 <= ons[0] <= 0.3 + 0.03


def test_results_log_one_flushed_line_per_record(tmp_path: Path):
    path = tmp_path / "logs" / "r.jsonl"
    results = ResultsLog(path)
    results.write({"part_id": 0, "verdict": "PASS"})
    assert json.loads(path.read_text().splitlines()[0]) == {"part_id": 0, "verdict": "PASS"}  # flushed already
    results.write({"part_id": 1, "verdict": "REJECT"})
    results.close()
    assert [json.loads(line)["part_id"] for line in path.read_text().splitlines()] == [0, 1]


def test_reject_store_keeps_under_the_disk_cap(tmp_path: Path):
    store = RejectStore(tmp_path / "rej", max_bytes=60_000)
    rng = np.random.default_rng(0)
    for part in range(20):
        image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)  # noise: large JPEGs
        store.submit(part, image, rng.random((64, 64), dtype=np.float32), 0.5)
        time.sleep(0.01)
    store.close()
    files = sorted(p.name for p in (tmp_path / "rej").iterdir())
    total = sum(p.stat().st_size for p in (tmp_path / "rej").iterdir())
    assert store.saved + store.skipped == 20
    assert total <= 60_000
    run = store.run_id
    assert f"{run}_part000000019_heatmap.jpg" in files and f"{run}_part000000000.jpg" not in files  # oldest went first


def test_heartbeat_toggles_only_while_healthy():
    reject, beat = LogActuator("log://reject"), LogActuator("log://heartbeat")
    for output in (reject, beat):
        output.connect()
    healthy = threading.Event()
    healthy.set()
    health = LineHealth(hold_s=0.0)
    health.add("source", lambda: None if healthy.is_set() else "camera stalled")
    ejector = Ejector(reject, EjectorConfig(heartbeat_s=0.05), heartbeat=beat, health=health)
    stop = threading.Event()
    thread = threading.Thread(target=ejector.run, args=(stop,))
    thread.start()
    time.sleep(0.5)
    toggles_healthy = len(beat.transitions)
    healthy.clear()  # e.g. the camera stalled: the PLC must see the heartbeat stop
    time.sleep(0.3)
    toggles_after = len(beat.transitions)
    time.sleep(0.3)
    stop.set()
    thread.join(5)
    ejector.close()
    assert 6 <= toggles_healthy <= 12  # ~10 half-periods of 50 ms in 0.5 s (plus the initial off)
    assert len(beat.transitions) - toggles_after == 1  # stopped toggling: only the final off on close
    assert beat.state is False and reject.state is False
    assert not any(on for _, on in reject.transitions)


def test_status_line_rewrites_one_console_line():
    import io

    from lineside.runtime.stats import Rolling, StatusLine

    class Console(io.StringIO):
        def isatty(self) -> bool:
            return True

    latency = Rolling()
    for value in range(1, 101):
        latency.add(float(value))
    assert latency.percentiles(50, 99) == pytest.approx([50.5, 99.01])
    console = Console()
    status = StatusLine(lambda: f"p99 {latency.percentiles(99)[0]:.1f} ms", console, period_s=0.02)
    status.start()
    time.sleep(0.2)
    status.stop()
    text = console.getvalue()
    assert text.startswith("\rp99 99.0 ms\x1b[K") and text.endswith("\n") and text.count("\r") >= 3


@pytest.mark.skipif(sys.platform != "linux", reason="threads have their own nice value on Linux only")
def test_reader_threads_yield_to_the_line():
    """The reader lowers only its own thread's priority: the line's threads keep theirs."""
    import os

    from lineside.runtime.sources.capture import READER_NICENESS, lower_thread_priority

    seen: dict[str, int] = {}

    def reader() -> None:
        before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        lower_thread_priority(READER_NICENESS)
        seen["reader"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) - before

    main_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread = threading.Thread(target=reader)
    thread.start()
    thread.join()
    assert seen["reader"] == min(READER_NICENESS, 19 - main_before)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_before
