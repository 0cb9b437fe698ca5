"""`lineside bench`: latency and accuracy per precision, side by side in one run."""

from __future__ import annotations

import argparse
from pathlib import Path

from lineside.bundle import PRECISIONS
from lineside.errors import LinesideError, missing_extra

HELP = "Benchmark latency and accuracy per precision (ORT CPU, torch eager for a run), side by side."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside bench`."""
    parser.add_argument(
        "targets", nargs="+", type=Path, help="bundle folder(s) of one model, or one run folder / model.pt"
    )
    parser.add_argument(
        "--precisions", default=",".join(PRECISIONS), help="comma-separated subset of fp32,fp16,int8 (default: all)"
    )
    parser.add_argument("--report", type=Path, help="folder for results.json and plots (default: print only)")
    parser.add_argument("--data", type=Path, help="data set whose test split measures accuracy per precision")
    parser.add_argument("--runs", type=int, default=100, help="timed rounds; each runs every variant once (100)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs per variant first (5)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per backend (2)")
    parser.add_argument("--eval-limit", type=int, help="at most this many test images per category")


def parse_precisions(text: str) -> tuple[str, ...]:
    """'fp32,int8' -> ('fp32', 'int8'); LinesideError on anything else."""
    chosen = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in chosen if p not in PRECISIONS]
    if unknown or not chosen:
        raise LinesideError(f"--precisions takes a comma-separated subset of {','.join(PRECISIONS)}, got {text!r}")
    return chosen


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside bench`."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise missing_extra("onnxruntime", "export") from exc
    from lineside.export.bench import table
    from lineside.export.bench_run import BenchOptions, bench

    for target in args.targets:
        if not target.exists():
            raise LinesideError(f"{target} not found: pass bundle folders or a run folder (RUN/model.pt)")
    for flag, value in (("--runs", args.runs), ("--threads", args.threads), ("--eval-limit", args.eval_limit)):
        if value is not None and value < 1:
            raise LinesideError(f"{flag} must be at least 1, got {value}")
    if args.warmup < 0:
        raise LinesideError(f"--warmup must be >= 0, got {args.warmup}")
    options = BenchOptions(
        precisions=parse_precisions(args.precisions),
        report=args.report,
        data=args.data,
        runs=args.runs,
        warmup=args.warmup,
        threads=args.threads,
        eval_limit=args.eval_limit,
    )
    print(table(bench(list(args.targets), options)))
    if args.report is not None:
        print(f"results: {args.report / 'results.json'}, plots: {args.report / 'latency.png'}")
    return 0
