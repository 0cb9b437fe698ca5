"""Rolling latency percentiles, frame rate and the live console status line."""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

import numpy as np


class Rolling:
    """The last `size` samples of a latency (ms) and their arrival times, for p50/p99 and rate."""

    def __init__(self, size: int = 2000) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._times: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, value_ms: float) -> None:
        with self._lock:
            self._values.append(value_ms)
            self._times.append(time.monotonic())

    def percentiles(self, *qs: float) -> list[float]:
        """Percentiles of the window (NaN when empty)."""
        with self._lock:
            values = np.fromiter(self._values, float)
        if values.size == 0:
            return [float("nan")] * len(qs)
        return [float(v) for v in np.percentile(values, qs)]

    def rate(self, window_s: float = 5.0) -> float:
        """Samples per second over the last `window_s` seconds."""
        now = time.monotonic()
        with self._lock:
            recent = sum(1 for t in self._times if now - t <= window_s)
        return recent / window_s


class StatusLine:
    """Rewrites one console line every `period_s` while the pipeline runs (a plain line when not a TTY)."""

    def __init__(self, render: Callable[[], str], stream: TextIO | None = None, period_s: float = 0.5) -> None:
        self._render = render
        self._stream = stream or sys.stderr
        self._period = period_s if self._stream.isatty() else max(period_s, 10.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lineside-status", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        tty = self._stream.isatty()
        while not self._stop.wait(self._period):
            text = self._render()
            self._stream.write(f"\r{text}\x1b[K" if tty else text + "\n")
            self._stream.flush()

    def stop(self) -> None:
        """Stop and end the line."""
        self._stop.set()
        self._thread.join(timeout=2)
        if self._stream.isatty():
            self._stream.write("\n")
