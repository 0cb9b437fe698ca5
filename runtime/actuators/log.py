"""`log://`: an output without hardware; every transition is logged (dry runs, demos)."""

from __future__ import annotations

import logging
import time
from collections import deque

from lineside.runtime.actuators.base import Actuator

log = logging.getLogger(__name__)


class LogActuator(Actuator):
    """Keeps the last 10000 transitions as (time.monotonic(), state) in `transitions`; logs each one."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.transitions: deque[tuple[float, bool]] = deque(maxlen=10_000)

    def _connect(self) -> None:
        """Nothing to open."""

    def _write(self, on: bool) -> None:
        self.transitions.append((time.monotonic(), on))
        log.info("%s -> %s", self.url, "ON" if on else "OFF")

    def _disconnect(self) -> None:
        """Nothing to close."""
