"""`lineside run`: run line-side inspection: camera frames in, verdicts and reject signals out."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from lineside.validate import float_arg, int_arg

# Numeric options: finite and in range, else a one-line usage error (exit 2); NaN would switch the fail-safe off.
DELAY_MS = float_arg(at_least=0, at_most=3_600_000)  # an hour of belt travel is a typo, not a line
DUE_MS = float_arg(above=0, at_most=3_600_000)  # --timeout-ms: the verdict deadline
PULSE_MS = float_arg(above=0, at_most=60_000)  # --pulse-ms, --heartbeat-ms
COUNTS = float_arg(above=0, at_most=2**31)  # encoder counts: at most half a 32-bit counter
SCORE = float_arg(at_least=0)  # anomaly scores are >= 0
RATE = float_arg(above=0, at_most=100_000)  # frames/s
STALL_S = float_arg(above=0, at_most=3600)
CAP_MB = float_arg(above=0, at_most=10_000_000)
THREADS = int_arg(at_least=1, at_most=1024)
QUEUE = int_arg(at_least=1, at_most=1024)
COUNT = int_arg(at_least=1)

HELP = "Run line-side inspection: camera frames in, verdicts and reject signals out."

EPILOG = """\
sources:   0 (camera index) | video.mp4 | images/ (replay; --rate) | rtsp://... | "nvarguscamerasrc ! ... ! appsink"
           genicam://DEVICE?trigger=hardware&exposure_us=800&pixel_format=BayerRG8 | pylon://SERIAL?trigger=software
actuators: serial:///dev/ttyUSB0?baud=9600&on=ON&off=OFF | serial:///dev/ttyUSB0?protocol=lcus&channel=1
           modbus+tcp://10.0.0.5:502?coil=0&unit=1 | modbus+rtu:///dev/ttyUSB0?baud=9600&coil=0
           gpio://gpiochip0/17 | gpio://jetson/33 | log://
           s7://10.0.0.5?rack=0&slot=1&area=DB&db=10&byte=0&bit=0 (S7 bit; area Q, M or DB)
           "opcua://10.0.0.5:4840/ns=3;s=Line1.Reject" (OPC UA Boolean node; ?security=&cert=&key=&user=)
publish:   mqtt://broker:1883/plant/line1?qos=1&client_id=line1: decisions on TOPIC, status on TOPIC/status
fail-safe: a part without a PASS verdict by its deadline (--timeout-ms, default --delay-ms) is rejected,
           unless --fail-open. Every part gets exactly one line in --log, with `eject` saying what the
           output really did (ejected / eject_failed / not_ejected_fail_open / none).
health:    a dead output, an unreadable encoder, a silent source or a failing backend stops the heartbeat
           (and raises --alarm). Exit status 3: the run ended but an output failed (some pulses may be lost).
"""
EXIT_OUTPUT_FAILED = 3  # the run finished, but at least one write to an output failed


def _roi(text: str) -> tuple[int, int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or min(values) < 0 or values[2] == 0 or values[3] == 0:
        raise argparse.ArgumentTypeError(f"--roi must be X,Y,WIDTH,HEIGHT in pixels, got {text!r}")
    return values  # type: ignore[return-value]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside run`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("bundle", type=Path, help="bundle folder (from `lineside export`)")
    parser.add_argument("--source", required=True, help="camera index, video file, image folder, URL or pipeline")
    parser.add_argument("--actuator", default="log://", help="reject output URL (default log://)")
    parser.add_argument("--heartbeat", metavar="URL", help="second output that toggles while the line is healthy")
    parser.add_argument("--heartbeat-ms", type=PULSE_MS, default=500.0, help="heartbeat half-period (default 500)")
    parser.add_argument("--alarm", metavar="URL", help="output switched ON while the line is unhealthy")
    parser.add_argument(
        "--on-fault",
        choices=("stop", "alarm", "both"),
        help="what a fault does: stop the heartbeat, raise --alarm, or both (default: both with --alarm, else stop)",
    )
    parser.add_argument("--log", type=Path, help="append one JSON line per decision to this file")
    parser.add_argument("--log-max-mb", type=float, default=100.0, help="rotate --log at this size (default 100)")
    parser.add_argument("--log-keep", type=int, default=10, help="rotated logs kept: LOG.1 ... LOG.N (default 10)")
    parser.add_argument("--log-fsync-every", type=int, default=100, help="fsync --log after N records (default 100)")
    parser.add_argument("--log-fsync-ms", type=float, default=500.0, help="...and at least this often (default 500)")
    parser.add_argument("--threshold", type=SCORE, help="reject threshold (default: the bundle's calibrated one)")
    parser.add_argument("--class", dest="class_name", help="class whose calibrated threshold to use")
    parser.add_argument("--delay-ms", type=DELAY_MS, default=0.0, help="capture -> ejector travel time (default 0)")
    parser.add_argument("--encoder", metavar="URL", help="belt counter: modbus+tcp://PLC:502?register=N[&bits=32]")
    parser.add_argument("--delay-counts", type=COUNTS, help="capture -> ejector distance in encoder counts")
    parser.add_argument(
        "--encoder-timeout-ms",
        type=DUE_MS,
        help="encoder outage: give up a pending part this long after capture (default: twice its travel time)",
    )
    parser.add_argument("--pulse-ms", type=PULSE_MS, default=50.0, help="reject pulse width (default 50)")
    parser.add_argument("--timeout-ms", type=DUE_MS, help="verdict deadline after capture (default --delay-ms or 1000)")
    parser.add_argument("--fail-open", action="store_true", help="let parts without a verdict PASS (unsafe)")
    parser.add_argument("--backend", choices=("auto", "ort", "tensorrt"), default="auto")
    parser.add_argument("--engine", type=Path, help="TensorRT engine (default BUNDLE/model.engine if present)")
    parser.add_argument("--providers", help="ONNX Runtime providers, comma separated (default: best available)")
    parser.add_argument("--threads", type=THREADS, help="ONNX Runtime CPU threads")
    parser.add_argument("--rate", type=RATE, help="replay rate in frames/s; for cameras the part rate (counts misses)")
    parser.add_argument("--roi", type=_roi, help="crop X,Y,WIDTH,HEIGHT before inference")
    parser.add_argument("--stall-s", type=STALL_S, default=2.0, help="reopen a camera silent this long (default 2)")
    parser.add_argument("--max-parts", type=COUNT, help="stop after this many parts")
    parser.add_argument("--queue", type=QUEUE, default=4, help="inference queue length (default 4)")
    parser.add_argument("--save-rejects", type=Path, metavar="DIR", help="save reject images and heatmaps here")
    parser.add_argument("--save-cap-mb", type=CAP_MB, default=500.0, help="disk cap of --save-rejects (default 500)")
    parser.add_argument("--summary", type=Path, help="write the run summary JSON here")
    parser.add_argument("--quiet", action="store_true", help="no live status line")
    parser.add_argument(
        "--dashboard",
        metavar="HOST:PORT",
        help="serve a read-only live web page here, e.g. 127.0.0.1:8080 (off by default; pip install 'lineside[dashboard]')",
    )
    parser.add_argument(
        "--publish",
        metavar="URL",
        help="every decision and a status to MQTT: mqtt://BROKER:1883/TOPIC?qos=1&client_id=ID or mqtts://...?ca=CA "
        "(never slows the line; pip install 'lineside[mqtt]')",
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside run`."""
    from lineside.atomic import atomic_write_json
    from lineside.redact import redact_logs
    from lineside.runtime.ejector import EjectorConfig
    from lineside.runtime.results import LogPolicy
    from lineside.runtime.runner import RunOptions, run_line
    from lineside.runtime.sources.capture import CaptureConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redact_logs()  # no credentials of --source / --actuator URLs on the console
    options = RunOptions(
        bundle=args.bundle,
        source=args.source,
        actuator=args.actuator,
        log_path=args.log,
        log_policy=LogPolicy.from_options(args.log_max_mb, args.log_keep, args.log_fsync_every, args.log_fsync_ms),
        threshold=args.threshold,
        class_name=args.class_name,
        backend=args.backend,
        engine=args.engine,
        providers=tuple(p.strip() for p in args.providers.split(",")) if args.providers else None,
        threads=args.threads,
        capture=CaptureConfig(rate=args.rate, roi=args.roi, stall_s=args.stall_s, max_parts=args.max_parts),
        ejector=EjectorConfig(
            delay_s=args.delay_ms / 1000,
            pulse_s=args.pulse_ms / 1000,
            timeout_s=args.timeout_ms / 1000 if args.timeout_ms is not None else None,
            fail_open=args.fail_open,
            heartbeat_s=args.heartbeat_ms / 1000,
            delay_counts=args.delay_counts,
            encoder_timeout_s=args.encoder_timeout_ms / 1000 if args.encoder_timeout_ms is not None else None,
            fault_stops_heartbeat=(args.on_fault or ("both" if args.alarm else "stop")) != "alarm",
        ),
        encoder=args.encoder,
        heartbeat=args.heartbeat,
        alarm=args.alarm,
        queue_size=args.queue,
        save_rejects=args.save_rejects,
        save_cap_bytes=int(args.save_cap_mb * 1024 * 1024),
        status=not args.quiet,
        dashboard=args.dashboard,
        publish=args.publish,
    )
    summary = run_line(options)
    if args.summary:
        atomic_write_json(args.summary, summary)
    verdicts, latency, overhead = summary["verdicts"], summary["latency_ms"], summary["overhead_ms"]
    sys.stdout.write(
        f"{summary['decisions']} parts: {verdicts['PASS']} PASS, {verdicts['REJECT']} REJECT, {verdicts['ERROR']} ERROR"
        f" | latency p50 {latency['p50']} ms p99 {latency['p99']} ms | overhead p99 {overhead['p99']} ms"
        f" | ejected {summary['eject']['ejected']}, eject failed {summary['eject']['eject_failed']}"
        + (
            f" | mqtt published {summary['publish']['published']}, dropped {summary['publish']['dropped']}"
            if "publish" in summary
            else ""
        )
        + "\n"
    )
    sys.stdout.write(json.dumps(summary) + "\n")
    if summary["output_failed"]:
        ejects = summary["eject"]
        sys.stderr.write(
            f"lineside run: an output failed ({summary['actuator_errors']} failed writes, "
            f"{ejects['eject_failed']} parts eject_failed): exit {EXIT_OUTPUT_FAILED}\n"
        )
        return EXIT_OUTPUT_FAILED
    return 0
