"""The tables of a results document, rendered for the console (text) and for report.md (markdown)."""

from __future__ import annotations

from typing import Any

from lineside.export.bench.stages import LINE_ORDER

Table = tuple[str, list[str], list[list[str]]]  # title, headers, rows


def fmt(value: float | None, digits: int = 2) -> str:
    """A number with `digits` decimals, "-" for a missing one."""
    return "-" if value is None else f"{value:.{digits}f}"


def latency_table(doc: dict[str, Any]) -> Table:
    """Inference latency per variant (batch 1) and end-to-end latency (decode .. actuation)."""
    headers = ["variant", "mean ms", "p50", "p90", "p99", "max", "img/s", "x ORT FP32", "e2e p50", "e2e p99"]
    rows = []
    for row in doc["variants"]:
        lat, e2e = row["latency"], row["end_to_end"]
        rows.append(
            [row["name"]]
            + [fmt(lat[k]) for k in ("mean_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms")]
            + [fmt(lat["images_per_s"], 1), fmt(row["speedup_vs_ort_fp32"]), fmt(e2e["p50_ms"]), fmt(e2e["p99_ms"])]
        )
    return (
        "Latency per variant (ms, batch 1; e2e = decode + resize + inference + post + decision + actuation)",
        headers,
        rows,
    )


def stage_table(doc: dict[str, Any]) -> Table:
    """Per-stage latency: host stages once, inference per variant."""
    headers = ["stage", "mean ms", "p50", "p90", "p99", "max"]
    keys = ("mean_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms")
    rows = []
    for name in LINE_ORDER:
        stats = doc["stages"][name]
        if stats.get("in_graph"):
            rows.append([name, "in graph: part of inference", "", "", "", ""])
            rows += [[f"inference ({r['name']})"] + [fmt(r["latency"][k]) for k in keys] for r in doc["variants"]]
        else:
            rows.append([name] + [fmt(stats[k], 3) for k in keys])
    return "Latency per stage (ms)", headers, rows


def throughput_table(doc: dict[str, Any]) -> Table:
    """Images per second at each batch size; '-' where the graph has a static batch of 1."""
    sizes = doc["settings"]["batch_sizes"]
    headers = ["variant"] + [f"batch {s} img/s" for s in sizes]
    rows = []
    for row in doc["variants"]:
        measured = {t["batch"]: t["images_per_s"] for t in row["throughput"]}
        rows.append([row["name"]] + [fmt(measured.get(s), 1) for s in sizes])
    return "Throughput (images/s; '-' = static batch 1: export with --dynamic-batch)", headers, rows


def variant_extras(row: dict[str, Any]) -> tuple[dict, dict, dict, float | None]:
    """(accuracy, accuracy delta in points, memory, file size in MB) of a variant row; empty when not measured."""
    size = row["size_bytes"] / 1e6 if row["size_bytes"] else None
    return row["accuracy"] or {}, row["accuracy_delta_points"] or {}, row["memory"] or {}, size


def accuracy_table(doc: dict[str, Any]) -> Table:
    """Accuracy and its delta to FP32 (points), file size, peak memory per variant."""
    headers = [
        "variant",
        "I-AUROC",
        "P-AUROC",
        "AUPRO",
        "dI pts",
        "dP pts",
        "dPRO pts",
        "MB",
        "peak RSS MB",
        "model RSS MB",
    ]
    rows = []
    for row in doc["variants"]:
        acc, delta, memory, size = variant_extras(row)
        rows.append(
            [row["name"]]
            + [fmt(acc.get(m), 4) for m in ("image_auroc", "pixel_auroc", "aupro")]
            + [fmt(delta.get(m)) for m in ("image_auroc", "pixel_auroc", "aupro")]
            + [fmt(size, 2), fmt(memory.get("peak_rss_mb"), 0), fmt(memory.get("model_rss_mb"), 0)]
        )
    return "Accuracy (delta vs FP32 of the same backend, points), size and memory", headers, rows


def ratio_table(doc: dict[str, Any]) -> Table:
    """Speed-ups measured within this run."""
    rows = [[r["name"], fmt(r["speedup_mean"]), fmt(r["speedup_p50"])] for r in doc["ratios"]]
    return "Speed-up within this run (x faster)", ["ratio", "by mean", "by p50"], rows


def tables(doc: dict[str, Any]) -> list[Table]:
    """Every table of the report, in order."""
    return [latency_table(doc), stage_table(doc), throughput_table(doc), accuracy_table(doc), ratio_table(doc)]


def as_text(table: Table) -> str:
    """A fixed-width console table: first column left-aligned, the others right-aligned."""
    title, headers, rows = table
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [title]
    for cells in [headers, *rows]:
        lines.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        )
        if cells is headers:
            lines.append("-" * len(lines[-1]))
    return "\n".join(lines)


def as_markdown(table: Table) -> str:
    """A markdown table under a bold title."""
    title, headers, rows = table
    lines = [f"**{title}**", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def console(doc: dict[str, Any]) -> str:
    """Everything `lineside bench` prints: the tables, what was skipped and why, the conditions."""
    parts = [as_text(t) for t in tables(doc) if t[2]]
    parts += [f"skipped {s['what']}: {s['reason']}" for s in doc["skipped"]]
    parts.append(conditions(doc))
    return "\n\n".join(parts)


def conditions(doc: dict[str, Any]) -> str:
    """One line: rounds, threads, CPU, load."""
    machine, settings = doc["machine"], doc["settings"]
    return (
        f"{settings['runs']} interleaved rounds after {settings['warmup']} warm-up, {machine['threads']} threads, "
        f"{machine['cpu_model']} ({machine['usable_cpus']} usable CPUs), load average "
        f"{machine['load_average_start']} -> {machine['load_average_end']}; the whole run took {doc['duration_s']:.0f} s"
    )
