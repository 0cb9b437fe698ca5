"""Belt position from a conveyor encoder counter, so reject pulses follow the belt, not the clock.

The counter is read from a PLC register over Modbus (`modbus+tcp://plc:502?register=N&unit=1&bits=16`,
`&input=1` for an input register, `bits=32` for a counter in two registers, high word first). Raw values
are unwrapped into a monotonic count; the actuation thread samples it every `poll_s` and the capture
stage looks up the count at a frame's capture time by interpolation (no I/O in the capture thread).
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from lineside.errors import LinesideError, missing_extra
from lineside.runtime.actuators.base import int_param, query_params

log = logging.getLogger(__name__)


class ModbusCounter:
    """A PLC counter register read with pymodbus."""

    def __init__(self, url: str) -> None:
        parts, params = urlsplit(url), query_params(url)
        if parts.scheme.lower() != "modbus+tcp" or not parts.hostname:
            raise LinesideError(f"--encoder {url}: use modbus+tcp://HOST:PORT?register=N[&unit=1&bits=16|32&input=1]")
        self.url, self.host, self.port = url, parts.hostname, parts.port or 502
        self.address = int_param(params, "register", None, url)
        self.unit = int_param(params, "unit", 1, url)
        self.bits = int_param(params, "bits", 16, url)
        if self.bits not in (16, 32):
            raise LinesideError(f"--encoder {url}: bits must be 16 or 32")
        self.input = bool(int_param(params, "input", 0, url))
        self._client: Any = None

    def connect(self) -> None:
        """Open the link; LinesideError when the PLC does not answer."""
        try:
            from pymodbus.client import ModbusTcpClient
        except ImportError as exc:
            raise missing_extra("pymodbus", "plc") from exc
        self._client = ModbusTcpClient(self.host, port=self.port, timeout=0.3, retries=0)
        if not self._client.connect():
            raise LinesideError(f"--encoder {self.url}: cannot connect to {self.host}:{self.port}")
        self.read()

    def read(self) -> int:
        """The raw counter value; raises ConnectionError on a failed read."""
        if self._client is None:
            raise ConnectionError("encoder link is not open")
        count = self.bits // 16
        reader = self._client.read_input_registers if self.input else self._client.read_holding_registers
        response = reader(self.address, count=count, device_id=self.unit)
        if response.isError():
            raise ConnectionError(f"encoder read failed: {response}")
        words = response.registers
        return words[0] if count == 1 else (words[0] << 16) | words[1]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class EncoderTrack:
    """Unwrapped belt position (counts) with a short history for looking up past positions.

    A failed read is an outage: `sample` returns None (the position is unknown), `ok` is False until a
    read succeeds again. The first good read after an outage unwraps forward only (the belt does not run
    backwards by more than a jitter, but it may well have run more than half the counter range while
    the PLC did not answer) and sets `gap_s` to the time since the last good read before the outage, so
    the Ejector can tell which parts passed the ejector unseen.
    """

    def __init__(self, counter: ModbusCounter, poll_s: float = 0.002, history: int = 8192) -> None:
        self.counter = counter
        self.poll_s = poll_s
        self.errors = 0
        self.outages = 0
        self.ok = True  # False while the counter cannot be read: the belt position is unknown
        self.last_error: str | None = None
        self.gap_s: float | None = None  # set by the first good read after an outage: time since the last good one
        self._modulus = 1 << counter.bits
        self._raw: int | None = None
        self._count = 0.0
        self._last_good: float | None = None
        self._times: deque[float] = deque(maxlen=history)
        self._counts: deque[float] = deque(maxlen=history)
        self._lock = threading.Lock()

    def sample(self) -> float | None:
        """Read the counter now (actuation thread): the position in counts, or None when the read failed."""
        try:
            raw = self.counter.read()
        except Exception as exc:  # pymodbus raises its own exception types; the actuation thread must go on
            if self.ok:
                self.outages += 1
            self.ok, self.gap_s = False, None
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            if self.errors % 100 == 1:
                log.error("encoder read failed (%d so far): %s", self.errors, exc)
            return None
        now, delta = time.monotonic(), 0
        if self._raw is not None:
            delta = (raw - self._raw) % self._modulus
            if self.ok and delta > self._modulus // 2:  # the belt ran backwards a little
                delta -= self._modulus
            self._count += delta
        recovered = not self.ok and self._last_good is not None
        self.gap_s = now - self._last_good if recovered and self._last_good is not None else None
        if recovered:
            log.warning("encoder readable again after %.2f s; moved %+.0f counts meanwhile", self.gap_s, delta)
        self._raw, self.ok, self._last_good = raw, True, now
        with self._lock:
            self._times.append(now)
            self._counts.append(self._count)
        return self._count

    def at(self, mono: float) -> float:
        """The position at monotonic time `mono`, interpolated between samples."""
        with self._lock:
            if not self._times:
                return self._count
            index = bisect.bisect_left(self._times, mono)
            if index == 0:
                return self._counts[0]
            if index >= len(self._times):
                return self._counts[-1]
            t0, t1 = self._times[index - 1], self._times[index]
            c0, c1 = self._counts[index - 1], self._counts[index]
        return c0 + (c1 - c0) * (mono - t0) / (t1 - t0) if t1 > t0 else c1

    def speed(self, window_s: float = 1.0) -> float | None:
        """Belt speed in counts/s over the last `window_s` of good reads; None without two reads in it."""
        with self._lock:
            if len(self._times) < 2:
                return None
            end_time, end_count = self._times[-1], self._counts[-1]
            index = max(0, bisect.bisect_left(self._times, end_time - window_s) - 1)
            start_time, start_count = self._times[index], self._counts[index]
        return (end_count - start_count) / (end_time - start_time) if end_time > start_time else None
