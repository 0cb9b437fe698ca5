"""The actuation stage: fail-safe part bookkeeping, reject pulses timed to the ejector, heartbeat.

Every part is registered when it is captured. Its reject pulse fires when it reaches the ejector
(capture time + delay, or with an encoder, capture count + delay counts) unless a PASS arrived
before its deadline (by default: when it reaches the ejector): a part that is not positively
passed in time is rejected (with `fail_open`, only parts judged REJECT are). The outputs are driven
by reconciling the wanted state with the actuator's last written state, so a write that fails (link
down) is retried until it succeeds, and overlapping pulses merge into one.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from lineside.errors import LinesideError
from lineside.runtime.actuators.base import Actuator, ActuatorError
from lineside.runtime.decision import Verdict
from lineside.runtime.encoder import EncoderTrack

log = logging.getLogger(__name__)

RETRY_S = 0.02  # how soon a failed output write is tried again (the actuator adds its own back-off)


@dataclass(frozen=True)
class EjectorConfig:
    """Timing of the reject output."""

    delay_s: float = 0.0  # capture -> part at the ejector; 0 = fire as soon as the verdict is known
    pulse_s: float = 0.05
    timeout_s: float | None = None  # verdict deadline after capture (default: delay_s, or 1 s when delay_s is 0)
    fail_open: bool = False  # parts without a verdict pass instead of being rejected
    heartbeat_s: float = 0.5  # heartbeat half-period
    delay_counts: float | None = None  # with an encoder: capture -> ejector distance in counts (replaces delay_s)

    def rejects(self, verdict: Verdict | None) -> bool:
        """Whether a part with this verdict (None: no verdict by its deadline) gets a reject pulse."""
        return verdict is Verdict.REJECT or (verdict is not Verdict.PASS and not self.fail_open)

    @property
    def deadline_s(self) -> float:
        if self.timeout_s is not None:
            return self.timeout_s
        return self.delay_s if self.delay_s > 0 else 1.0


@dataclass
class _Part:
    eject_at: float
    verdict: Verdict | None = None


class Ejector:
    """Runs in the actuation thread (`run`); `register` and `resolve` are called from the other stages."""

    def __init__(
        self,
        actuator: Actuator,
        config: EjectorConfig,
        on_timeout: Callable[[int], None],
        heartbeat: Actuator | None = None,
        healthy: Callable[[], bool] = lambda: True,
        track: EncoderTrack | None = None,
    ) -> None:
        if (track is None) != (config.delay_counts is None):
            raise LinesideError("an encoder needs --delay-counts, and --delay-counts needs --encoder")
        self.actuator = actuator
        self.track = track
        self.heartbeat = heartbeat
        self.config = config
        self.pulses = 0
        self.actuator_errors = 0
        self._on_timeout = on_timeout
        self._healthy = healthy
        self._parts: dict[int, _Part] = {}
        self._deadlines: list[tuple[float, int]] = []  # heap of (deadline, part id)
        self._windows: list[tuple[float, float]] = []  # reject pulses (start, end), monotonic
        self._due: list[float] = []  # encoder mode: heap of belt positions where a pulse must start
        self._on_since: float | None = None  # when the reject output was last switched on (a pulse lasts pulse_s)
        self._wake = threading.Condition()
        self._closing = False
        # The actuation thread is woken only when new work is due before its planned wake-up, so a
        # part registered or passed does not cost a thread switch (and a GIL hand-over) on the line.
        self._sleeping_until = -math.inf  # when the waiting loop wakes by itself (-inf: not waiting)
        self._added_due = math.inf  # earliest time due among work added since the loop last looked

    def register(self, part_id: int, capture_mono: float, verdict: Verdict | None = None) -> bool:
        """A part was captured: from now on it is rejected unless it passes in time.

        With `verdict` the part is decided at once (a bad frame, or a part missed while the camera was
        down). Returns False when such a part already passed the ejector: no pulse is fired then, since
        it would hit a later part.
        """
        if self.track is not None:
            eject_at = self.track.at(capture_mono) + (self.config.delay_counts or 0.0)
            deadline, passed = eject_at, eject_at < self.track.at(time.monotonic())
        else:
            eject_at, deadline = capture_mono + self.config.delay_s, capture_mono + self.config.deadline_s
            passed = eject_at + self.config.pulse_s < time.monotonic()
        with self._wake:
            if verdict is not None:
                if not passed:
                    self._act(eject_at, verdict)
                return not passed
            self._parts[part_id] = _Part(eject_at=eject_at)
            heapq.heappush(self._deadlines, (deadline, part_id))
            self._due_at(deadline if self.track is None else -math.inf)
            return True

    def eject_target(self, capture_mono: float, decided_mono: float) -> dict[str, float]:
        """For the results log: when (time.time()) or at which encoder count a rejected part is ejected."""
        if self.track is not None:
            return {"eject_count": round(self.track.at(capture_mono) + (self.config.delay_counts or 0.0), 1)}
        wall = time.time() - time.monotonic()
        return {"eject_time": wall + max(capture_mono + self.config.delay_s, decided_mono)}

    def resolve(self, part_id: int, verdict: Verdict) -> bool:
        """Record a part's verdict; False when it came too late (the deadline already decided it)."""
        with self._wake:
            part = self._parts.pop(part_id, None)
            if part is None:
                return False
            self._act(part.eject_at, verdict)
            return True

    def _act(self, eject_at: float, verdict: Verdict | None) -> None:
        """Schedule the reject pulse a verdict calls for (caller holds the lock)."""
        if not self.config.rejects(verdict):
            return
        self.pulses += 1
        if self.track is not None:
            heapq.heappush(self._due, eject_at)
            self._due_at(-math.inf)  # belt positions: let the loop start polling the encoder now
            return
        start = max(eject_at, time.monotonic())
        self._windows.append((start, start + self.config.pulse_s))
        self._due_at(start)

    def _due_at(self, when: float) -> None:
        """New work needs the actuation loop by `when` (monotonic); wake it only if it sleeps past that (lock held)."""
        self._added_due = min(self._added_due, when)
        if when < self._sleeping_until:
            self._wake.notify()

    def pending(self) -> int:
        """Parts captured but not yet decided, plus pulses not yet finished."""
        with self._wake:
            now = time.monotonic()
            return len(self._parts) + len(self._due) + sum(end > now for _, end in self._windows)

    def _expire(self, position: float) -> list[int]:
        """Parts whose deadline (time, or belt position) passed without a verdict; they get the fail-safe action."""
        expired = []
        while self._deadlines and self._deadlines[0][0] <= position:
            _, part_id = heapq.heappop(self._deadlines)
            part = self._parts.pop(part_id, None)
            if part is not None:
                self._act(part.eject_at, None)
                expired.append(part_id)
        return expired

    def _wanted(self, now: float, position: float) -> tuple[bool, bool, float]:
        """(reject on?, heartbeat on?, next time something changes) (lock held)."""
        while self._due and self._due[0] <= position:  # encoder mode: a rejected part reached the ejector
            heapq.heappop(self._due)
            self._windows.append((now, now + self.config.pulse_s))
        self._windows = [w for w in self._windows if w[1] > now]
        reject_on = any(start <= now for start, _ in self._windows)
        edges = [t for window in self._windows for t in window if t > now]
        if self._on_since is not None and now < self._on_since + self.config.pulse_s:
            reject_on = True  # a write that went out late still gets its full pulse width
            edges.append(self._on_since + self.config.pulse_s)
        if self.track is not None and (self._due or self._deadlines):
            edges.append(now + self.track.poll_s)
        elif self._deadlines:
            edges.append(self._deadlines[0][0])
        beat_on = False
        if self.heartbeat is not None and self._healthy() and not self._closing:
            period = self.config.heartbeat_s
            beat_on = int(now / period) % 2 == 0
            edges.append((int(now / period) + 1) * period)
        return reject_on, beat_on, min(edges, default=now + 0.5)

    def _drive(self, output: Actuator | None, on: bool) -> bool:
        """Bring `output` to `on`; False when the write failed (retried on the next pass)."""
        if output is None or output.state is on:
            return True
        try:
            output.set(on)
            return True
        except ActuatorError as exc:
            self.actuator_errors += 1
            if self.actuator_errors % 50 == 1:
                log.error("actuator write failed (%d so far): %s", self.actuator_errors, exc)
            return False

    def run(self, stop: threading.Event, abort: threading.Event | None = None) -> None:
        """Actuation loop until `stop` is set and every registered part is decided and pulsed, or `abort`."""
        while abort is None or not abort.is_set():
            position = self.track.sample() if self.track is not None else None  # I/O outside the lock
            with self._wake:
                now = time.monotonic()
                self._added_due = math.inf  # what is registered from here on is seen below or by the next pass
                position = now if position is None else position
                expired = self._expire(position)
                reject_on, beat_on, next_edge = self._wanted(now, position)
                idle = not self._parts and not self._windows and not self._due
            for part_id in expired:
                self._on_timeout(part_id)
            was_on, issued = self.actuator.state is True, time.monotonic()
            ok = self._drive(self.actuator, reject_on) & self._drive(self.heartbeat, beat_on)
            if self.actuator.state is True and not was_on:
                self._on_since = issued  # the device switches when the command arrives, not when it is acknowledged
            if stop.is_set() and idle and ok:
                return
            with self._wake:
                now = time.monotonic()
                wait = min(next_edge, self._added_due) - now  # work added while the outputs were driven
                if not ok:
                    wait = min(wait, RETRY_S)
                if stop.is_set():
                    wait = min(wait, 0.05)
                if wait > 0:
                    self._sleeping_until = now + wait
                    self._wake.wait(wait)
                    self._sleeping_until = -math.inf

    def close(self) -> None:
        """Leave every output off and close the links (after `run` returned)."""
        self._closing = True
        for output in (self.actuator, self.heartbeat):
            if output is not None:
                output.close()
