"""Per-frame runtime overhead with each PLC output and with results published to MQTT, side by side.

    python benchmarks/cell_overhead.py --bundle BUNDLE [--frames 600] [--rounds 3] [--out benchmarks/results]

Each round replays the same synthetic parts unpaced through `run_line` (benchmarks/runtime_overhead.py's replay)
once per configuration, in a rotating order so load drift hits every configuration alike:

    log      reject + heartbeat to log:// (no I/O: the baseline)
    serial   reject + heartbeat over two socat PTY pairs, a listener process reading each
    s7       a DB bit + an M bit on python-snap7's S7 server
    opcua    two Boolean nodes on an asyncua OPC UA server
    mqtt     log:// outputs, every decision and a status each second published to mosquitto (QoS 1)

The PLC servers and the broker run in their own processes (a PLC is another device; in this process they would
compete with the line for the GIL). Also measured: the cost of the publisher's `decided()` call itself, on the
line's thread, over 5000 calls at 1000 parts/s while it publishes, and the whole process's CPU time per part
(every thread: inference, outputs, publisher; an output's own cost is its difference to log://).
Writes DIR/cell_overhead.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from runtime_overhead import (
    frame_size,
    line_rate,
    machine,
    one_decision_per_part,
    replay,
    synthetic_parts,
    write_report,
)

from lineside.bundle import load_bundle
from lineside.errors import LinesideError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the real stand-ins the tests use (snap7/asyncua servers, mosquitto, socat)

CONFIGS = ("log", "serial", "s7", "opcua", "mqtt")
TARGET_P99_MS, PUBLISH_BUDGET_P99_MS = 5.0, 0.5

PLC_PROCESS = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from plc_support import OpcUaServer, S7Server
s7, ua = S7Server().start(), OpcUaServer().start()
print(s7.port, ua.port, flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
s7.stop(); ua.close()
"""


def _outputs(config: str, ports: tuple[int, int], ptys: list[Path]) -> tuple[str, str | None]:
    s7, ua = ports
    return {
        "log": ("log://", "log://"),
        "mqtt": ("log://", "log://"),
        "serial": (f"serial://{ptys[0]}?on=ON&off=OFF", f"serial://{ptys[1]}?on=ON&off=OFF"),
        "s7": (f"s7://127.0.0.1:{s7}?area=DB&db=10&byte=0&bit=0", f"s7://127.0.0.1:{s7}?area=M&byte=0&bit=1"),
        "opcua": (f"opcua://127.0.0.1:{ua}/ns=2;s=Line1.Reject", f"opcua://127.0.0.1:{ua}/ns=2;s=Line1.Heartbeat"),
    }[config]


def _round(args: argparse.Namespace, config: str, folder: Path, log: Path, stands: dict[str, Any]) -> dict[str, Any]:
    actuator, heartbeat = _outputs(config, stands["plc_ports"], stands["ptys"])
    publish = f"mqtt://127.0.0.1:{stands['broker'].port}/bench/line?qos=1&status_s=1" if config == "mqtt" else None
    run_args = argparse.Namespace(**{**vars(args), "actuator": actuator, "heartbeat": heartbeat, "publish": publish})
    cpu_start = time.process_time()
    summary, records = replay(run_args, folder, log)
    process_cpu_ms = (time.process_time() - cpu_start) * 1000 / args.frames
    return {
        "config": config, "fps": round(line_rate(records), 2),
        "one_decision_per_part": one_decision_per_part(records, args.frames),
        "overhead_ms": summary["overhead_ms"], "overhead_cpu_ms": summary["overhead_cpu_ms"],
        "actuator_errors": summary["actuator_errors"], "pulses": summary["pulses"], "publish": summary.get("publish"),
        "process_cpu_ms_per_part": round(process_cpu_ms, 3),
        "load_average": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def decided_cost(broker_port: int, calls: int = 5000) -> dict[str, float]:
    """p50/p99/max of one `MqttPublisher.decided()` call (what the line's thread pays per part), in ms."""
    from lineside.runtime.publish import MqttPublisher

    publisher = MqttPublisher(f"mqtt://127.0.0.1:{broker_port}/bench/cost?qos=1&status_s=1")
    publisher.start()
    record = {"type": "part", "part_id": 0, "verdict": "PASS", "score": 0.4, "latency_ms": {"total": 5.0}}
    costs = np.empty(calls)
    for index in range(calls):
        start = time.perf_counter()
        publisher.decided({**record, "part_id": index}, None, None)
        costs[index] = time.perf_counter() - start
        time.sleep(0.001)  # 1000 parts/s (15x a fast line), so the publisher thread runs alongside
    counters = publisher.close(flush_s=30)
    p50, p99 = np.percentile(costs, [50, 99]) * 1000
    return {"p50": round(float(p50), 4), "p99": round(float(p99), 4), "max": round(float(costs.max() * 1000), 3),
            "calls": calls, "published": counters["published"], "dropped": counters["dropped"]}  # fmt: skip


def _median(runs: list[dict], config: str, key: str, q: str) -> float:
    return round(float(np.median([r[key][q] for r in runs if r["config"] == config])), 3)


def markdown(result: dict) -> str:
    """Medians per configuration, the publisher's own cost, and every run."""
    rows = [
        "| outputs | wall p50 ms | wall p99 ms | CPU p50 ms | CPU p99 ms | p99 vs log:// | process CPU ms/part | parts/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for config, med in result["median"].items():
        rows.append(
            f"| {config} | {med['wall_p50']:.3f} | {med['wall_p99']:.3f} | {med['cpu_p50']:.3f} | {med['cpu_p99']:.3f} "
            f"| {med['wall_p99'] - result['median']['log']['wall_p99']:+.3f} | {med['process_cpu']:.3f} | {med['fps']:.1f} |"
        )
    cost = result["decided_call_ms"]
    rows += [
        "",
        f"`decided()` on the line's thread ({cost['calls']} calls while publishing): p50 {cost['p50']:.4f} ms, "
        f"p99 {cost['p99']:.4f} ms, max {cost['max']:.3f} ms; {cost['published']} published, {cost['dropped']} dropped.",
        "",
        "| round | outputs | parts/s | wall p50 / p99 ms | CPU p50 / p99 ms | pulses | errors | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        rows.append(
            f"| {r['round']} | {r['config']} | {r['fps']:.1f} | {r['overhead_ms']['p50']:.3f} / {r['overhead_ms']['p99']:.3f} "
            f"| {r['overhead_cpu_ms']['p50']:.3f} / {r['overhead_cpu_ms']['p99']:.3f} | {r['pulses']} "
            f"| {r['actuator_errors']} | {r['load_average']:.1f} |"
        )
    head = (
        f"Runtime overhead per frame by output: {result['frames']} parts ({result['frame_size']}) per run, "
        f"{result['model']} ({result['precision']}, {result['threads']} ORT threads), unpaced, {result['rounds']} rounds; "
        f"reject + heartbeat on each output kind; exactly one decision per part in every run: "
        f"{result['all_decisions_logged']}. Targets: p99 < {TARGET_P99_MS} ms, publishing adds p99 < "
        f"{PUBLISH_BUDGET_P99_MS} ms. Machine: {result['machine']}, {result['cpus']} CPUs."
    )
    return head + "\n\n" + "\n".join(rows) + "\n"


def _medians(runs: list[dict]) -> dict[str, dict[str, float]]:
    return {
        config: {
            "wall_p50": _median(runs, config, "overhead_ms", "p50"), "wall_p99": _median(runs, config, "overhead_ms", "p99"),
            "cpu_p50": _median(runs, config, "overhead_cpu_ms", "p50"), "cpu_p99": _median(runs, config, "overhead_cpu_ms", "p99"),
            "fps": round(float(np.median([r["fps"] for r in runs if r["config"] == config])), 1),
            "process_cpu": round(float(np.median([r["process_cpu_ms_per_part"] for r in runs if r["config"] == config])), 3),
        }
        for config in CONFIGS
    }  # fmt: skip


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Start the stand-ins, run the rounds, stop the stand-ins."""
    from mqtt_support import Broker
    from runtime_support import SerialListener, SocatPair

    bundle = load_bundle(args.bundle)
    folder, log = tmp / "frames", tmp / "results.jsonl"
    synthetic_parts(folder, args.frames, frame_size(args.frame_size))
    plc = subprocess.Popen(
        [sys.executable, "-c", PLC_PROCESS, str(ROOT / "tests")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert plc.stdout is not None and plc.stdin is not None
    for index in range(2):
        (tmp / f"pty{index}").mkdir()
    pairs = [SocatPair(tmp / f"pty{index}").start() for index in range(2)]
    listeners = [SerialListener(pair.b) for pair in pairs]
    broker = Broker(tmp / "broker").start()
    stands = {"plc_ports": tuple(int(p) for p in plc.stdout.readline().split()), "ptys": [p.a for p in pairs],
              "broker": broker}  # fmt: skip
    runs = []
    try:
        for index in range(args.rounds):
            order = CONFIGS[index % len(CONFIGS) :] + CONFIGS[: index % len(CONFIGS)]
            runs += [{"round": index, **_round(args, config, folder, log, stands)} for config in order]
        cost = decided_cost(broker.port, args.calls)
    finally:
        plc.stdin.close()
        plc.wait(30)
        for listener in listeners:
            listener.close()
        for pair in pairs:
            pair.stop()
        broker.stop()
    return {
        "model": bundle.manifest.model, "precision": bundle.manifest.precision, "frames": args.frames,
        "frame_size": args.frame_size, "threads": args.threads, "rounds": args.rounds, "median": _medians(runs),
        "decided_call_ms": cost, "all_decisions_logged": all(r["one_decision_per_part"] for r in runs),
        "runs": runs, "machine": machine(), "cpus": os.cpu_count(),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--frame-size", default="480x640", help="HEIGHTxWIDTH of the replayed camera frames")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    parser.add_argument("--threshold", type=float, help="override the bundle's threshold")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=5000, help="decided() calls timed at 1000/s (default 5000)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    args.source = None
    try:
        load_bundle(args.bundle)  # refuse a bad bundle before starting servers and rendering parts
        with tempfile.TemporaryDirectory(prefix="lineside-cell-") as tmp:
            result = measure(args, Path(tmp))
    except LinesideError as exc:
        print(f"cell_overhead.py: error: {exc}", file=sys.stderr)
        return 2
    write_report(args.out / "cell_overhead", result, markdown(result))
    sys.stdout.write(json.dumps(result["median"]) + "\n")
    return 0 if result["all_decisions_logged"] else 1


if __name__ == "__main__":
    sys.exit(main())
