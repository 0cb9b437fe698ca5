"""Compare models, presets and precisions: one `lineside bench` run per model, one summary across them.

    python benchmarks/precisions.py --model crr=RUN_CRR --model rlr=RUN_RLR --data DATA --out OUT [--runs 100]
    python benchmarks/precisions.py --model crr=B_FP32,B_FP16,B_INT8,RUN_CRR/model.pt --data DATA --out OUT

NAME is free text, so presets compare the same way (`--model crr-tiny=RUN1 --model crr-edge=RUN2`).
A run alone is exported at each of --precisions first; a precision that export refuses (its accuracy
gate) is recorded with the reason and the others are benchmarked. Bundles plus the run's model.pt
time the bundles and torch eager. Per model, OUT/<name>/ gets results.json, the plots and report.md;
OUT/summary.md holds one table across models, with speed-ups taken within each model's own run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lineside.atomic import atomic_write_text
from lineside.bench_options import BenchOptions, parse_choices
from lineside.bundle import PRECISIONS
from lineside.errors import LinesideError
from lineside.export.bench.run import bench
from lineside.export.bench.tables import Table, as_markdown, conditions, console, fmt, variant_extras


def summary_table(docs: dict[str, dict[str, Any]]) -> Table:
    """One row per model x variant: latency, speed-up vs ORT FP32, accuracy and its delta, size, memory."""
    headers = ["model", "variant", "p50 ms", "p99 ms", "x ORT FP32", "I-AUROC", "dI pts", "P-AUROC", "AUPRO"]
    headers += ["MB", "peak RSS MB"]
    rows = []
    for model, doc in docs.items():
        for row in doc["variants"]:
            acc, delta, memory, size = variant_extras(row)
            rows.append(
                [model, row["name"], fmt(row["latency"]["p50_ms"], 1), fmt(row["latency"]["p99_ms"], 1)]
                + [fmt(row["speedup_vs_ort_fp32"]), fmt(acc.get("image_auroc"), 4), fmt(delta.get("image_auroc"))]
                + [fmt(acc.get("pixel_auroc"), 4), fmt(acc.get("aupro"), 4), fmt(size, 1)]
                + [fmt(memory.get("peak_rss_mb"), 0)]
            )
    return "Models and precisions (latency batch 1, inference only)", headers, rows


def summary_markdown(docs: dict[str, dict[str, Any]], failed: dict[str, str]) -> str:
    """summary.md: the cross-model table, each model's ratios, skips and conditions, and failures."""
    lines = ["# Precision benchmark summary", "", as_markdown(summary_table(docs)), ""]
    for model, doc in docs.items():
        lines.append(f"**{model}** ([report]({model}/report.md)): {conditions(doc)}")
        lines += [
            f"- {r['name']}: {r['speedup_mean']:.2f}x (mean), {r['speedup_p50']:.2f}x (p50)" for r in doc["ratios"]
        ]
        lines += [f"- skipped {s['what']}: {s['reason']}" for s in doc["skipped"]]
        lines.append("")
    lines += [f"**{model} failed**: {reason}" for model, reason in failed.items()]
    return "\n".join(lines).rstrip() + "\n"


def _targets(spec: str) -> tuple[str, list[Path]]:
    name, _, paths = spec.partition("=")
    if not name or not paths:
        raise LinesideError(f"--model takes NAME=RUN or NAME=BUNDLE[,BUNDLE...][,RUN/model.pt], got {spec!r}")
    return name, [Path(p) for p in paths.split(",") if p]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="NAME=RUN or NAME=BUNDLE,...[,RUN/model.pt]")
    parser.add_argument("--data", type=Path, required=True, help="data set: calibration and eval images")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="exported from a run (default: all)")
    parser.add_argument("--runs", type=int, default=100, help="timed interleaved rounds per model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-limit", type=int, help="at most this many test images per category")
    args = parser.parse_args(argv)
    docs: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    try:
        models = dict(map(_targets, args.model))
        precisions = parse_choices(args.precisions, PRECISIONS, "--precisions")
    except LinesideError as exc:
        print(f"precisions.py: error: {exc}", file=sys.stderr)
        return 2
    for name, targets in models.items():
        options = BenchOptions(
            precisions=precisions,
            report=args.out / name,
            data=args.data,
            runs=args.runs,
            threads=args.threads,
            eval_limit=args.eval_limit,
        )
        try:
            docs[name] = bench(targets, options, say=lambda m: print(m, file=sys.stderr))
        except LinesideError as exc:
            failed[name] = str(exc)
            print(f"precisions.py: {name}: {exc}", file=sys.stderr)
            continue
        print(f"== {name}\n{console(docs[name])}\n")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "summary.md", summary_markdown(docs, failed))
    print(f"summary: {args.out / 'summary.md'}")
    return 2 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
