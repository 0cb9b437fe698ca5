"""What the live page shows, collected without slowing the line.

The line's threads call `LineFeed.decided` for every decision: it only stores references (the latest
decision, a bounded deque of recent rejects, a bounded latency series) under a lock held for a few
microseconds. Everything costly (heatmap overlays, JPEG encoding, percentiles, JSON) happens on the
server's thread, rate-limited, on demand.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lineside.runtime.dashboard.images import render

if TYPE_CHECKING:
    from lineside.runtime.pipeline import Pipeline

KINDS = ("image", "heatmap")


@dataclass(frozen=True)
class Seen:
    """One decision as the line handed it over (references only; never modified afterwards)."""

    seq: int
    record: dict[str, Any]
    image: np.ndarray | None
    anomaly_map: np.ndarray | None

    def summary(self) -> dict[str, Any]:
        """The JSON the page gets about this decision."""
        record = self.record
        return {
            "seq": self.seq,
            "part_id": record["part_id"],
            "verdict": record["verdict"],
            "score": record["score"],
            "threshold": record["threshold"],
            "reason": record["reason"],
            "time": record["decision_time"],
            "image": self.image is not None,
            "heatmap": self.anomaly_map is not None,
        }


class LineFeed:
    """The dashboard's observer of a running line (a `pipeline.DecisionObserver`)."""

    def __init__(
        self,
        rejects_kept: int = 12,
        series_kept: int = 300,
        frame_interval_s: float = 0.2,
        reject_interval_s: float = 0.25,
    ) -> None:
        self._lock = threading.Lock()
        self._seq = 0
        self._latest: Seen | None = None
        self._rejects: deque[Seen] = deque(maxlen=rejects_kept)
        self._series: deque[tuple[int, str, float]] = deque(maxlen=series_kept)  # (part id, verdict, total ms)
        self._frame_interval_s = frame_interval_s
        # at most one reject per interval enters the strip: a burst of rejects would otherwise cost the
        # server two JPEG encodings each, on the cores the line needs (they are counted, not shown)
        self._reject_interval_s = reject_interval_s
        self._last_reject = -float("inf")
        self._rejects_not_shown = 0
        # server thread only: the encoded latest frame (when encoded, seq, JPEG) and reject JPEGs, oldest first
        self._frame: tuple[float, int, bytes] | None = None
        self._jpegs: OrderedDict[tuple[int, str], bytes] = OrderedDict()
        self._jpegs_kept = 2 * rejects_kept

    # ---- line side: called on the inspection threads, must stay O(1) ------------------------------------
    def decided(self, record: dict[str, Any], image: np.ndarray | None, anomaly_map: np.ndarray | None) -> None:
        """Store references to one decision; nothing is copied, encoded or computed here."""
        total = record["latency_ms"].get("total") if "infer" in record["latency_ms"] else None
        with self._lock:
            self._seq += 1
            seen = Seen(self._seq, record, image, anomaly_map)
            self._latest = seen
            if record["verdict"] != "PASS":
                now = time.monotonic()
                if now - self._last_reject >= self._reject_interval_s:
                    self._rejects.append(seen)
                    self._last_reject = now
                else:
                    self._rejects_not_shown += 1
            if total is not None:
                self._series.append((record["part_id"], record["verdict"], total))

    # ---- server side -------------------------------------------------------------------------------------
    def view(self) -> dict[str, Any]:
        """Latest decision, recent rejects (newest first, with how many were not shown), latency series, as JSON."""
        with self._lock:
            latest, rejects, series = self._latest, list(self._rejects), list(self._series)
            not_shown = self._rejects_not_shown
        return {
            "latest": latest.summary() if latest is not None else None,
            "rejects": [seen.summary() for seen in reversed(rejects)],
            "rejects_not_shown": not_shown,
            "series": [{"part_id": p, "verdict": v, "total_ms": t} for p, v, t in series],
        }

    def latest_jpeg(self) -> bytes | None:
        """The latest frame with its heatmap, re-encoded at most once per `frame_interval_s` for all clients."""
        with self._lock:
            latest, cached = self._latest, self._frame
        if latest is None or latest.image is None:
            return cached[2] if cached else None
        now = time.monotonic()
        if cached is not None and (cached[1] == latest.seq or now - cached[0] < self._frame_interval_s):
            return cached[2]
        jpeg = render(latest.image, latest.anomaly_map, latest.record["threshold"], heatmap=True)
        self._frame = (now, latest.seq, jpeg)
        return jpeg

    def reject_jpeg(self, seq: int, kind: str) -> bytes | None:
        """A kept reject's image or heatmap overlay (None once it left the strip), encoded once."""
        key = (seq, kind)
        if key in self._jpegs:
            return self._jpegs[key]
        with self._lock:
            seen = next((s for s in self._rejects if s.seq == seq), None)
        if seen is None or seen.image is None or (kind == "heatmap" and seen.anomaly_map is None):
            return None
        jpeg = render(seen.image, seen.anomaly_map, seen.record["threshold"], heatmap=kind == "heatmap")
        self._jpegs[key] = jpeg
        while len(self._jpegs) > self._jpegs_kept:
            self._jpegs.popitem(last=False)
        return jpeg


def line_stats(pipeline: Pipeline) -> Callable[[], dict[str, Any]]:
    """A function returning the line's counters, latency percentiles and health, read without waiting on the line."""

    def stats() -> dict[str, Any]:
        counters, capture, ejector = pipeline.counters, pipeline.capture.stats, pipeline.ejector
        faults = pipeline.health.faults()
        p50, p99 = pipeline.total_ms.percentiles(50, 99)
        return {
            "parts": counters.decisions,
            "verdicts": dict(counters.verdicts),
            "dropped": counters.dropped,
            "timeouts": counters.timeouts,
            "missed": capture.missed,
            "outages": capture.outages,
            "p50_ms": round(p50, 2) if np.isfinite(p50) else None,
            "p99_ms": round(p99, 2) if np.isfinite(p99) else None,
            "source_up": capture.source_up,
            "healthy": not faults,
            "faults": faults,  # what makes the line unhealthy now: name -> why
            "eject": dict(ejector.outcomes),  # ejected / eject_failed / not_ejected_fail_open so far
            "outputs": [o.health() for o in (ejector.actuator, ejector.heartbeat, ejector.alarm) if o is not None],
        }

    return stats


class LiveView:
    """The live page's state: the feed plus the line's stats, computed at most once per `period_s` for all clients."""

    def __init__(self, feed: LineFeed, stats: Callable[[], dict[str, Any]], period_s: float = 0.5) -> None:
        self.feed = feed
        self.period_s = period_s
        self._stats = stats
        self._parts: deque[tuple[float, int]] = deque(maxlen=64)  # (monotonic, parts decided) per snapshot
        self._cached: tuple[float, dict[str, Any]] | None = None

    def snapshot(self) -> dict[str, Any]:
        """Counters, parts/s over the last ~5 s (None at first), health, latest decision, rejects, latency series."""
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < self.period_s:
            return self._cached[1]
        stats = self._stats()
        self._parts.append((now, stats["parts"]))
        while len(self._parts) > 2 and now - self._parts[0][0] > 5.0:
            self._parts.popleft()
        first_time, first_parts = self._parts[0]
        rate = round((stats["parts"] - first_parts) / (now - first_time), 2) if now > first_time else None
        snapshot = {"time": time.time(), "fps": rate, **stats, **self.feed.view()}
        self._cached = (now, snapshot)
        return snapshot
