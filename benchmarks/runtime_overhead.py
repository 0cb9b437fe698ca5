"""Runtime overhead per frame: replay synthetic parts through `lineside run` at the highest rate the CPU
sustains and measure everything but inference (capture hand-off, resize, decision, fail-safe bookkeeping,
results log), p50/p99, and check every part got exactly one logged decision.

    python benchmarks/runtime_overhead.py --bundle BUNDLE [--frames 600] [--frame-size 480x640] [--out DIR]

Writes DIR/runtime_overhead.json and DIR/runtime_overhead.md (a table) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from lineside.atomic import atomic_write_json, atomic_write_text
from lineside.bundle import load_bundle
from lineside.runtime.ejector import EjectorConfig
from lineside.runtime.runner import RunOptions, run_line
from lineside.runtime.sources.capture import CaptureConfig

STAGES = ("capture", "queue", "preprocess", "infer", "total")
TARGET_P99_MS = 5.0


def synthetic_parts(folder: Path, frames: int, size: tuple[int, int], seed: int = 0) -> list[bool]:
    """Write `frames` camera-sized PNGs of grey parts, every 7th with a bright defect; returns the defect flags."""
    rng = np.random.default_rng(seed)
    height, width = size
    defects = [i % 7 == 3 for i in range(frames)]
    folder.mkdir(parents=True, exist_ok=True)
    for index in tqdm(range(frames), desc="render parts", unit="part", leave=False):
        image = rng.integers(10, 30, (height, width, 3), dtype=np.uint8)
        centre = (width // 2 + int(rng.integers(-20, 21)), height // 2 + int(rng.integers(-20, 21)))
        cv2.circle(image, centre, min(height, width) // 3, (105, 110, 115), -1)
        if defects[index]:
            cv2.circle(image, (centre[0] + 15, centre[1] - 10), max(4, min(height, width) // 20), (250, 250, 250), -1)
        cv2.imwrite(str(folder / f"part{index:05d}.png"), image)
    return defects


def stage_percentiles(records: list[dict]) -> dict[str, dict[str, float]]:
    """p50/p99 per logged latency stage, over inspected parts."""
    inspected = [r["latency_ms"] for r in records if "infer" in r["latency_ms"]]
    table = {}
    for stage in STAGES:
        values = np.array([lat[stage] for lat in inspected])
        table[stage] = {
            "p50": round(float(np.percentile(values, 50)), 3),
            "p99": round(float(np.percentile(values, 99)), 3),
        }
    return table


def _met(p99: float) -> str:
    return "met" if p99 < TARGET_P99_MS else "NOT met"


def markdown(result: dict) -> str:
    """The results as a Markdown table."""
    rows = [
        "| stage | p50 ms | p99 ms |",
        "|---|---:|---:|",
        *(f"| {s} | {v['p50']:.3f} | {v['p99']:.3f} |" for s, v in result["stages_ms"].items()),
        f"| **runtime overhead, wall** (all but inference and queue wait) | **{result['overhead_ms']['p50']:.3f}** "
        f"| **{result['overhead_ms']['p99']:.3f}** |",
        f"| **runtime overhead, CPU time** | **{result['overhead_cpu_ms']['p50']:.3f}** "
        f"| **{result['overhead_cpu_ms']['p99']:.3f}** |",
    ]
    head = (
        f"Replay of {result['frames']} parts ({result['frame_size']}) with {result['model']} "
        f"({result['precision']}, {result['backend']}, {result['threads']} threads) at {result['fps']:.1f} parts/s; "
        f"decisions logged: {result['decisions']} ({'exactly one per part' if result['one_decision_per_part'] else 'MISMATCH'}); "
        f"overhead p99 target < {TARGET_P99_MS} ms: wall {_met(result['overhead_ms']['p99'])}, "
        f"CPU {_met(result['overhead_cpu_ms']['p99'])}. Machine: {result['machine']}, {result['cpus']} CPUs, "
        f"load average during the run {result['load_average']:.1f}."
    )
    return head + "\n\n" + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="bundle to run (e.g. the edge INT8 export)")
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--frame-size", default="480x640", help="HEIGHTxWIDTH of the replayed camera frames")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    parser.add_argument("--threshold", type=float, help="override the bundle's threshold")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.frame_size.lower().split("x"))
    bundle = load_bundle(args.bundle)
    with tempfile.TemporaryDirectory(prefix="lineside-overhead-") as tmp:
        folder = Path(tmp) / "frames"
        synthetic_parts(folder, args.frames, (height, width))
        log = Path(tmp) / "results.jsonl"
        start = time.perf_counter()
        summary = run_line(
            RunOptions(
                bundle=args.bundle, source=str(folder), log_path=log, threshold=args.threshold, threads=args.threads,
                backend="ort", capture=CaptureConfig(), ejector=EjectorConfig(timeout_s=5.0), status=False,
            )
        )  # fmt: skip
        elapsed = time.perf_counter() - start
        records = [r for r in map(json.loads, log.read_text().splitlines()) if r["type"] == "part"]
    ids = sorted(r["part_id"] for r in records if r["type"] == "part")
    result = {
        "model": bundle.manifest.model,
        "precision": bundle.manifest.precision,
        "cpu_model_file": bundle.manifest.cpu_model_file,
        "input_size": list(bundle.manifest.input_size),
        "frame_size": f"{height}x{width}",
        "backend": summary["backend"],
        "threads": args.threads,
        "frames": args.frames,
        "decisions": len(ids),
        "one_decision_per_part": ids == list(range(args.frames)),
        "verdicts": summary["verdicts"],
        "fps": round(args.frames / elapsed, 2),
        "stages_ms": stage_percentiles(records),
        "overhead_ms": summary["overhead_ms"],
        "overhead_cpu_ms": summary["overhead_cpu_ms"],
        "machine": f"{platform.machine()} {platform.processor() or platform.platform()}",
        "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "runtime_overhead.json", result)
    table = markdown(result)
    atomic_write_text(args.out / "runtime_overhead.md", table)
    sys.stdout.write(table)
    return 0 if result["one_decision_per_part"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
