"""Part accounting from a source's own frame counter: which counter values were skipped (dropped frames).

One `CounterTrack` follows one opened source. A skipped value is a part nobody saw: the capture
stage gives each one its own ERROR decision (cause `frame_dropped`). Wrap-around of a counter with
a declared range is unwrapped; a counter that goes backwards, repeats, or jumps further than the
elapsed time allows is a restart (camera reset, wrap of an undeclared range), never a burst of drops.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MAX_FPS = 1000.0  # the highest frame rate assumed when neither --rate nor the source gives one
RATE_SLACK = 1.5  # a gap may be this much larger than elapsed time x frame rate allows
TIME_SLACK_S = 1.0  # plus this much time (reader read-ahead, scheduling)


@dataclass
class CounterTrack:
    """Follows one opened source's counter; `step(counter, now)` says which values were skipped before it."""

    kind: str
    low: int = 0  # counter_min of the source
    high: int | None = None  # counter_max of the source; None: never wraps
    fps: float | None = None  # the line's part rate or the source's frame rate, to bound a plausible gap
    restarts: int = 0
    dropped: int = 0
    _last: int | None = field(default=None, repr=False)
    _last_mono: float = field(default=0.0, repr=False)

    def _forward(self, counter: int) -> int | None:
        """Steps from the last counter to `counter` (1 = the next frame), None if it went backwards."""
        assert self._last is not None
        if self.high is None:
            delta = counter - self._last
            return delta if delta > 0 else None
        span = self.high - self.low + 1
        delta = (counter - self._last) % span
        return delta if 0 < delta <= span // 2 else None

    def step(self, counter: int | None, now: float) -> list[int]:
        """The counter values skipped since the last frame (empty when none, first frame or restart)."""
        if counter is None:
            return []
        if self._last is None or (self.high is not None and not self.low <= counter <= self.high):
            return self._restart(counter, now, None)
        delta = self._forward(counter)
        allowed = math.ceil((now - self._last_mono + TIME_SLACK_S) * (self.fps or MAX_FPS) * RATE_SLACK)
        if delta is None or delta > allowed:
            return self._restart(counter, now, delta)
        last = self._last
        self._last, self._last_mono = counter, now
        if self.high is None:
            skipped = list(range(last + 1, counter))
        else:
            span = self.high - self.low + 1
            skipped = [(last - self.low + k) % span + self.low for k in range(1, delta)]
        self.dropped += len(skipped)
        return skipped

    def _restart(self, counter: int, now: float, delta: int | None) -> list[int]:
        if self._last is not None:
            self.restarts += 1
            why = "went backwards or repeated" if delta is None else f"jumped {delta} (more than time allows)"
            log.warning("%s counter %s (%d -> %d): taken as a counter restart, not drops", self.kind, why,
                        self._last, counter)  # fmt: skip
        self._last, self._last_mono = counter, now
        return []
