"""The line's health: one named check per link in the chain (source, backend, encoder, every output).

A check is a cheap callable returning None when its part of the chain works, else a short text saying
what is wrong. It is called on the actuation thread every heartbeat edge, so it must only read
attributes (no I/O, no locks held for long). A check that raises counts as a fault itself. A fault is
held for `hold_s` after it was last seen, so a short one (one failed write to the reject relay) still
stops the heartbeat long enough for the PLC's watchdog to see it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Check = Callable[[], "str | None"]


class LineHealth:
    """Named checks; the line is healthy when none reports a fault (seen within the last `hold_s`)."""

    def __init__(self, hold_s: float = 1.0) -> None:
        self.hold_s = hold_s
        self._checks: dict[str, Check] = {}
        self._held: dict[str, tuple[float, str]] = {}  # name -> (fault last seen, monotonic; its text)
        self.seen: dict[str, int] = {}  # name -> how many times the fault started, over the run
        self._lock = threading.Lock()

    def add(self, name: str, check: Check) -> None:
        """Watch `check` under `name` (e.g. "source", "reject output")."""
        self._checks[name] = check

    def report(self, name: str, fault: str) -> None:
        """Record a fault seen by a stage itself (e.g. an exception in the actuation loop), held like the others."""
        self._hold(name, fault, time.monotonic())

    def faults(self) -> dict[str, str]:
        """What is wrong now (or was within `hold_s`): name -> text; empty when the line is healthy."""
        now = time.monotonic()
        for name, check in list(self._checks.items()):
            try:
                fault = check()
            except Exception as exc:  # a broken check must make the line unhealthy, not crash the caller
                fault = f"health check raised {type(exc).__name__}: {exc}"
            if fault is not None:
                self._hold(name, fault, now)
        with self._lock:
            for name in [n for n, (seen, _) in self._held.items() if now - seen > self.hold_s]:
                del self._held[name]
            return {name: text for name, (_, text) in self._held.items()}

    def ok(self) -> bool:
        """No fault now or within `hold_s`."""
        return not self.faults()

    def _hold(self, name: str, fault: str, now: float) -> None:
        with self._lock:
            if name not in self._held:
                self.seen[name] = self.seen.get(name, 0) + 1
            self._held[name] = (now, fault)


def health_text(faults: dict[str, str]) -> str:
    """`OK`, or `UNHEALTHY (name: why; ...)` for the console."""
    if not faults:
        return "OK"
    return "UNHEALTHY (" + "; ".join(f"{name}: {why}" for name, why in faults.items()) + ")"
