"""Numbers from timings: latency percentiles, speed-up ratios within one run, and what the machine was."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from lineside.errors import LinesideError

# module -> distributions that may provide it (first installed one wins)
LIBRARIES: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "torch": ("torch",),
    "numpy": ("numpy",),
    "cv2": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
    "tensorrt": ("tensorrt",),
    "tensorrt_rtx_bindings": ("tensorrt-rtx-cu13-bindings",),
}

NAMES = {"cv2": "opencv", "tensorrt_rtx_bindings": "tensorrt_rtx"}


def latency_stats(latencies_ms: list[float], images_per_call: int = 1) -> dict[str, float]:
    """mean, p50, p90, p99, max (ms per call) and images per second."""
    values = np.asarray(latencies_ms, dtype=np.float64)
    if values.size == 0:
        raise LinesideError("no timed runs: --runs must be at least 1")
    stats = {"mean_ms": float(values.mean()), "max_ms": float(values.max())}
    for q in (50, 90, 99):
        stats[f"p{q}_ms"] = float(np.percentile(values, q))
    stats["images_per_s"] = 1000.0 * images_per_call / stats["mean_ms"]
    return stats


def speedup(baseline: dict[str, float], candidate: dict[str, float]) -> dict[str, float]:
    """How many times faster `candidate` is than `baseline`, by mean and by median latency."""
    return {
        "mean": baseline["mean_ms"] / candidate["mean_ms"],
        "p50": baseline["p50_ms"] / candidate["p50_ms"],
    }


def cpu_model() -> str:
    """The CPU (and on a Jetson the board) as the OS names it."""
    board = Path("/proc/device-tree/model")
    names = [board.read_text(errors="replace").strip("\x00\n ")] if board.is_file() else []
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                names.append(value.strip())
                break
    return " / ".join(names) or platform.processor() or platform.machine()


def library_versions() -> dict[str, str | None]:
    """Versions of the numeric libraries (None when not installed), without importing them."""
    versions: dict[str, str | None] = {}
    for module, distributions in LIBRARIES.items():
        loaded = sys.modules.get(module)
        version = getattr(loaded, "__version__", None) if loaded is not None else None
        for distribution in distributions if version is None else ():
            try:
                version = importlib.metadata.version(distribution)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        versions[NAMES.get(module, module)] = version
    return versions


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the OS has none)."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_info(threads: int) -> dict[str, Any]:
    """What the numbers were measured on; `load_average_end` is added when the run ends."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "threads": threads,
        "versions": library_versions(),
        "load_average_start": load_average(),
    }
