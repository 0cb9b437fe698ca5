"""The actuation stage: fail-safe part bookkeeping, reject pulses timed to the ejector, heartbeat and alarm.

Every part is registered when it is captured. Its reject pulse fires when it reaches the ejector
(capture time + delay, or with an encoder, capture count + delay counts) unless a PASS arrived
before its deadline (by default: when it reaches the ejector): a part that is not positively
passed in time is rejected (with `fail_open`, only parts judged REJECT are). The outputs are driven
by reconciling the wanted state with the actuator's last written state, so a write that fails (link
down) is retried until it succeeds, and overlapping pulses merge into one.

Actuation first: each pass of the loop reads the position, decides in memory what is due, drives the
outputs, and only then hands what happened to the parts to `events` (a queue the pipeline's recorder
thread turns into log records); the loop itself never writes a file or calls back into the pipeline.
Each pulse's outcome is what the output really did: EJECTED when it was confirmed ON inside the part's
window, FAILED when the window ended without that (output dead, or the encoder lost the part). An
output that cannot be written, an unreadable encoder, any `health` check's fault, or an exception in the
loop itself makes the line unhealthy: the heartbeat stops and the alarm output (if any) goes ON.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from lineside.errors import LinesideError
from lineside.redact import redact
from lineside.runtime.actuators.base import Actuator, ActuatorError
from lineside.runtime.axis import EncoderAxis, TimeAxis
from lineside.runtime.decision import Eject, Verdict
from lineside.runtime.encoder import EncoderTrack
from lineside.runtime.health import Check, LineHealth

log = logging.getLogger(__name__)

RETRY_S = 0.02  # how soon a failed output write is tried again (the actuator adds its own back-off)
SHUTDOWN_RETRY_S = 1.0  # at shutdown, how long an output that fails is retried before the loop gives up
IDLE_S = 0.5  # the loop's longest sleep


@dataclass(frozen=True)
class EjectorConfig:
    """Timing of the reject output, and what a fault does to the heartbeat."""

    delay_s: float = 0.0  # capture -> part at the ejector; 0 = fire as soon as the verdict is known
    pulse_s: float = 0.05
    timeout_s: float | None = None  # verdict deadline after capture (default: delay_s, or 1 s when delay_s is 0)
    fail_open: bool = False  # parts without a verdict pass instead of being rejected
    heartbeat_s: float = 0.5  # heartbeat half-period
    delay_counts: float | None = None  # with an encoder: capture -> ejector distance in counts (replaces delay_s)
    encoder_timeout_s: float | None = None  # encoder outage: how long a part waits for a position (default: 2 travels)
    fault_stops_heartbeat: bool = True  # False (only with an alarm output): a fault raises the alarm, the beat goes on
    refresh_s: float | None = 1.0  # re-write the reject and alarm outputs' state this often: a dead link shows early

    def rejects(self, verdict: Verdict | None) -> bool:
        """Whether a part with this verdict (None: no verdict by its deadline) gets a reject pulse."""
        return verdict is Verdict.REJECT or (verdict is not Verdict.PASS and not self.fail_open)

    @property
    def deadline_s(self) -> float:
        if self.timeout_s is not None:
            return self.timeout_s
        return self.delay_s if self.delay_s > 0 else 1.0

    @property
    def hold_s(self) -> float:
        """How long a fault is held after it was last seen: two heartbeat periods, so the PLC's watchdog sees it."""
        return 4 * self.heartbeat_s


@dataclass(frozen=True)
class EjectEvent:
    """What the actuation thread reports about a part, in order: its deadline passed, or its pulse is over."""

    part_id: int
    eject: Eject  # the final outcome; PENDING only with `expired` (a pulse is scheduled, its outcome follows)
    expired: bool = False  # no verdict by the deadline: the part is decided ERROR by the Ejector
    detail: dict[str, Any] = field(default_factory=dict)  # eject_time / eject_count, or eject_error


@dataclass
class _Part:
    eject_at: float  # position (monotonic s, or counts) where the part reaches the ejector
    bound: float  # monotonic: given up after this while the position is unknown (encoder outage)


@dataclass
class _Window:
    part_id: int
    start: float  # monotonic
    end: float
    mark: float  # position when the window opened, for the log
    confirmed: bool = False  # the output was seen ON inside the window


class Ejector:
    """Runs in the actuation thread (`run`); `register` and `resolve` are called from the other stages."""

    def __init__(
        self,
        actuator: Actuator,
        config: EjectorConfig,
        *,
        heartbeat: Actuator | None = None,
        alarm: Actuator | None = None,
        track: EncoderTrack | None = None,
        health: LineHealth | None = None,
    ) -> None:
        if (track is None) != (config.delay_counts is None):
            raise LinesideError("an encoder needs --delay-counts, and --delay-counts needs --encoder")
        if not config.fault_stops_heartbeat and alarm is None:
            raise LinesideError("a fault that does not stop the heartbeat needs an alarm output (--alarm)")
        self.actuator, self.heartbeat, self.alarm, self.track = actuator, heartbeat, alarm, track
        self.config = config
        self.axis: TimeAxis | EncoderAxis = TimeAxis(config) if track is None else EncoderAxis(config, track)
        self.health = health if health is not None else LineHealth(config.hold_s)
        for name, output in (("reject output", actuator), ("heartbeat output", heartbeat), ("alarm output", alarm)):
            if output is not None:
                self.health.add(name, _output_check(output))
        if track is not None:
            self.health.add("encoder", lambda: None if track.ok else f"counter unreadable: {track.last_error}")
        self.events: queue.SimpleQueue[EjectEvent] = queue.SimpleQueue()
        self.pulses = 0
        self.actuator_errors = 0
        self.loop_errors = 0
        self.outcomes: dict[str, int] = {e.value: 0 for e in (Eject.EJECTED, Eject.FAILED, Eject.FAIL_OPEN)}
        self._parts: dict[int, _Part] = {}
        self._deadlines: list[tuple[float, int]] = []  # heap of (deadline position, part id)
        self._due: list[tuple[float, int, float]] = []  # encoder mode: heap of (position, part id, bound)
        self._windows: list[_Window] = []  # reject pulses
        self._on_since: float | None = None  # when the reject output was last switched on (a pulse lasts pulse_s)
        self._wake = threading.Condition()
        self._closing = False
        self._ended = False  # the loop has returned: no pulse can fire any more
        # The actuation thread is woken only when new work is due before its planned wake-up, so a
        # part registered or passed does not cost a thread switch (and a GIL hand-over) on the line.
        self._sleeping_until: float | None = None  # when the waiting loop wakes by itself (None: not waiting)
        self._added_due: float | None = None  # earliest time due among work added since the loop last looked

    # ---- called by the other stages ----------------------------------------------------------------------
    def register(self, part_id: int, capture_mono: float, verdict: Verdict | None = None) -> Eject:
        """A part was captured: from now on it is rejected unless it passes in time.

        With `verdict` the part is decided at once (a bad frame, or a part missed while the camera was
        down) and the outcome is returned; FAILED when it already passed the ejector (no pulse then: it
        would hit a later part). Without, PENDING.
        """
        eject_at, deadline, bound = self.axis.place(capture_mono)
        with self._wake:
            if verdict is not None:
                if self.config.rejects(verdict) and self.axis.passed(eject_at):
                    return self._count(Eject.FAILED)
                return self._act(part_id, eject_at, bound, verdict)
            self._parts[part_id] = _Part(eject_at, bound)
            heapq.heappush(self._deadlines, (deadline, part_id))
            self._due_at(self.axis.wake(deadline))
            return Eject.PENDING

    def resolve(self, part_id: int, verdict: Verdict) -> Eject | None:
        """Record a part's verdict; None when it came too late (the deadline already decided it), else what
        happens to the part: NONE, FAIL_OPEN, FAILED (the line stopped), or PENDING (a pulse is scheduled)."""
        with self._wake:
            part = self._parts.pop(part_id, None)
            if part is None:
                return None
            return self._act(part_id, part.eject_at, part.bound, verdict)

    def pending(self) -> int:
        """Parts captured but not yet decided, plus pulses not yet finished."""
        with self._wake:
            return len(self._parts) + len(self._due) + len(self._windows)

    # ---- bookkeeping, in memory (lock held) --------------------------------------------------------------
    def _act(self, part_id: int, eject_at: float, bound: float, verdict: Verdict | None) -> Eject:
        """Schedule the reject pulse a verdict calls for; the part's outcome so far."""
        if not self.config.rejects(verdict):
            return Eject.NONE if verdict is Verdict.PASS else self._count(Eject.FAIL_OPEN)
        if self._ended:
            return self._count(Eject.FAILED)
        self.pulses += 1
        if isinstance(self.axis, EncoderAxis):
            heapq.heappush(self._due, (eject_at, part_id, bound))
            self._due_at(self.axis.wake(eject_at))
        else:
            start = max(eject_at, time.monotonic())
            self._windows.append(_Window(part_id, start, start + self.config.pulse_s, start))
            self._due_at(start)
        return Eject.PENDING

    def _count(self, eject: Eject) -> Eject:
        if eject.value in self.outcomes:
            self.outcomes[eject.value] += 1
        return eject

    def _due_at(self, when: float) -> None:
        """New work needs the actuation loop by `when` (monotonic); wake it only if it sleeps past that."""
        self._added_due = when if self._added_due is None else min(self._added_due, when)
        if self._sleeping_until is not None and when < self._sleeping_until:
            self._wake.notify()

    def _expire(self, now: float, position: float | None) -> list[EjectEvent]:
        """Parts whose deadline passed without a verdict get the fail-safe action; while the position is
        unknown, parts past their time bound are given up (FAILED: where they are is not known)."""
        events = []
        while self._deadlines and position is not None and self._deadlines[0][0] <= position:
            _, part_id = heapq.heappop(self._deadlines)
            part = self._parts.pop(part_id, None)
            if part is not None:
                events.append(EjectEvent(part_id, self._act(part_id, part.eject_at, part.bound, None), expired=True))
        if position is None:
            lost = {"eject_error": "encoder outage: the part's position on the belt is unknown"}
            for part_id in [p for p, part in self._parts.items() if part.bound <= now]:
                del self._parts[part_id]
                events.append(EjectEvent(part_id, self._count(Eject.FAILED), expired=True, detail=lost))
            for due in [d for d in self._due if d[2] <= now]:
                self._due.remove(due)
                events.append(EjectEvent(due[1], self._count(Eject.FAILED), detail=lost))
            heapq.heapify(self._due)
        return events

    def _reach(self, now: float, position: float) -> list[EjectEvent]:
        """Encoder mode: rejected parts the belt brought to the ejector open their pulse window now, unless the
        belt carried them past while the counter could not be read (a pulse now would hit another part)."""
        events = []
        gap = self.track.gap_s if self.track is not None else None
        stale = gap is not None and gap > self.config.pulse_s
        speed = self.track.speed() if self.track is not None else None
        while self._due and self._due[0][0] <= position:
            target, part_id, _ = heapq.heappop(self._due)
            late_s = (position - target) / speed if speed else 0.0
            if stale:
                error = f"encoder outage: the part passed the ejector during {gap:.2f} s without a position"
                events.append(EjectEvent(part_id, self._count(Eject.FAILED), detail={"eject_error": error}))
            elif late_s > self.config.pulse_s:  # a late read or a late loop: a pulse now would hit what follows
                error = f"the part was {1000 * late_s:.0f} ms past the ejector when the loop saw its position"
                self.health.report("reject output", error)
                events.append(EjectEvent(part_id, self._count(Eject.FAILED), detail={"eject_error": error}))
            else:
                self._windows.append(_Window(part_id, now, now + self.config.pulse_s, position))
        return events

    def _wanted(self, now: float) -> tuple[bool, float]:
        """(reject on?, next time the wanted state changes)."""
        reject_on = any(w.start <= now < w.end for w in self._windows)
        edges = [t for w in self._windows for t in (w.start, w.end) if t > now]
        if self._on_since is not None and now < self._on_since + self.config.pulse_s:
            reject_on = True  # a write that went out late still gets its full pulse width
            edges.append(self._on_since + self.config.pulse_s)
        if self._deadlines:
            edges.append(self.axis.wake(self._deadlines[0][0]))
        if self._due:
            edges.append(self.axis.wake(self._due[0][0]))
        return reject_on, min(edges, default=now + IDLE_S)

    def _settle(self, now: float, output_on: bool, written: float) -> list[EjectEvent]:
        """After the outputs were driven (the reject write returned at `written`): windows that saw the output
        ON, written before their pulse would have ended, are confirmed; ended ones report."""
        events = []
        for window in self._windows:
            if output_on and window.start <= now and written - window.start <= self.config.pulse_s:
                window.confirmed = True
        for window in [w for w in self._windows if w.end <= now and not self._still_held(w, now)]:
            self._windows.remove(window)
            failed = self.actuator.last_failure
            if window.confirmed and (failed is None or failed < window.start):
                events.append(
                    EjectEvent(window.part_id, self._count(Eject.EJECTED), detail=self.axis.describe(window.mark))
                )
                continue
            if window.confirmed:  # ON went out, but a write failed in the window: the link may have taken neither
                error = f"a reject output write failed in the part's window: {self.actuator.last_error}"
            else:
                why = self.actuator.last_error or "the actuation loop was late"
                error = f"reject output not ON in the part's window: {why}"
            self.health.report("reject output", error)  # a missed pulse is a fault the PLC must see
            events.append(EjectEvent(window.part_id, self._count(Eject.FAILED), detail={"eject_error": error}))
        return events

    def _still_held(self, window: _Window, now: float) -> bool:
        """The window's pulse went out late and is still ON (it gets its full width): its OFF write decides it."""
        on_since = self._on_since
        return (
            not self._ended
            and on_since is not None
            and window.start <= on_since
            and now < on_since + self.config.pulse_s
        )

    # ---- the actuation thread ----------------------------------------------------------------------------
    def run(self, stop: threading.Event, abort: threading.Event | None = None) -> None:
        """Actuation loop until `stop` is set and every registered part is decided and pulsed, or `abort`.

        Never dies of an exception: one is logged, held as the "actuation" fault (heartbeat stops, alarm
        ON), and the loop goes on; the pulses it could not drive are reported FAILED by their windows."""
        stopping_since: float | None = None
        while abort is None or not abort.is_set():
            try:
                wake, ok = self._pass()
            except Exception as exc:  # the loop must outlive any bug: the line is unhealthy, not unactuated
                wake, ok = time.monotonic() + RETRY_S, False
                self._loop_failed(exc)
            if stop.is_set():
                stopping_since = stopping_since or time.monotonic()
                given_up = time.monotonic() - stopping_since > SHUTDOWN_RETRY_S
                with self._wake:
                    idle = not self._parts and not self._windows and not self._due
                if idle and (ok or given_up):
                    break
                wake = min(wake, time.monotonic() + 0.05)
            self._sleep(wake, ok)
        self._end()

    def _pass(self) -> tuple[float, bool]:
        """One pass: position, what is due, drive the outputs, then report. (next wake-up, all writes ok)."""
        position = self.axis.sample()  # I/O outside the lock
        with self._wake:
            now = time.monotonic()
            self._added_due = None  # what is registered from here on is seen below or by the next pass
            events = self._expire(now, position)
            if position is not None and isinstance(self.axis, EncoderAxis):
                events += self._reach(now, position)
            reject_on, wake = self._wanted(now)
        was_on, issued = self.actuator.state is True, time.monotonic()
        ok = self._drive(self.actuator, reject_on, self.config.refresh_s)
        written = time.monotonic()
        if self.actuator.state is True and not was_on:
            self._on_since = issued  # the device switches when the command arrives, not when it is acknowledged
        try:
            beat_on, alarm_on, beat_edge = self._signals(now)
            ok = self._drive(self.heartbeat, beat_on) & self._drive(self.alarm, alarm_on, self.config.refresh_s) & ok
        finally:  # whatever the health outputs did, the pulses' outcomes are reported
            with self._wake:
                events += self._settle(now, self.actuator.state is True, written)
            for event in events:
                self.events.put(event)
        return min(wake, beat_edge), ok

    def _signals(self, now: float) -> tuple[bool, bool, float]:
        """(heartbeat on?, alarm on?, next heartbeat edge) from the line's health."""
        faults = self.health.faults()
        alarm_dead = "alarm output" in faults
        stop_beat = bool(faults) and (self.config.fault_stops_heartbeat or alarm_dead)
        period = self.config.heartbeat_s
        beat_on = self.heartbeat is not None and not stop_beat and not self._closing and int(now / period) % 2 == 0
        edge = (int(now / period) + 1) * period if self.heartbeat is not None else now + IDLE_S
        return beat_on, bool(faults) and not self._closing, edge

    def _drive(self, output: Actuator | None, on: bool, refresh_s: float | None = None) -> bool:
        """Bring `output` to `on` (again, if its last write is older than `refresh_s`, so a link that died
        while nothing was to be written is found before the next part needs it); False when the write failed."""
        if output is None:
            return True
        if output.state is on:
            last = output.last_write
            if refresh_s is None or last is None or time.monotonic() - last < refresh_s:
                return True
        try:
            output.set(on)
            return True
        except ActuatorError as exc:
            self.actuator_errors += 1
            if self.actuator_errors % 50 == 1:
                log.error("actuator write failed (%d so far): %s", self.actuator_errors, exc)
            return False

    def _loop_failed(self, exc: Exception) -> None:
        """An unexpected exception in a pass: log it, hold the fault, and try to show it on the outputs."""
        self.loop_errors += 1
        if self.loop_errors % 100 == 1:
            log.exception("actuation loop failed (%d so far); the line is UNHEALTHY", self.loop_errors)
        self.health.report("actuation", f"{type(exc).__name__}: {exc}")
        for output, on in ((self.heartbeat, False), (self.alarm, True)):
            try:
                self._drive(output, on)
            except Exception:  # best effort: the fault is already logged and held
                log.debug("could not signal the actuation fault on %s", output)

    def _sleep(self, wake: float, ok: bool) -> None:
        with self._wake:
            now = time.monotonic()
            if self._added_due is not None:
                wake = min(wake, self._added_due)  # work added while the outputs were driven
            wait = min(wake - now, IDLE_S if ok else RETRY_S)
            if wait > 0:
                self._sleeping_until = now + wait
                self._wake.wait(wait)
                self._sleeping_until = None

    def _end(self) -> None:
        """The loop returned (aborted, or a shutdown with a dead output): pulses that did not happen are FAILED."""
        with self._wake:
            self._ended = True
            now = time.monotonic()
            for window in self._windows:
                window.end = min(window.end, now)
            events = self._settle(now, False, now)
            stopped = {"eject_error": "the line stopped before the part reached the ejector"}
            events += [EjectEvent(p, self._count(Eject.FAILED), detail=stopped) for _, p, _ in self._due]
            self._due.clear()
        for event in events:
            self.events.put(event)

    def close(self) -> None:
        """Leave every output off and close the links (after `run` returned)."""
        self._closing = True
        for output in (self.actuator, self.heartbeat, self.alarm):
            if output is not None:
                output.close()


def _output_check(output: Actuator) -> Check:
    """A health check for one output: its last write failed (held by LineHealth for a while after it recovers)."""
    return lambda: None if output.ok else f"{redact(output.url)}: {output.last_error}"
