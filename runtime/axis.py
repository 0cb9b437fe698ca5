"""Where a part is on its way to the ejector: by the clock (time mode) or by the belt's encoder (encoder mode).

The Ejector is written against this small interface, so the two modes never share sentinels:
    sample()      the position now (monotonic seconds, or belt counts); None when it cannot be known
    place(t)      (eject_at, deadline, bound) for a part captured at monotonic time t: the position where it
                  reaches the ejector, the position by which it must be decided, and the monotonic time
                  after which it is given up while the position is unknown (an encoder outage)
    passed(at)    whether a part due at position `at` has already gone past the ejector
    wake(at)      the monotonic time the actuation loop must look again for something due at position `at`
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from lineside.runtime.encoder import EncoderTrack

if TYPE_CHECKING:
    from lineside.runtime.ejector import EjectorConfig

# encoder mode, default time bound: a part waits at most this many times its expected travel time
# (delay counts at the belt speed measured when it was captured) for a position the counter cannot give
BOUND_TRAVELS = 2.0
BOUND_MIN_S, BOUND_MAX_S = 0.5, 30.0


class TimeAxis:
    """Time mode: positions are `time.monotonic()` instants; a part reaches the ejector `delay_s` after capture."""

    def __init__(self, config: EjectorConfig) -> None:
        self.config = config

    def sample(self) -> float:
        return time.monotonic()

    def place(self, capture_mono: float) -> tuple[float, float, float]:
        deadline = capture_mono + self.config.deadline_s
        return capture_mono + self.config.delay_s, deadline, deadline

    def passed(self, eject_at: float) -> bool:
        return eject_at + self.config.pulse_s < time.monotonic()

    def wake(self, position: float) -> float:
        return position

    def describe(self, position: float) -> dict[str, float]:
        """For the results log: the unix time of a pulse that started at monotonic `position`."""
        return {"eject_time": position + time.time() - time.monotonic()}


class EncoderAxis:
    """Encoder mode: positions are unwrapped belt counts; a part reaches the ejector `delay_counts` after capture."""

    def __init__(self, config: EjectorConfig, track: EncoderTrack) -> None:
        if config.delay_counts is None:
            raise ValueError("encoder mode needs delay_counts")
        self.config, self.track, self.delay_counts = config, track, config.delay_counts

    def sample(self) -> float | None:
        return self.track.sample()

    def place(self, capture_mono: float) -> tuple[float, float, float]:
        eject_at = self.track.at(capture_mono) + self.delay_counts
        return eject_at, eject_at, capture_mono + self.bound_s()

    def bound_s(self) -> float:
        """How long a part may wait for an unreadable encoder: --encoder-timeout-ms, else from delay and speed."""
        if self.config.encoder_timeout_s is not None:
            return self.config.encoder_timeout_s
        speed = self.track.speed()
        if speed is None or speed <= 0:
            return BOUND_MAX_S
        return min(max(BOUND_TRAVELS * self.delay_counts / speed, BOUND_MIN_S), BOUND_MAX_S)

    def passed(self, eject_at: float) -> bool:
        return eject_at < self.track.at(time.monotonic())

    def wake(self, position: float) -> float:
        return time.monotonic() + self.track.poll_s

    def describe(self, position: float) -> dict[str, float]:
        """For the results log: the belt count at which a pulse started."""
        return {"eject_count": round(position, 1)}
