"""What the soak observed, read back: results-log records (all rotated files), relay pulses on the wire,
and the periods the PLC saw the line unhealthy (heartbeat silent or alarm on)."""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

Interval = tuple[float, float]


def log_files(log: Path) -> list[Path]:
    """LOG.N ... LOG.1, LOG: every rotated file of the results log, oldest first."""
    rotated = sorted((p for p in log.parent.glob(log.name + ".*") if p.suffix[1:].isdigit()),
                     key=lambda p: -int(p.suffix[1:]))  # fmt: skip
    return [*rotated, *([log] if log.exists() else [])]


def read_log(log: Path) -> tuple[list[dict[str, Any]], int]:
    """(every record in write order, torn lines: lines that do not parse as one JSON object)."""
    records, torn = [], 0
    for path in log_files(log):
        data = path.read_bytes()
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        elif lines:
            torn += 1  # a last line without its newline
            lines.pop()
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                torn += 1
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                torn += 1
    return records, torn


def runs_of(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Part records per run (by `run_id`, else by the `start` event that opened the run), in run order."""
    runs: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    current = 0
    for record in records:
        if record.get("event") == "start" and "run_id" not in record:
            current += 1
        if record.get("type") == "part":
            runs[record.get("run_id", current)].append(record)
    return list(runs.values())


def assign(runs: list[list[dict[str, Any]]]) -> tuple[dict[int, list[dict[str, Any]]], int]:
    """Physical part -> its decision records, and how many records matched no part.

    A record with the camera's frame id (`counter`) is that part. Records without one (parts counted from
    --rate while the source was down) take, in order, the parts between the frame ids around them.
    """
    decided: dict[int, list[dict[str, Any]]] = defaultdict(list)
    unmatched = 0
    for run in runs:
        previous: int | None = None
        pending: list[dict[str, Any]] = []
        for record in sorted(run, key=lambda r: r["part_id"]):
            counter = record.get("counter")
            if counter is None:
                pending.append(record)
                continue
            gap = list(range(previous + 1, counter)) if previous is not None else []
            for part, missed in zip(gap, pending, strict=False):
                decided[part].append(missed)
            unmatched += max(0, len(pending) - len(gap))
            pending, previous = [], counter
            decided[counter].append(record)
        start = previous + 1 if previous is not None else 0
        for offset, missed in enumerate(pending):
            decided[start + offset].append(missed)
    return decided, unmatched


class WireDelay:
    """The PTY hand-over delay at any moment, from the probe link: (arrival, delay) of every probe line."""

    NEAR_S = 0.05  # a probe this close to an event tells its delay

    def __init__(self, probe_log: Path | None) -> None:
        """`probe_log` None: no delay known (every `at` is 0)."""
        exists = probe_log is not None and probe_log.exists()
        rows = [line.split() for line in (probe_log.read_text().splitlines() if exists else [])]  # type: ignore[union-attr]
        samples = sorted((float(arrived), float(arrived) - float(sent)) for arrived, sent in rows)
        self.arrivals = [a for a, _ in samples]
        self.delays = [d for _, d in samples]

    def at(self, arrival: float) -> float:
        """The delay of the probe that arrived nearest to `arrival` (0 when none is near)."""
        index = bisect.bisect_left(self.arrivals, arrival)
        near = [i for i in (index - 1, index) if 0 <= i < len(self.arrivals)]
        best = min(near, key=lambda i: abs(self.arrivals[i] - arrival), default=None)
        if best is None or abs(self.arrivals[best] - arrival) > self.NEAR_S:
            return 0.0
        return max(0.0, self.delays[best])


def wire_pulses(wire_log: Path, cuts: list[float], delay: WireDelay) -> list[Interval]:
    """Relay ON intervals from `WALL ON|OFF` lines, each time less the wire's own delay then; an ON still open
    at a link cut (socat killed) ends there."""
    pulses: list[Interval] = []
    on_since: float | None = None
    cut_at = sorted(cuts)
    for line in wire_log.read_text().splitlines() if wire_log.exists() else []:
        stamp, _, command = line.partition(" ")
        now = float(stamp) - delay.at(float(stamp))
        if on_since is not None:
            cut = next((c for c in cut_at if on_since <= c < now), None)
            if cut is not None:
                pulses.append((on_since, cut))
                on_since = None
        if command == "ON" and on_since is None:
            on_since = now
        elif command == "OFF" and on_since is not None:
            pulses.append((on_since, now))
            on_since = None
    return pulses


def unhealthy_periods(heartbeat: list[tuple[float, bool]], alarm: list[tuple[float, bool]], silent_s: float,
                      end: float) -> list[Interval]:  # fmt: skip
    """When the PLC saw a fault: the heartbeat silent longer than `silent_s` (from its last write), or the alarm on."""
    periods: list[Interval] = []
    times = sorted(t for t, _ in heartbeat)
    for before, after in zip([float("-inf"), *times], [*times, end], strict=True):
        if after - before > silent_s:
            periods.append((before, after))
    on_since: float | None = None
    for stamp, value in sorted(alarm):
        if value and on_since is None:
            on_since = stamp
        elif not value and on_since is not None:
            periods.append((on_since, stamp))
            on_since = None
    if on_since is not None:
        periods.append((on_since, end))
    return sorted(periods)


class Timeline:
    """Intervals, queried fast: does any meet [low, high]?"""

    def __init__(self, intervals: list[Interval]) -> None:
        ordered = sorted(intervals)
        self.intervals = ordered
        self._starts = [start for start, _ in ordered]
        self._reach: list[float] = []  # latest stop among the intervals up to each index
        for _, stop in ordered:
            self._reach.append(max(stop, self._reach[-1]) if self._reach else stop)

    def meets(self, low: float, high: float) -> bool:
        index = bisect.bisect_right(self._starts, high) - 1
        return index >= 0 and self._reach[index] >= low

    def first_start_after(self, when: float) -> float | None:
        index = bisect.bisect_left(self._starts, when)
        return self._starts[index] if index < len(self._starts) else None
