"""Fault soak (issue 16): replay thousands of parts through `lineside run` while faults are injected into
real stand-ins, and check that every part got a decision and no defect shipped without an eject or an alarm.

    python benchmarks/fault_soak.py --bundle BUNDLE --data SYNTH [--class C] [--parts 10000] [--faults all]

The line: a camera stand-in process images one part every 1/--rate s (numbered frames, JPEG over TCP; the
parts are the test images of one category of a `lineside synth` set, --defect-rate of them defective);
`lineside run` (a real subprocess, one per segment) drives a socat serial relay (the reject output, read
back with its timing), a heartbeat and an alarm coil on a pymodbus server on 127.0.0.1 (which also serves
the belt encoder register), and saves rejects on a small tmpfs. Faults from a seeded schedule: dropped and
corrupt frames, camera link stalls and disconnects, socat killed, PLC server restarted, encoder reads
failing, reject disk full, SIGTERM + restart. Needs root (tmpfs) unless --faults leaves out disk_full.

Writes OUT/fault_soak.json and OUT/fault_soak.md and prints the table; exit 0 when parts without a
decision, defects shipped silently and torn log lines are all 0, else 1; bad input: one line, exit 2.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from soak.analyze import Analysis, Truth
from soak.orchestrate import Settings, Soak
from soak.parts import build_catalogue, part_sequence
from soak.plan import KINDS, Plan, make_plan
from soak.report import markdown, passed
from tqdm import tqdm

from lineside.atomic import atomic_write_json, atomic_write_text
from lineside.bundle import load_bundle
from lineside.errors import LinesideError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="bundle to run (the edge INT8 export)")
    parser.add_argument("--data", type=Path, required=True, help="labelled parts: a `lineside synth` folder")
    parser.add_argument("--class", dest="category", help="category whose test images are the parts (default: first)")
    parser.add_argument("--parts", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=15.0, help="parts/s on the belt (default 15)")
    parser.add_argument("--faults", default="all", help=f"comma-separated kinds or 'all': {','.join(KINDS)}")
    parser.add_argument("--seed", type=int, default=0, help="fault schedule and part order")
    parser.add_argument("--defect-rate", type=float, default=0.1)
    parser.add_argument("--delay-ms", type=float, default=800.0, help="camera -> ejector travel time")
    parser.add_argument(
        "--pulse-ms", type=float, default=30.0, help="reject pulse (default 30: within half the spacing at 15 parts/s)"
    )
    parser.add_argument(
        "--stall-s", type=float, default=0.5, help="the runtime's camera watchdog (above the longest drop burst)"
    )
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads of the line")
    parser.add_argument(
        "--tolerance-ms",
        type=float,
        help="a pulse this close to a part's arrival ejects it (default: half the spacing)",
    )
    parser.add_argument("--line-nice", type=int, default=-10, help="priority of the runtime processes (root only)")
    parser.add_argument("--work", type=Path, help="keep the work files (logs, wire, camera plan) here")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args(argv)


def check(args: argparse.Namespace) -> tuple[str, ...]:
    """The fault kinds to inject; LinesideError for bad input."""
    kinds = KINDS if args.faults == "all" else tuple(k.strip() for k in args.faults.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise LinesideError(f"--faults: unknown kind(s) {', '.join(unknown)}; choose from {', '.join(KINDS)}")
    if args.tolerance_ms is None:
        args.tolerance_ms = 500.0 / args.rate if args.rate > 0 else 0.0
    if args.parts < 100 or args.rate <= 0 or not 0 < args.defect_rate < 1 or args.threads < 1:
        raise LinesideError("--parts must be >= 100, --rate > 0, --defect-rate in (0, 1), --threads >= 1")
    if "disk_full" in kinds and os.geteuid() != 0:
        raise LinesideError("the disk_full fault mounts a tmpfs and needs root; leave it out with --faults")
    if not args.data.is_dir():
        raise LinesideError(f"--data {args.data}: not a folder")
    return kinds


def camera_plan(plan: Plan, rate: float, frames: list[Path], sequence: list[int]) -> dict:
    """What the camera process needs: its rate, images, part order and part-level faults."""
    by_kind: dict[str, list[int]] = {"pause": [0, *plan.restarts]}
    for fault in plan.faults:
        if fault.duration_s == 0:
            by_kind.setdefault(fault.kind, []).extend(range(fault.part, fault.part + fault.count))
    return {"rate": rate, "frames": [str(f) for f in frames], "sequence": sequence, **by_kind}


def soak(args: argparse.Namespace, kinds: tuple[str, ...], work: Path) -> dict:
    """Build the parts and the plan, run the line, analyse."""
    bundle = load_bundle(args.bundle)
    category = args.category or sorted(p.name for p in args.data.iterdir() if (p / "test").is_dir())[0]
    class_name = category if category in bundle.manifest.classes else None
    catalogue = build_catalogue(args.data, category, args.bundle, work / "frames", args.threads)
    sequence = part_sequence(catalogue, args.parts, args.defect_rate, args.seed)
    plan = make_plan(args.parts, kinds, args.seed)
    settings = Settings(args.bundle, class_name, args.rate, args.delay_ms, args.pulse_ms, args.stall_s,
                        threads=args.threads, line_nice=args.line_nice)  # fmt: skip
    started = time.monotonic()
    with tqdm(total=args.parts, desc="soak", unit="part") as bar:
        outcome = Soak(settings, plan, camera_plan(plan, args.rate, catalogue.frames, sequence), work, bar).run()
    injected = [asdict(w) for w in outcome.windows]
    dig = {"plan": plan.to_json(), "windows": injected, "camera": outcome.camera, "coils": outcome.coils}
    atomic_write_json(work / "outcome.json", dig)  # for digging into a run
    result = Analysis(outcome, settings, plan, Truth(catalogue, sequence), args.tolerance_ms / 1000).result()
    return {
        **result, "model": bundle.manifest.model, "precision": bundle.manifest.precision, "category": category,
        "threshold": catalogue.threshold, "wall_s": round(time.monotonic() - started, 1),
        "settings": {**{k: v for k, v in asdict(settings).items() if k != "bundle"}, "seed": args.seed,
                     "tolerance_ms": args.tolerance_ms, "defect_rate": args.defect_rate, "faults": list(kinds)},
        "segments": [asdict(s) for s in outcome.segments],
        "machine": f"{platform.machine()} {platform.platform()}", "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        kinds = check(args)
        if args.work is not None:
            args.work.mkdir(parents=True, exist_ok=True)
            result = soak(args, kinds, args.work)
        else:
            with tempfile.TemporaryDirectory(prefix="lineside-soak-") as tmp:
                result = soak(args, kinds, Path(tmp))
    except LinesideError as exc:
        print(f"fault_soak.py: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    table = markdown(result)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "fault_soak.json", result)
    atomic_write_text(args.out / "fault_soak.md", table)
    sys.stdout.write(table)
    return 0 if passed(result) else 1


if __name__ == "__main__":
    raise SystemExit(main())
