"""The results.json document (schema `lineside-bench`, version 2; documented in docs/bench.md)."""

from __future__ import annotations

import time
from typing import Any

from lineside import __version__
from lineside.export.bench.stages import IN_GRAPH_NOTE
from lineside.export.bench.stats import latency_stats, speedup
from lineside.export.bench.variants import Variant

SCHEMA = "lineside-bench"
SCHEMA_VERSION = 2
METRICS: tuple[str, ...] = ("image_auroc", "pixel_auroc", "aupro")


def _throughput(variant: Variant, latency: dict[str, float]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [{"batch": 1, "images_per_s": latency["images_per_s"]}]
    for size, values in sorted(variant.batch_ms.items()):
        stats = latency_stats(values, images_per_call=size)
        rows.append({"batch": size, "images_per_s": stats.pop("images_per_s"), "batch_latency": stats})
    return rows


def variant_row(variant: Variant) -> dict[str, Any]:
    """One variant's measurements (latencies kept raw, for re-analysis)."""
    latency = latency_stats(variant.latencies_ms)
    return {
        "name": variant.name,
        "model": variant.model,
        "backend": variant.backend,
        "precision": variant.precision,
        "file": variant.spec.path,
        "size_bytes": variant.size_bytes,
        "dynamic_batch": variant.opened.dynamic_batch,
        "max_batch": variant.opened.max_batch,
        "latency": latency,
        "end_to_end": latency_stats(variant.end_to_end_ms),
        "throughput": _throughput(variant, latency),
        "memory": variant.memory,
        "accuracy": variant.accuracy,
        "latencies_ms": [round(v, 4) for v in variant.latencies_ms],
    }


def _find(rows: list[dict[str, Any]], backend: str, precision: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["backend"] == backend and r["precision"] == precision]


def add_comparisons(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Speed-up vs ORT FP32 and accuracy deltas vs FP32 on each row; the named ratios of this run."""
    ort_fp32 = next(iter(_find(rows, "ort", "fp32")), None)
    for row in rows:
        row["speedup_vs_ort_fp32"] = speedup(ort_fp32["latency"], row["latency"])["mean"] if ort_fp32 else None
        reference = next(iter(_find(rows, row["backend"], "fp32")), ort_fp32)
        if reference is None or not row["accuracy"] or not reference["accuracy"]:
            row["accuracy_reference"], row["accuracy_delta_points"] = None, None
            continue
        row["accuracy_reference"] = reference["name"]
        row["accuracy_delta_points"] = {
            m: 100.0 * (row["accuracy"][m] - reference["accuracy"][m]) for m in METRICS if m in row["accuracy"]
        }
    ratios = []
    pairs = [(_find(rows, "torch", "fp32"), _find(rows, "ort", "fp32"))]
    for backend in ("ort", "tensorrt"):
        for precision in ("int8", "fp16"):
            pairs.append((_find(rows, backend, "fp32"), _find(rows, backend, precision)))
    for baselines, candidates in pairs:
        for baseline in baselines:
            for candidate in candidates:
                ratio = speedup(baseline["latency"], candidate["latency"])
                ratios.append(
                    {
                        "name": f"{candidate['name']} vs {baseline['name']}",
                        "baseline": baseline["name"],
                        "candidate": candidate["name"],
                        "speedup_mean": ratio["mean"],
                        "speedup_p50": ratio["p50"],
                    }
                )
    return ratios


def stage_summary(times_ms: dict[str, list[float]]) -> dict[str, Any]:
    """Latency statistics per host stage; pre-processing is marked as part of the graph."""
    summary: dict[str, Any] = {"preprocess": {"in_graph": True, "note": IN_GRAPH_NOTE}}
    for name, values in times_ms.items():
        summary[name] = latency_stats(values)
        summary[name].pop("images_per_s")
    return summary


def document(
    variants: list[Variant],
    stage_times: dict[str, list[float]],
    machine: dict[str, Any],
    settings: dict[str, Any],
    skipped: list[dict[str, str]],
    eval_set: dict[str, Any] | None,
    command: list[str],
    started: float,
) -> dict[str, Any]:
    """Assemble results.json; `started` is the run's `time.monotonic()` at its start."""
    rows = [variant_row(v) for v in variants]
    ratios = add_comparisons(rows)
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "lineside_version": __version__,
        "command": command,
        "duration_s": round(time.monotonic() - started, 1),
        "machine": machine,
        "settings": settings,
        "eval_set": eval_set,
        "stages": stage_summary(stage_times),
        "variants": rows,
        "ratios": ratios,
        "skipped": skipped,
    }
