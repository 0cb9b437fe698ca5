"""The soak's Markdown table."""

from __future__ import annotations

from typing import Any

MUST_BE_ZERO = ("parts_without_decision", "defects_shipped_silently", "torn_log_lines")


def passed(result: dict[str, Any]) -> bool:
    """Every must-be-zero counter is zero."""
    return all(result[key] == 0 for key in MUST_BE_ZERO)


def markdown(result: dict[str, Any]) -> str:
    """Counters, per-fault recovery, and the run's settings."""
    s = result["settings"]
    head = (
        f"Fault soak: {result['parts']} parts at {s['rate']:g} parts/s through `lineside run` ({result['model']}, "
        f"{result['precision']}, ORT {s['threads']} thread(s)), {len(result['segments'])} runtime processes, "
        f"delay {s['delay_ms']:g} ms, pulse {s['pulse_ms']:g} ms, stall watchdog {s['stall_s']:g} s, heartbeat "
        f"{s['heartbeat_ms']:g} ms, eject window +-{s['tolerance_ms']:g} ms, seed {s['seed']}. "
        f"Wall time {result['wall_s']:.0f} s on {result['machine']} ({result['cpus']} CPUs). "
        f"Verdict: {'PASS' if passed(result) else 'FAIL'} (must-be-zero counters)."
    )
    rows = ["| counter | value |", "|---|---:|"]
    for key in (*MUST_BE_ZERO, "false_rejects_from_faults", "parts_without_decision_covered_by_alarm", "decisions_logged", "duplicate_decisions",
                "decisions_matching_no_part", "defects", "defects_ejected_on_wire", "defects_covered_by_alarm",
                "model_misses", "ejects_claimed_not_on_wire", "ejects_claimed_off_the_part", "inspected_verdict_differs_from_clean",
                "unhealthy_periods"):  # fmt: skip
        mark = " (must be 0)" if key in MUST_BE_ZERO else ""
        rows.append(f"| {key}{mark} | {result[key]} |")
    for key in ("parts_seen", "verdicts", "error_causes", "eject_outcomes", "false_rejects_by_cause",
                "false_rejects_by_fault", "pulse_offset_ms", "capture_lag_ms", "wire_delay_ms"):  # fmt: skip
        text = ", ".join(f"{k} {v}" for k, v in sorted(result[key].items())) or "-"
        rows.append(f"| {key} | {text} |")
    faults = ["", "| fault | injected | recovery median s | recovery max s |", "|---|---:|---:|---:|"]
    for kind, count in sorted(result["faults"].items()):
        stats = result["recovery_s"].get(kind)
        median_s, max_s = (f"{stats['median']:.3f}", f"{stats['max']:.3f}") if stats else ("-", "-")
        faults.append(f"| {kind} | {count} | {median_s} | {max_s} |")
    exits = ", ".join(f"{seg['index']}{' (encoder)' if seg['encoder'] else ''}: exit {seg['exit_code']}"
                      f"{' CRASHED' if seg['crashed'] else ''}" for seg in result["segments"])  # fmt: skip
    return head + "\n\n" + "\n".join(rows + faults) + f"\n\nRuntime processes: {exits}.\n"
