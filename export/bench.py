"""Side-by-side latency and accuracy of a model's variants (ORT FP32 / FP16 / INT8, torch eager).

All variants are timed in ONE interleaved loop (round r runs every variant once), so a busy
machine slows them alike and the ratios stay meaningful. Accuracy comes from the same eval set
for every variant.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lineside.errors import LinesideError

SCHEMA = "lineside-bench/1"
Runner = Callable[[np.ndarray], Any]  # (1, H, W, 3) uint8 -> outputs


@dataclass
class Variant:
    """One thing to time: a name, a batch-1 runner, and (optionally) its accuracy."""

    name: str
    backend: str
    precision: str
    run: Runner
    file: str | None = None
    size_bytes: int | None = None
    latencies_ms: list[float] = field(default_factory=list)
    accuracy: dict[str, Any] | None = None


def ort_variant(name: str, precision: str, path: Path, threads: int) -> Variant:
    """An ONNX Runtime CPU session as a variant."""
    from lineside.export.ort_run import cpu_session

    session = cpu_session(path, threads=threads)
    input_name = session.get_inputs()[0].name
    return Variant(
        name,
        "onnxruntime-cpu",
        precision,
        lambda image: session.run(None, {input_name: image}),
        file=str(path),
        size_bytes=path.stat().st_size,
    )


def torch_variant(fused: Any, threads: int) -> Variant:
    """The fused torch module in eager mode as a variant."""
    import torch

    torch.set_num_threads(threads)

    def run(image: np.ndarray) -> Any:
        with torch.no_grad():
            return fused(torch.from_numpy(image))

    return Variant("torch eager fp32", "torch-cpu", "fp32", run)


def time_interleaved(variants: list[Variant], image: np.ndarray, runs: int, warmup: int) -> None:
    """Warm every variant up, then time `runs` rounds, each running every variant once."""
    from tqdm import tqdm

    batch = np.ascontiguousarray(image[None])  # (1, H, W, 3) uint8
    for variant in variants:
        for _ in range(warmup):
            variant.run(batch)
    for _ in tqdm(range(runs), desc="bench", unit="round", leave=False):
        for variant in variants:
            start = time.perf_counter()
            variant.run(batch)
            variant.latencies_ms.append((time.perf_counter() - start) * 1000.0)


def latency_stats(latencies_ms: list[float]) -> dict[str, float]:
    """mean, p50, p90, p99, max (ms) and images per second at batch 1."""
    values = np.asarray(latencies_ms, dtype=np.float64)
    if values.size == 0:
        raise LinesideError("no timed runs: --runs must be at least 1")
    stats = {"mean_ms": float(values.mean()), "max_ms": float(values.max())}
    for q in (50, 90, 99):
        stats[f"p{q}_ms"] = float(np.percentile(values, q))
    stats["images_per_s"] = 1000.0 / stats["mean_ms"]
    return stats


def machine_info(threads: int) -> dict[str, Any]:
    """What the numbers were measured on."""
    import onnxruntime

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "threads": threads,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


def results(variants: list[Variant], threads: int, runs: int, warmup: int, input_size: tuple[int, int]) -> dict:
    """The results.json document: per variant latency, accuracy, size; ratios vs ORT FP32 within this run."""
    rows: list[dict[str, Any]] = []
    for variant in variants:
        rows.append(
            {
                "name": variant.name,
                "backend": variant.backend,
                "precision": variant.precision,
                "file": variant.file,
                "size_bytes": variant.size_bytes,
                "latency": latency_stats(variant.latencies_ms),
                "accuracy": variant.accuracy,
                "latencies_ms": [round(v, 4) for v in variant.latencies_ms],
            }
        )
    reference = next((r for r in rows if r["backend"] == "onnxruntime-cpu" and r["precision"] == "fp32"), None)
    for row in rows:
        if reference is not None:
            row["speedup_vs_ort_fp32"] = reference["latency"]["mean_ms"] / row["latency"]["mean_ms"]
            ref_acc, acc = reference["accuracy"], row["accuracy"]
            if ref_acc and acc:
                row["image_auroc_drop_points"] = 100.0 * (ref_acc["image_auroc"] - acc["image_auroc"])
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(threads),
        "runs": runs,
        "warmup": warmup,
        "input_size": list(input_size),
        "variants": rows,
    }


def table(doc: dict[str, Any]) -> str:
    """The console table of a results document."""
    header = f"{'variant':<26}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'img/s':>8}{'x fp32':>8}{'I-AUROC':>9}{'drop':>7}{'MB':>7}"
    lines = [header, "-" * len(header)]
    for row in doc["variants"]:
        lat, acc = row["latency"], row["accuracy"] or {}
        auroc = f"{acc['image_auroc']:.4f}" if "image_auroc" in acc else "-"
        drop = f"{row['image_auroc_drop_points']:.2f}" if "image_auroc_drop_points" in row else "-"
        size = f"{row['size_bytes'] / 1e6:.1f}" if row["size_bytes"] else "-"
        speed = f"{row['speedup_vs_ort_fp32']:.2f}" if "speedup_vs_ort_fp32" in row else "-"
        lines.append(
            f"{row['name']:<26}{lat['p50_ms']:>9.2f}{lat['p90_ms']:>9.2f}{lat['p99_ms']:>9.2f}"
            f"{lat['images_per_s']:>8.1f}{speed:>8}{auroc:>9}{drop:>7}{size:>7}"
        )
    machine = doc["machine"]
    lines.append(f"{doc['runs']} interleaved rounds, {machine['threads']} threads, load {machine['load_average']}")
    return "\n".join(lines)
