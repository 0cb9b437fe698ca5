"""The soak's figures: every physical part against what the line logged, put on the wire and signalled."""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass
from statistics import median
from typing import Any

import numpy as np

from soak.observe import Timeline, WireDelay, assign, read_log, runs_of, unhealthy_periods, wire_pulses
from soak.orchestrate import Outcome, Settings, Window
from soak.parts import Catalogue
from soak.plan import Plan
from soak.plc import ALARM_COIL, COUNTS_PER_S, HEARTBEAT_COIL

WIRE_EARLY_S = 0.005  # a wire stamp is never earlier than the write; this allows for clock rounding
WIRE_SLACK_S = 0.05  # plus the largest delay the probe saw: how late a written pulse may reach the wire reader
ATTRIBUTION_S = (1.0, 5.0)  # a part within 1 s before to 5 s after a fault is counted against that fault
LISTED = 20  # ids listed per must-be-zero counter


@dataclass(frozen=True)
class Truth:
    """Which catalogue image each part is."""

    catalogue: Catalogue
    sequence: list[int]

    def defect(self, part: int) -> bool:
        return self.catalogue.defect[self.sequence[part]]

    def clean(self, part: int) -> str:
        return self.catalogue.clean_verdict(self.sequence[part]).value


def error_cause(record: dict[str, Any]) -> str:
    """A short name for why a part got ERROR."""
    if record.get("cause"):
        return str(record["cause"])
    reason = (record.get("reason") or "").lower()
    for start, name in (("bad frame", "bad_frame"), ("timeout", "timeout"), ("dropped", "queue_full"),
                        ("missed", "source_down"), ("aborted", "aborted"), ("internal", "internal_error")):  # fmt: skip
        if reason.startswith(start):
            return name
    return "backend_error"


def camera_windows(plan: Plan, camera: dict[int, tuple[float, str]]) -> list[Window]:
    """The faults the camera applied, at the time it imaged their part."""
    windows = []
    for fault in plan.faults:
        if fault.duration_s == 0 and fault.part in camera:
            wall = camera[fault.part][0]
            windows.append(Window(fault.kind, fault.part, wall, wall))
    return windows


def attribute(wall: float, windows: list[Window]) -> str:
    """The fault a part at `wall` is counted against ('none' when no fault was near)."""
    before, after = ATTRIBUTION_S
    near = [w for w in windows if w.start - before <= wall <= w.end + after]
    return min(near, key=lambda w: abs(wall - w.start)).kind if near else "none"


class Analysis:
    """Walks every part once; `result()` is the report's dict."""

    def __init__(self, outcome: Outcome, settings: Settings, plan: Plan, truth: Truth, tolerance_s: float) -> None:
        self.outcome, self.settings, self.plan, self.truth, self.tol = outcome, settings, plan, truth, tolerance_s
        self.records, self.torn = read_log(outcome.results_log)
        self.decided, self.unmatched = assign(runs_of(self.records))
        self.windows = sorted([*outcome.windows, *camera_windows(plan, outcome.camera)], key=lambda w: w.start)
        cuts = [w.start for w in outcome.windows if w.kind == "serial_loss"]
        self.wire_delay = WireDelay(outcome.probe_log)
        self.pulses = Timeline(wire_pulses(outcome.wire_log, cuts, self.wire_delay))
        self.raw_pulses = Timeline(wire_pulses(outcome.wire_log, cuts, WireDelay(None)))
        self.count_offsets = self._count_offsets()
        self.wire_slack = max(self.wire_delay.delays, default=0.0) + WIRE_SLACK_S
        end = max([w for w, _ in outcome.camera.values()] + [0.0]) + 60.0
        beats, alarm = outcome.coils[HEARTBEAT_COIL], outcome.coils[ALARM_COIL]
        self.unhealthy = Timeline(unhealthy_periods(beats, alarm, 3 * settings.heartbeat_ms / 1000, end))
        self.beat_times = sorted(t for t, _ in beats)

    def _count_offsets(self) -> dict[Any, float]:
        """Per run with --encoder: the PLC's belt count minus the runtime's (which starts at 0 on its first read),
        the median over its parts of (PLC count at the capture time) - (eject_count - delay counts)."""
        delay_counts = self.settings.delay_ms / 1000 * COUNTS_PER_S
        gaps: dict[Any, list[float]] = {}
        for record in self.records:
            if record.get("type") == "part" and record.get("eject_count") is not None:
                plc = (record["capture_time"] - self.outcome.count_zero_wall) * COUNTS_PER_S
                gaps.setdefault(record.get("run_id"), []).append(plc - (record["eject_count"] - delay_counts))
        return {run: float(np.median(values)) for run, values in gaps.items()}

    def eject_wall(self, record: dict[str, Any]) -> float | None:
        """When the runtime says it switched the reject output on for this part (time.time())."""
        if record.get("eject_time") is not None:
            return float(record["eject_time"])
        if record.get("eject_count") is None:
            return None
        count = record["eject_count"] + self.count_offsets.get(record.get("run_id"), 0.0)
        return self.outcome.count_zero_wall + count / COUNTS_PER_S

    def _ejected(self, records: list[dict[str, Any]], arrival: float, tally: dict[str, list], part: int) -> bool:
        """A pulse on the wire in the part's window (less the wire's own delay), or a claimed eject on time that
        the wire shows was written; claims the wire does not show, or that miss the part, are tallied."""
        confirmed = self.pulses.meets(arrival - self.tol, arrival + self.tol)
        for record in (r for r in records if r.get("eject") == "ejected"):
            when = self.eject_wall(record)
            if when is None:
                continue
            written = (self.raw_pulses.first_start_after(when - WIRE_EARLY_S) or float("inf")) <= when + self.wire_slack
            if not written:
                tally["claimed_not_on_wire"].append(part)
            if abs(when - arrival) > self.tol:
                tally["claimed_off_time"].append(part)
            confirmed = confirmed or (written and abs(when - arrival) <= self.tol)
        return confirmed

    def _part(self, part: int, tally: dict[str, list]) -> None:
        wall, _status = self.outcome.camera.get(part, (float("nan"), "never"))
        records = self.decided.get(part, [])
        verdicts = {r["verdict"] for r in records}
        arrival = wall + self.settings.delay_ms / 1000
        ejected = self._ejected(records, arrival, tally, part)
        # a reject write lost with its link is known to have failed when the pulse's OFF write fails: an alarm
        # up to the end of the part's pulse covers it
        covered = self.unhealthy.meets(wall, arrival + self.tol + self.settings.pulse_ms / 1000)
        if records and records[0].get("counter") == part and _status == "sent":
            tally["capture_lag"].append((records[0]["capture_time"] - wall) * 1000)
        if not records:
            tally["without"].append(part)
            if covered:
                tally["without_covered"].append(part)
        if len(records) > 1:
            tally["duplicates"].append(part)
        clean = self.truth.clean(part)
        if any(r["verdict"] != "ERROR" and r["verdict"] != clean for r in records):
            tally["mismatch"].append(part)
        if self.truth.defect(part):
            tally["defects"].append(part)
            if clean == "PASS" and verdicts == {"PASS"}:
                tally["model_misses"].append(part)
            elif ejected:
                tally["defects_ejected"].append(part)
                start = self.pulses.first_start_after(arrival - self.tol)
                tally["offsets"].append(((start or arrival) - arrival) * 1000)
            elif covered:
                tally["defects_covered"].append(part)
            else:
                tally["shipped"].append(part)
        elif clean == "PASS" and "ERROR" in verdicts:
            cause = error_cause(next(r for r in records if r["verdict"] == "ERROR"))
            tally["false_rejects"].append((part, cause, attribute(wall, self.windows)))

    def recovery(self, window: Window, inspected: list[tuple[float, float]]) -> float | None:
        """Seconds from the end of a fault until the line decides inspected parts again and the PLC sees it healthy."""
        index = bisect.bisect_left(inspected, (window.end, float("-inf")))
        if index >= len(inspected):
            return None
        back = [inspected[index][1]]
        beat = bisect.bisect_left(self.beat_times, max(back[0], window.end))
        if beat >= len(self.beat_times):
            return None
        back.append(self.beat_times[beat])
        if window.kind == "serial_loss":
            back.append(self.pulses.first_start_after(window.end) or back[-1])
        back.extend(window.seen.values())
        return max(back) - window.end

    def result(self) -> dict[str, Any]:
        tally: dict[str, list] = {k: [] for k in ("without", "without_covered", "capture_lag", "claimed_off_time", "duplicates", "mismatch", "claimed_not_on_wire", "defects",
                                                  "model_misses", "defects_ejected", "offsets", "defects_covered",
                                                  "shipped", "false_rejects")}  # fmt: skip
        for part in range(self.plan.parts):
            self._part(part, tally)
        parts = [r for r in self.records if r.get("type") == "part"]
        inspected = sorted((r["capture_time"], r["decision_time"]) for r in parts if r["verdict"] != "ERROR")
        recovery: dict[str, list[float]] = {}
        for window in self.windows:
            seconds = self.recovery(window, inspected)
            if seconds is not None:
                recovery.setdefault(window.kind, []).append(seconds)
        return summarize(self, tally, parts, recovery)


def _stats(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "median": round(median(values), 3), "max": round(max(values), 3)}


def summarize(analysis: Analysis, tally: dict[str, list], parts: list[dict], recovery: dict[str, list[float]]) -> dict:
    """The report's dict (the must-be-zero counters first)."""
    camera = analysis.outcome.camera
    offsets = np.array(tally["offsets"] or [np.nan])
    lag = np.array(tally["capture_lag"] or [np.nan])
    wire = np.array(analysis.wire_delay.delays or [np.nan]) * 1000
    false_rejects = tally["false_rejects"]
    return {
        "parts": analysis.plan.parts,
        "parts_without_decision": len(tally["without"]),
        "defects_shipped_silently": len(tally["shipped"]),
        "torn_log_lines": analysis.torn,
        "false_rejects_from_faults": len(false_rejects),
        "recovery_s": {kind: _stats(values) for kind, values in sorted(recovery.items())},
        "parts_seen": dict(Counter(status for _, status in camera.values())),
        "decisions_logged": len(parts),
        "parts_without_decision_covered_by_alarm": len(tally["without_covered"]),
        "duplicate_decisions": len(tally["duplicates"]),
        "decisions_matching_no_part": analysis.unmatched,
        "verdicts": dict(Counter(r["verdict"] for r in parts)),
        "error_causes": dict(Counter(error_cause(r) for r in parts if r["verdict"] == "ERROR")),
        "eject_outcomes": dict(Counter(str(r.get("eject")) for r in parts)),
        "ejects_claimed_not_on_wire": len(tally["claimed_not_on_wire"]),
        "ejects_claimed_off_the_part": len(tally["claimed_off_time"]),
        "inspected_verdict_differs_from_clean": len(tally["mismatch"]),
        "defects": len(tally["defects"]),
        "defects_ejected_on_wire": len(tally["defects_ejected"]),
        "defects_covered_by_alarm": len(tally["defects_covered"]),
        "model_misses": len(tally["model_misses"]),
        "false_rejects_by_cause": dict(Counter(cause for _, cause, _ in false_rejects)),
        "false_rejects_by_fault": dict(Counter(fault for _, _, fault in false_rejects)),
        "pulse_offset_ms": {q: round(float(np.nanpercentile(offsets, p)), 1) for q, p in (("p50", 50), ("p99", 99))},
        "capture_lag_ms": {q: round(float(np.nanpercentile(lag, p)), 1) for q, p in (("p50", 50), ("p99", 99))},
        "wire_delay_ms": {
            q: round(float(np.nanpercentile(wire, p)), 1) for q, p in (("p50", 50), ("p99", 99), ("max", 100))
        },
        "unhealthy_periods": len(analysis.unhealthy.intervals),
        "faults": dict(Counter(w.kind for w in analysis.windows)),
        "listed": {
            name: tally[key][:LISTED]
            for name, key in (
                ("parts_without_decision", "without"),
                ("defects_shipped_silently", "shipped"),
                ("duplicate_decisions", "duplicates"),
                ("ejects_claimed_not_on_wire", "claimed_not_on_wire"),
                ("ejects_claimed_off_the_part", "claimed_off_time"),
            )
        },  # fmt: skip
    }
