"""Runtime overhead per frame: replay synthetic parts through `lineside run` at the highest rate the CPU
sustains and measure everything but inference (capture hand-off, resize, decision, fail-safe bookkeeping,
results log), p50/p99, and check every part got exactly one logged decision.

    python benchmarks/runtime_overhead.py --bundle BUNDLE [--frames 600] [--frame-size 480x640] [--out DIR]
    python benchmarks/runtime_overhead.py --bundle BUNDLE --dashboard [--rounds 3]
    PYLON_CAMEMU=1 python benchmarks/runtime_overhead.py --bundle BUNDLE --source 'pylon://?trigger=software&ImageFilename={parts}&...'
    python benchmarks/runtime_overhead.py --bundle BUNDLE --actuator 's7://PLC?area=DB&db=10&byte=0&bit=0' --publish mqtt://BROKER/T

Writes DIR/runtime_overhead.json and DIR/runtime_overhead.md (a table) and prints the table.
With --source the parts come from that `lineside run --source` (a GenICam camera: genicam://, pylon://) until
--frames parts, unpaced; `{parts}` in it is replaced by the folder of synthetic parts (pylon's emulation replays it).
With --dashboard, the same replay runs with the dashboard off and on, alternating for --rounds rounds in one
process; while it is on, a client process (like the page in a browser) follows the live events and fetches
every new frame and reject image. Writes DIR/dashboard_overhead.json / .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from lineside.atomic import atomic_write_json, atomic_write_text
from lineside.bundle import load_bundle
from lineside.errors import LinesideError
from lineside.redact import redact
from lineside.runtime.decision import resolve_threshold
from lineside.runtime.ejector import EjectorConfig
from lineside.runtime.runner import RunOptions, run_line
from lineside.runtime.sources.base import source_factory
from lineside.runtime.sources.capture import CaptureConfig

STAGES = ("capture", "queue", "preprocess", "infer", "total")
TARGET_P99_MS = 5.0
DASHBOARD_BUDGET_P99_MS = 1.0  # the dashboard may add at most this to the overhead p99

PAGE_CLIENT = r"""
import json, sys, time, urllib.error, urllib.request
base = sys.argv[1]
print("ready", flush=True)
while True:
    try:
        stream = urllib.request.urlopen(base + "/api/events", timeout=30)
        break
    except urllib.error.URLError:
        time.sleep(0.02)
def fetch(path):
    try:
        return len(urllib.request.urlopen(base + path, timeout=30).read()) > 0
    except (urllib.error.URLError, ConnectionError):  # 404 once a reject left the strip; refused once the line stopped
        return False
fetched, events, seen = {"frames": 0, "rejects": 0}, 0, set()
for line in stream:
    if not line.startswith(b"data: "):
        continue
    snap = json.loads(line[6:])
    events += 1
    if not snap["running"]:
        break
    if snap["latest"] and snap["latest"]["image"]:
        fetched["frames"] += fetch("/live/frame.jpg")
    for reject in (r for r in snap["rejects"] if r["seq"] not in seen):
        seen.add(reject["seq"])
        fetched["rejects"] += fetch(f"/live/reject/{reject['seq']}/image.jpg") + fetch(f"/live/reject/{reject['seq']}/heatmap.jpg")
print(json.dumps({"events": events, **fetched}))
"""


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


def _replay_of(result: dict) -> str:
    """'Replay of N parts (HxW)', or for a --source camera 'N parts from SOURCE'."""
    if result.get("source", "folder replay") == "folder replay":
        return f"Replay of {result['frames']} parts ({result['frame_size']})"
    return f"{result['frames']} parts from {result['source']}"


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
        f"{_replay_of(result)} with {result['model']} "
        f"({result['precision']}, {result['backend']}, {result['threads']} threads) at {result['fps']:.1f} parts/s; "
        f"decisions logged: {result['decisions']} ({'exactly one per part' if result['one_decision_per_part'] else 'MISMATCH'}); "
        f"overhead p99 target < {TARGET_P99_MS} ms: wall {_met(result['overhead_ms']['p99'])}, "
        f"CPU {_met(result['overhead_cpu_ms']['p99'])}. Machine: {result['machine']}, {result['cpus']} CPUs, "
        f"load average during the run {result['load_average']:.1f}."
    )
    return head + "\n\n" + "\n".join(rows) + "\n"


def line_rate(records: list[dict]) -> float:
    """Parts per second through the line: first capture to last decision (start-up and warm-up excluded)."""
    span = max(r["decision_time"] for r in records) - min(r["capture_time"] for r in records)
    return len(records) / span if span > 0 else float("nan")


def one_decision_per_part(records: list[dict], frames: int) -> bool:
    """Every part id 0..frames-1 logged exactly once."""
    return sorted(r["part_id"] for r in records) == list(range(frames))


def machine() -> str:
    """The CPU architecture and platform, for the report."""
    return f"{platform.machine()} {platform.processor() or platform.platform()}"


def replay(args: argparse.Namespace, folder: Path, log: Path, dashboard: str | None = None) -> tuple[dict, list]:
    """One unpaced replay of `folder` (or --source) through `run_line`: (summary, part records)."""
    log.unlink(missing_ok=True)
    source = args.source.replace("{parts}", str(folder)) if args.source else str(folder)
    capture = CaptureConfig(max_parts=args.frames) if args.source else CaptureConfig()
    summary = run_line(
        RunOptions(
            bundle=args.bundle, source=source, log_path=log, threshold=args.threshold, threads=args.threads,
            backend="ort", capture=capture, ejector=EjectorConfig(timeout_s=5.0), status=False,
            dashboard=dashboard, actuator=args.actuator, heartbeat=args.heartbeat, publish=args.publish,
        )
    )  # fmt: skip
    records = [r for r in map(json.loads, log.read_text().splitlines()) if r["type"] == "part"]
    return summary, records


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def dashboard_round(args: argparse.Namespace, folder: Path, log: Path, on: bool) -> dict[str, Any]:
    """One replay with the dashboard off, or on with a page client following it; its overhead percentiles."""
    client = None
    address = None
    if on:
        address = f"127.0.0.1:{_free_port()}"
        client = subprocess.Popen(
            [sys.executable, "-c", PAGE_CLIENT, f"http://{address}"], stdout=subprocess.PIPE, text=True
        )
        assert client.stdout is not None and client.stdout.readline().strip() == "ready"  # polls until the page is up
    try:
        summary, records = replay(args, folder, log, address)
        page = json.loads(client.communicate(timeout=60)[0]) if client is not None else None
    finally:
        if client is not None and client.poll() is None:
            client.kill()
    return {
        "dashboard": on,
        "fps": round(line_rate(records), 2),
        "one_decision_per_part": one_decision_per_part(records, args.frames),
        "overhead_ms": summary["overhead_ms"],
        "overhead_cpu_ms": summary["overhead_cpu_ms"],
        "page": page,
        "load_average": round(os.getloadavg()[0], 2),
    }


def _median(rounds: list[dict], key: str, q: str) -> float:
    return round(float(np.median([r[key][q] for r in rounds])), 3)


def dashboard_markdown(result: dict) -> str:
    """Off/on medians over the rounds, the difference, and every round."""
    off, on = result["off"], result["on"]
    rows = [
        "| overhead per frame | off p50 | on p50 | off p99 | on p99 | p99 on - off |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, name in (("overhead_ms", "wall"), ("overhead_cpu_ms", "CPU time")):
        delta = on[key]["p99"] - off[key]["p99"]
        rows.append(
            f"| {name} (median of {result['rounds']} rounds) | {off[key]['p50']:.3f} | {on[key]['p50']:.3f} | "
            f"{off[key]['p99']:.3f} | {on[key]['p99']:.3f} | **{delta:+.3f}** |"
        )
    rows += [
        "",
        "| round | dashboard | parts/s | wall p50 / p99 ms | CPU p50 / p99 ms | page client | load |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for index, r in enumerate(result["runs"]):
        page = r["page"]
        client = f"{page['events']} events, {page['frames']} frames, {page['rejects']} reject JPEGs" if page else "-"
        rows.append(
            f"| {index // 2} | {'on' if r['dashboard'] else 'off'} | {r['fps']:.1f} | "
            f"{r['overhead_ms']['p50']:.3f} / {r['overhead_ms']['p99']:.3f} | "
            f"{r['overhead_cpu_ms']['p50']:.3f} / {r['overhead_cpu_ms']['p99']:.3f} | {client} | {r['load_average']:.1f} |"
        )
    head = (
        f"Dashboard off vs on: {result['frames']} parts ({result['frame_size']}) per run with {result['model']} "
        f"({result['precision']}, {result['threads']} ORT threads), unpaced; off/on alternating. "
        f"Budget: p99 on - off <= {DASHBOARD_BUDGET_P99_MS} ms: wall {result['verdict']['wall']}, "
        f"CPU {result['verdict']['cpu']}. Machine: {result['machine']}, {result['cpus']} CPUs."
    )
    return head + "\n\n" + "\n".join(rows) + "\n"


def dashboard_side_by_side(args: argparse.Namespace, bundle: Any, folder: Path, log: Path) -> dict[str, Any]:
    """Alternate off/on (on/off in odd rounds) so load drift hits both modes alike."""
    runs = []
    for index in tqdm(range(args.rounds), desc="rounds", unit="round", leave=False):
        order = (False, True) if index % 2 == 0 else (True, False)
        runs += sorted((dashboard_round(args, folder, log, on) for on in order), key=lambda r: r["dashboard"])
    modes = {
        name: {key: {q: _median([r for r in runs if r["dashboard"] == on], key, q) for q in ("p50", "p99")}
               for key in ("overhead_ms", "overhead_cpu_ms")}
        for name, on in (("off", False), ("on", True))
    }  # fmt: skip
    met = {
        label: "met" if modes["on"][key]["p99"] - modes["off"][key]["p99"] <= DASHBOARD_BUDGET_P99_MS else "NOT met"
        for label, key in (("wall", "overhead_ms"), ("cpu", "overhead_cpu_ms"))
    }
    return {
        "model": bundle.manifest.model, "precision": bundle.manifest.precision, "frames": args.frames,
        "frame_size": args.frame_size, "threads": args.threads, "rounds": args.rounds, **modes, "verdict": met,
        "all_decisions_logged": all(r["one_decision_per_part"] for r in runs), "runs": runs,
        "machine": machine(), "cpus": os.cpu_count(),
    }  # fmt: skip


def write_report(stem: Path, result: dict, table: str) -> None:
    """STEM.json and STEM.md, and the table on stdout."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stem.with_suffix(".json"), result)
    atomic_write_text(stem.with_suffix(".md"), table)
    sys.stdout.write(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="bundle to run (e.g. the edge INT8 export)")
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--frame-size", default="480x640", help="HEIGHTxWIDTH of the replayed camera frames")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    parser.add_argument("--threshold", type=float, help="override the bundle's threshold")
    parser.add_argument("--dashboard", action="store_true", help="compare the overhead with the dashboard off and on")
    parser.add_argument("--rounds", type=int, default=3, help="with --dashboard: off/on pairs to run (default 3)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--source", help="a `lineside run --source` (e.g. genicam://, pylon://) instead of the folder")
    parser.add_argument("--actuator", default="log://", help="reject output URL (s7://, opcua://, serial://, ...)")
    parser.add_argument("--heartbeat", help="heartbeat output URL")
    parser.add_argument("--publish", help="publish every decision to this mqtt:// URL while measuring")
    args = parser.parse_args(argv)
    try:
        return measure(args)
    except LinesideError as exc:
        print(f"runtime_overhead.py: error: {exc}", file=sys.stderr)
        return 2


def frame_size(text: str) -> tuple[int, int]:
    """'HEIGHTxWIDTH' -> (height, width), or a one-line error."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise LinesideError(f"--frame-size must be HEIGHTxWIDTH in pixels, e.g. 480x640, got {text!r}")
    return int(parts[0]), int(parts[1])


def measure(args: argparse.Namespace) -> int:
    """Replay, measure and write the report; exit code 0 when every part got exactly one decision."""
    height, width = frame_size(args.frame_size)
    bundle = load_bundle(args.bundle)
    resolve_threshold(bundle, args.threshold, None)  # refuse before rendering hundreds of frames
    if args.source:
        source_factory(args.source.replace("{parts}", "."))  # a bad URL or a missing camera extra: refuse now too
    with tempfile.TemporaryDirectory(prefix="lineside-overhead-") as tmp:
        folder = Path(tmp) / "frames"
        synthetic_parts(folder, args.frames, (height, width))
        log = Path(tmp) / "results.jsonl"
        if args.dashboard:
            both = dashboard_side_by_side(args, bundle, folder, log)
            write_report(args.out / "dashboard_overhead", both, dashboard_markdown(both))
            return 0 if both["all_decisions_logged"] else 1
        summary, records = replay(args, folder, log)
    result = {
        "model": bundle.manifest.model,
        "precision": bundle.manifest.precision,
        "cpu_model_file": bundle.manifest.cpu_model_file,
        "input_size": list(bundle.manifest.input_size),
        "frame_size": f"{height}x{width}",
        "source": args.source or "folder replay",
        "outputs": [redact(url) for url in (args.actuator, args.heartbeat) if url],
        "publish": summary.get("publish"),
        "backend": summary["backend"],
        "threads": args.threads,
        "frames": args.frames,
        "decisions": len(records),
        "one_decision_per_part": one_decision_per_part(records, args.frames),
        "verdicts": summary["verdicts"],
        "fps": round(line_rate(records), 2),
        "stages_ms": stage_percentiles(records),
        "overhead_ms": summary["overhead_ms"],
        "overhead_cpu_ms": summary["overhead_cpu_ms"],
        "machine": machine(),
        "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2),
    }
    write_report(args.out / "runtime_overhead", result, markdown(result))
    return 0 if result["one_decision_per_part"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
