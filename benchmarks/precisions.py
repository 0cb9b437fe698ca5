"""Compare precisions for several trained runs: export FP32/FP16/INT8, then time and score them side by side.

    python benchmarks/precisions.py --run crr=RUN_CRR --run rlr=RUN_RLR --data DATA --out OUT [--runs 100]

Per model, OUT/<name>/ gets the bundles, results.json, latency.png and accuracy_latency.png
(`lineside bench RUN --data DATA --report OUT/<name>` does the work); OUT/summary.md holds one
markdown table for all models, with speed-ups computed within each model's single interleaved run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lineside.atomic import atomic_write_text
from lineside.errors import LinesideError
from lineside.export.bench import table
from lineside.export.bench_run import BenchOptions, bench


def summary_markdown(docs: dict[str, dict]) -> str:
    """One markdown table: model, variant, latency percentiles, speed-up vs ORT FP32, accuracy and drop."""
    lines = [
        "| model | variant | p50 ms | p90 ms | p99 ms | x ORT FP32 | I-AUROC | drop (pts) | P-AUROC | AUPRO | MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, doc in docs.items():
        for row in doc["variants"]:
            lat, acc = row["latency"], row["accuracy"] or {}
            size = f"{row['size_bytes'] / 1e6:.1f}" if row["size_bytes"] else "-"
            lines.append(
                f"| {model} | {row['name']} | {lat['p50_ms']:.1f} | {lat['p90_ms']:.1f} | {lat['p99_ms']:.1f} "
                f"| {row.get('speedup_vs_ort_fp32', float('nan')):.2f} | {acc.get('image_auroc', float('nan')):.4f} "
                f"| {row.get('image_auroc_drop_points', float('nan')):.2f} | {acc.get('pixel_auroc', float('nan')):.4f} "
                f"| {acc.get('aupro', float('nan')):.4f} | {size} |"
            )
    machine = next(iter(docs.values()))["machine"]
    lines.append("")
    lines.append(
        f"Machine: {machine['processor']}, {machine['threads']} threads, ONNX Runtime {machine['onnxruntime']}."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, help="NAME=RUN_FOLDER (repeat per model)")
    parser.add_argument("--data", type=Path, required=True, help="data set: calibration and eval images")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--runs", type=int, default=100, help="timed interleaved rounds per model")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    docs = {}
    try:
        for spec in args.run:
            name, _, run = spec.partition("=")
            if not run:
                raise LinesideError(f"--run takes NAME=RUN_FOLDER, got {spec!r}")
            options = BenchOptions(report=args.out / name, data=args.data, runs=args.runs, threads=args.threads)
            docs[name] = bench([Path(run)], options)
            print(f"== {name}\n{table(docs[name])}")
    except LinesideError as exc:
        print(f"precisions.py: error: {exc}", file=sys.stderr)
        return 2
    atomic_write_text(args.out / "summary.md", summary_markdown(docs))
    print(f"summary: {args.out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
