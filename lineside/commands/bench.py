"""`lineside bench`: latency per stage, backend and precision, accuracy and memory, side by side in one run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lineside.bench_options import (
    BACKENDS,
    DEFAULT_ACTUATOR,
    DEFAULT_CAMERA,
    BenchOptions,
    parse_backends,
    parse_batch_sizes,
    parse_camera,
    parse_choices,
)
from lineside.bundle import PRECISIONS

HELP = "Benchmark latency (per stage, backend, precision, batch), accuracy and memory side by side in one run."
CAMERA = "x".join(map(str, DEFAULT_CAMERA))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside bench`."""
    parser.add_argument(
        "targets",
        nargs="+",
        type=Path,
        help="bundle folder(s) of one model, and/or its run folder / model.pt (alone: exported at each precision)",
    )
    parser.add_argument(
        "--precisions", default=",".join(PRECISIONS), help="comma-separated subset of fp32,fp16,int8 (default: all)"
    )
    parser.add_argument(
        "--backends",
        help=f"comma-separated subset of {','.join(BACKENDS)}; each one named must run (default: all that apply here)",
    )
    parser.add_argument(
        "--report", type=Path, help="folder for results.json, plots and report.md (default: print only)"
    )
    parser.add_argument("--data", type=Path, help="data set whose test split measures accuracy per variant")
    parser.add_argument("--eval-limit", type=int, help="at most this many test images per category")
    parser.add_argument("--runs", type=int, default=100, help="timed rounds; each runs every variant once (100)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds first (5)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per backend (2)")
    parser.add_argument(
        "--batch-sizes", default="1,4,8", help="batch sizes for throughput, where the graph has a dynamic batch (1,4,8)"
    )
    parser.add_argument("--batch-runs", type=int, default=10, help="timed rounds per batch size above 1 (10)")
    parser.add_argument(
        "--camera", default=CAMERA, help=f"WIDTHxHEIGHT of the JPEG frame that is decoded and resized ({CAMERA})"
    )
    parser.add_argument(
        "--actuator",
        default=DEFAULT_ACTUATOR,
        help=f"reject output written once per round ({DEFAULT_ACTUATOR}; or log://)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS child process per variant")


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside bench`."""
    from lineside.export.bench.run import bench
    from lineside.export.bench.tables import console

    options = BenchOptions(
        precisions=parse_choices(args.precisions, PRECISIONS, "--precisions"),
        backends=parse_backends(args.backends),
        report=args.report,
        data=args.data,
        runs=args.runs,
        warmup=args.warmup,
        threads=args.threads,
        eval_limit=args.eval_limit,
        batch_sizes=parse_batch_sizes(args.batch_sizes),
        batch_runs=args.batch_runs,
        camera=parse_camera(args.camera),
        actuator=args.actuator,
        memory=not args.no_memory,
    )
    doc = bench(list(args.targets), options, say=lambda m: print(m, file=sys.stderr))
    print(console(doc))
    if args.report is not None:
        print(f"report: {args.report / 'report.md'} (results.json, latency.png, stages.png alongside)")
    return 0
