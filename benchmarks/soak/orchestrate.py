"""Run the soak: one `lineside run` process per segment (SIGTERM + restart between them), the camera
feeding it, and the outages of the plan injected into the stand-ins when the belt reaches their part."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from soak.camera_link import CameraLink, child_env
from soak.plan import Fault, Plan
from soak.plant import Plc, Probe, RejectDisk, Relay
from soak.plc import COUNTS_PER_S

START_TIMEOUT_S = 180.0  # a runtime start (imports, model load, warm-up) on a loaded machine
STOP_TIMEOUT_S = 60.0
SAVE_WATCH_S = 30.0


@dataclass(frozen=True)
class Settings:
    """How the line is run."""

    bundle: Path
    class_name: str | None
    rate: float = 15.0  # parts/s
    delay_ms: float = 800.0  # camera -> ejector
    pulse_ms: float = 30.0
    stall_s: float = 0.5
    heartbeat_ms: float = 100.0
    threads: int = 1
    disk_mb: float = 2.0
    save_cap_mb: float = 1.5
    log_max_mb: float = 1.0  # small, so the soak rotates the results log
    line_nice: int = -10  # the runtime's priority: a line computer runs nothing else, this machine is shared


@dataclass
class Window:
    """One injected fault as it happened: wall-clock start and end, plus what was observed after it."""

    kind: str
    part: int
    start: float
    end: float
    seen: dict[str, float] = field(default_factory=dict)


@dataclass
class Segment:
    """One runtime process."""

    index: int
    encoder: bool
    started: float
    connected: float | None = None
    sigterm: float | None = None
    exit_code: int | None = None
    crashed: bool = False


@dataclass
class Outcome:
    """Everything the analysis reads."""

    camera: dict[int, tuple[float, str]]
    windows: list[Window]
    segments: list[Segment]
    coils: dict[int, list[tuple[float, bool]]]
    wire_log: Path
    probe_log: Path
    count_zero_wall: float  # time.time() when the PLC's belt count was 0
    results_log: Path


def runtime_command(settings: Settings, log: Path, port: int, plc: Plc, relay: Relay, disk: RejectDisk | None,
                    encoder: bool) -> list[str]:  # fmt: skip
    """`python -m soak.line BUNDLE ...`: the `lineside run` command line of one segment."""
    command = [
        sys.executable, "-m", "soak.line", str(settings.bundle), "--source", f"soak://127.0.0.1:{port}?fps={settings.rate}",
        "--actuator", f"serial://{relay.tty}?baud=115200", "--heartbeat", plc.url("heartbeat"), "--alarm", plc.url("alarm"),
        "--heartbeat-ms", str(settings.heartbeat_ms), "--log", str(log), "--pulse-ms", str(settings.pulse_ms),
        "--rate", str(settings.rate), "--stall-s", str(settings.stall_s), "--backend", "ort",
        "--threads", str(settings.threads), "--quiet", "--log-max-mb", str(settings.log_max_mb),
    ]  # fmt: skip
    if encoder:
        command += ["--encoder", plc.url("encoder"), "--delay-counts", str(settings.delay_ms / 1000 * COUNTS_PER_S)]
    else:
        command += ["--delay-ms", str(settings.delay_ms)]
    if disk is not None:
        command += ["--save-rejects", str(disk.rejects), "--save-cap-mb", str(settings.save_cap_mb)]
    if settings.class_name is not None:
        command += ["--class", settings.class_name]
    return command


class Soak:
    """Runs the plan; `run()` returns the Outcome."""

    def __init__(self, settings: Settings, plan: Plan, camera_plan: dict, work: Path, progress: tqdm) -> None:
        self.settings, self.plan, self.work = settings, plan, work
        self._camera_plan, self._progress = camera_plan, progress
        self.windows: list[Window] = []
        self.segments: list[Segment] = []
        self._proc: subprocess.Popen | None = None

    def run(self) -> Outcome:
        with ExitStack() as stack:
            self.plc = Plc(self.work)
            stack.callback(self.plc.close)
            self.relay = Relay(self.work)
            self.relay.start()
            stack.callback(self.relay.kill)
            probe = Probe(self.work)
            stack.callback(probe.close)
            self.disk = None
            if any(f.kind == "disk_full" for f in self.plan.faults):
                self.disk = RejectDisk(self.work / "disk", self.settings.disk_mb)
                stack.callback(self.disk.unmount)
            self.camera = CameraLink(self._camera_plan, self.work, on_part=lambda: self._progress.update(1))
            stack.callback(self.camera.close)
            stack.callback(self._stop_runtime)
            bounds = [0, *self.plan.restarts, self.plan.parts]
            for index in range(len(bounds) - 1):
                self._segment(index, bounds[index], bounds[index + 1])
        return Outcome(dict(self.camera.parts), self.windows, self.segments, self.plc.coils(),
                       self.relay.wire_log, probe.relay.wire_log, self.plc.zero_wall,
                       self.work / "results.jsonl")  # fmt: skip

    # ---- one runtime process ------------------------------------------------------------------------------
    def _start_runtime(self, index: int) -> Segment:
        encoder = index in self.plan.encoder_segments
        command = runtime_command(self.settings, self.work / "results.jsonl", self.camera.port, self.plc, self.relay,
                                  self.disk, encoder)  # fmt: skip
        segment = Segment(index, encoder, time.time())
        with open(self.work / f"runtime{len(self.segments):02d}.err", "w") as err:
            proc = self._proc = subprocess.Popen(command, stdout=err, stderr=err, env=child_env())
        try:  # before it starts its threads, which inherit it
            os.setpriority(os.PRIO_PROCESS, proc.pid, self.settings.line_nice)
        except OSError:  # not root: it runs at the default priority
            pass
        self.segments.append(segment)
        up = self.camera.wait_for(
            lambda: any(c > segment.started for c in self.camera.connections) or proc.poll() is not None,
            START_TIMEOUT_S,
        )
        if not up or proc.poll() is not None:
            raise RuntimeError(f"runtime of segment {index} did not connect to the camera; see {err.name}")
        segment.connected = min(c for c in self.camera.connections if c > segment.started)
        return segment

    def _segment(self, index: int, first: int, last: int) -> None:
        self.camera.wait_for(lambda: self.camera.paused_at == first, STOP_TIMEOUT_S)
        segment = self._start_runtime(index)
        self.camera.resume()
        for fault in (f for f in self.plan.faults if first <= f.part < last and f.duration_s > 0):
            self._wait_part(fault.part, segment)
            self._inject(fault)
        self._wait_part(last, segment, paused=True)
        segment = self.segments[-1]  # a new one if the runtime had to be restarted after a crash
        time.sleep((self.settings.delay_ms + self.settings.pulse_ms) / 1000 + 0.3)  # the belt clears the ejector
        segment.sigterm = time.time()
        if last < self.plan.parts:
            self.windows.append(Window("restart", last, segment.sigterm, segment.sigterm))
        self._stop_runtime(segment)

    def _wait_part(self, part: int, segment: Segment, paused: bool = False) -> None:
        """Wait until the belt reaches `part` (or pauses there); a runtime that died meanwhile is restarted."""

        def there() -> bool:
            return self.camera.paused_at == part or self.camera.done if paused else self.camera.reached(part)

        def died() -> bool:
            return self._proc is not None and self._proc.poll() is not None

        while not self.camera.wait_for(lambda: there() or died(), 3600):
            pass
        if not there() and self._proc is not None and died():
            segment.crashed, segment.exit_code = True, self._proc.returncode
            self._start_runtime(segment.index)
            self._wait_part(part, self.segments[-1], paused)

    def _stop_runtime(self, segment: Segment | None = None) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if segment is not None:
            segment.exit_code = proc.returncode

    # ---- outages ------------------------------------------------------------------------------------------
    def _inject(self, fault: Fault) -> None:
        start = time.time()
        actions = {
            "serial_loss": (self.relay.kill, self.relay.start),
            "modbus_restart": (self.plc.stop, self.plc.start),
            "encoder_fail": (lambda: self.plc.encoder_fail(True), lambda: self.plc.encoder_fail(False)),
            "disk_full": (self.disk.fill, self.disk.free) if self.disk else (lambda: None, lambda: None),
        }  # fmt: skip
        begin, end = actions[fault.kind]
        begin()
        time.sleep(fault.duration_s)
        end()
        window = Window(fault.kind, fault.part, start, time.time())
        self.windows.append(window)
        if fault.kind == "disk_full" and self.disk is not None:
            threading.Thread(target=self._watch_saves, args=(window,), daemon=True).start()

    def _watch_saves(self, window: Window) -> None:
        """Record when the reject store wrote its first file after the disk was freed."""
        assert self.disk is not None
        deadline = time.time() + SAVE_WATCH_S
        while time.time() < deadline:
            try:
                newest = max((p.stat().st_mtime for p in self.disk.rejects.iterdir()), default=0.0)
            except OSError:
                newest = 0.0
            if newest > window.end:
                window.seen["saved"] = newest
                return
            time.sleep(0.02)
