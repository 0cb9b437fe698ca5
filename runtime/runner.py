"""Assemble and run a line from options: what `lineside run` calls (and tests and benchmarks too)."""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from lineside.bundle import load_bundle
from lineside.errors import LinesideError
from lineside.redact import redact
from lineside.runtime.actuators.base import Actuator, open_actuator
from lineside.runtime.backends.base import open_backend
from lineside.runtime.calibration_check import calibration_record
from lineside.runtime.dashboard.live import LiveDashboard
from lineside.runtime.dashboard.server import parse_address
from lineside.runtime.decision import resolve_threshold
from lineside.runtime.ejector import EjectorConfig
from lineside.runtime.encoder import EncoderTrack, ModbusCounter
from lineside.runtime.pipeline import Counters, Pipeline
from lineside.runtime.publish import MqttPublisher, fan_out, line_status, parse_mqtt_url
from lineside.runtime.results import LogPolicy, RejectStore, ResultsLog, new_run_id
from lineside.runtime.sources.base import source_factory
from lineside.runtime.sources.capture import Capture, CaptureConfig
from lineside.runtime.stats import StatusLine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """Everything `lineside run` takes (see its --help)."""

    bundle: Path
    source: str
    actuator: str = "log://"
    log_path: Path | None = None
    log_policy: LogPolicy = LogPolicy()  # results log size cap, rotation, fsync
    threshold: float | None = None
    class_name: str | None = None
    backend: str = "auto"
    engine: Path | None = None
    providers: tuple[str, ...] | None = None
    threads: int | None = None
    capture: CaptureConfig = CaptureConfig()
    ejector: EjectorConfig = EjectorConfig()
    heartbeat: str | None = None
    alarm: str | None = None  # output switched ON while the line is unhealthy
    encoder: str | None = None  # modbus+tcp://...?register=N: belt counter for --delay-counts
    queue_size: int = 4
    warmup: int = 3
    save_rejects: Path | None = None
    save_cap_bytes: int = 500 * 1024 * 1024
    status: bool = True
    dashboard: str | None = None  # HOST:PORT of the live web page (off by default)
    publish: str | None = None  # mqtt(s)://BROKER/TOPIC: every decision and a status to the plant's bus


def check_options(options: RunOptions) -> None:
    """Refuse inconsistent timing before anything is opened."""
    eject, capture = options.ejector, options.capture
    timings = (
        ("--delay-ms", eject.delay_s), ("--pulse-ms", eject.pulse_s), ("--timeout-ms", eject.timeout_s),
        ("--rate", capture.rate), ("--encoder-timeout-ms", eject.encoder_timeout_s),
    )  # fmt: skip
    for flag, value in timings:  # RunOptions built in Python skip the CLI's parse-time checks
        if value is not None and not math.isfinite(value):
            raise LinesideError(f"{flag} must be a finite number, got {value}")
    if eject.delay_s < 0 or eject.pulse_s <= 0:
        raise LinesideError("--delay-ms must be >= 0 and --pulse-ms > 0")
    if eject.timeout_s is not None and (
        eject.timeout_s <= 0 or (eject.delay_s > 0 and eject.timeout_s > eject.delay_s)
    ):
        raise LinesideError(
            "--timeout-ms must be > 0 and not longer than --delay-ms (the part would be past the ejector)"
        )
    if capture.rate is not None and capture.rate <= 0:
        raise LinesideError("--rate must be > 0 frames per second")
    if capture.max_parts is not None and capture.max_parts <= 0:
        raise LinesideError("--max-parts must be > 0")
    if (options.encoder is None) != (eject.delay_counts is None):
        raise LinesideError("--encoder and --delay-counts go together: give both or neither")
    if options.encoder is not None and (eject.delay_s or eject.timeout_s is not None):
        raise LinesideError("with --encoder the ejector distance is --delay-counts: drop --delay-ms / --timeout-ms")
    if eject.delay_counts is not None and eject.delay_counts <= 0:
        raise LinesideError("--delay-counts must be > 0")
    if eject.encoder_timeout_s is not None and options.encoder is None:
        raise LinesideError("--encoder-timeout-ms needs --encoder")
    if not eject.fault_stops_heartbeat and options.alarm is None:
        raise LinesideError("--on-fault alarm needs --alarm URL (else a fault would be signalled nowhere)")
    if options.queue_size < 1:
        raise LinesideError("--queue must be >= 1")
    if options.dashboard is not None:
        parse_address(options.dashboard)
    if options.publish is not None:
        parse_mqtt_url(options.publish)


@contextmanager
def _signals(pipeline: Pipeline) -> Iterator[None]:
    """First SIGINT/SIGTERM: stop capturing and decide what is in flight; second: stop now."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        if pipeline.stop.is_set():
            log.warning("second %s: aborting", signal.Signals(signum).name)
            pipeline.abort.set()
        else:
            log.warning("%s: finishing the parts in flight, then stopping", signal.Signals(signum).name)
            pipeline.stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _connect(url: str | None) -> Actuator | None:
    if url is None:
        return None
    actuator = open_actuator(url)
    actuator.connect()
    return actuator


def _start_event(
    options: RunOptions, model: str, backend: str, threshold: float, calibration: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The log line that opens a run (part ids restart at 0 with every run); addresses without credentials."""
    eject = options.ejector
    if eject.fail_open:
        log.warning("--fail-open: parts without a verdict (timeouts, errors, dropped) will PASS")
    return {
        "type": "event", "event": "start", "time": time.time(), "bundle": str(options.bundle), "model": model,
        "backend": backend, "source": redact(options.source), "actuator": redact(options.actuator),
        "alarm": redact(options.alarm), "publish": redact(options.publish), "fault_stops_heartbeat": eject.fault_stops_heartbeat,
        "threshold": threshold,
        "delay_ms": eject.delay_s * 1000, "delay_counts": eject.delay_counts, "pulse_ms": eject.pulse_s * 1000,
        "deadline_ms": eject.deadline_s * 1000, "fail_open": eject.fail_open, "class": options.class_name,
        "save_rejects": str(options.save_rejects.resolve()) if options.save_rejects else None,
        "calibration": calibration,
    }  # fmt: skip


def _page_info(options: RunOptions, model: str, backend: str, threshold: float) -> dict[str, Any]:
    """What the dashboard's title shows about this run."""
    return {
        "bundle": options.bundle.name, "model": model, "backend": backend, "source": redact(options.source),
        "threshold": threshold, "class": options.class_name,
    }  # fmt: skip


def run_line(options: RunOptions) -> dict[str, Any]:
    """Open everything, run until the source ends / --max-parts / a signal; return the summary."""
    check_options(options)
    bundle = load_bundle(options.bundle)
    threshold = resolve_threshold(bundle, options.threshold, options.class_name)
    factory = source_factory(options.source, rate=options.capture.rate)
    capture = Capture(factory, options.capture)
    run_id = new_run_id()  # in every log record and every reject file name: part ids restart each run
    results = ResultsLog(options.log_path, options.log_policy, run_id)
    capture.on_event = results.write  # an outage without --rate is an event in the log
    rejects = RejectStore(options.save_rejects, options.save_cap_bytes, run_id) if options.save_rejects else None
    providers = list(options.providers) if options.providers else None
    outputs: dict[str, Actuator] = {}
    counter = ModbusCounter(options.encoder) if options.encoder else None
    dashboard: LiveDashboard | None = None
    publisher: MqttPublisher | None = None
    try:
        dashboard = LiveDashboard(options.dashboard) if options.dashboard else None
        publisher = MqttPublisher(options.publish, run_id) if options.publish else None
        backend = open_backend(bundle, options.backend, options.engine, providers, options.threads)
        with backend:
            warm_ms = backend.warmup(options.warmup)
            log.info("backend %s ready (warm-up inference %.1f ms), threshold %.4g", backend.name, warm_ms, threshold)
            deadline_ms = options.ejector.deadline_s * 1000
            if options.encoder is None and warm_ms > 0.8 * deadline_ms:
                log.warning(
                    "inference takes %.0f ms but parts must be decided within %.0f ms: most parts will time out "
                    "and be rejected; raise --delay-ms/--timeout-ms or use a faster backend",
                    warm_ms,
                    deadline_ms,
                )
            calibration = calibration_record(bundle, backend, options.class_name) if options.threshold is None else None
            if calibration and calibration["mismatch"]:
                log.warning("THRESHOLD NOT CALIBRATED FOR THIS LINE: %s", calibration["mismatch"])
            for role, url in (("reject", options.actuator), ("heartbeat", options.heartbeat), ("alarm", options.alarm)):
                output = _connect(url)
                if output is not None:
                    outputs[role] = output  # kept as soon as connected, so `finally` switches it off
            if counter is not None:
                counter.connect()
            source = capture.open()
            pipeline = Pipeline(
                capture, backend, results, threshold, options.ejector, outputs["reject"],
                heartbeat=outputs.get("heartbeat"), alarm=outputs.get("alarm"),
                paced=source.live or options.capture.rate is not None,
                queue_size=options.queue_size, rejects=rejects, track=EncoderTrack(counter) if counter else None,
                observer=fan_out(dashboard.feed if dashboard else None, publisher),
            )  # fmt: skip
            if publisher is not None:
                publisher.start(status=lambda: line_status(pipeline))
            if dashboard is not None:
                dashboard.start(pipeline, _page_info(options, bundle.manifest.model, backend.name, threshold))
            render = pipeline.status if publisher is None else lambda: f"{pipeline.status()} | {publisher.brief()}"
            status = StatusLine(render) if options.status else None
            with _signals(pipeline):
                if status is not None:
                    status.start()
                start = _start_event(options, bundle.manifest.model, backend.name, threshold, calibration)
                results.write({**start, "frame_counter": source.counter_kind})
                try:
                    counters = pipeline.run()
                finally:
                    if status is not None:
                        status.stop()
            summary = summarize(pipeline, warm_ms, counters)
            if publisher is not None:  # the last records and a `stopped` status (waits at most 5 s for the broker)
                summary["publish"] = publisher.close()
            results.write({"type": "event", "event": "stop", "time": time.time(), "summary": summary})
            return summary
    finally:
        capture.stop.set()
        if dashboard is not None:
            dashboard.stop()
        if publisher is not None:
            publisher.close()
        if counter is not None:
            counter.close()
        for output in outputs.values():
            output.close()
        if rejects is not None:
            rejects.close()
        results.close()


def _finite(value: float) -> float | None:
    return round(value, 3) if math.isfinite(value) else None


def summarize(pipeline: Pipeline, warm_ms: float, counters: Counters) -> dict[str, Any]:
    """What the run did, for the console and for tests/benchmarks."""
    capture, ejector = pipeline.capture.stats, pipeline.ejector
    outputs = [o.health() for o in (ejector.actuator, ejector.heartbeat, ejector.alarm) if o is not None]
    p50, p99 = (_finite(v) for v in pipeline.total_ms.percentiles(50, 99))
    o50, o99 = (_finite(v) for v in pipeline.overhead_ms.percentiles(50, 99))
    c50, c99 = (_finite(v) for v in pipeline.overhead_cpu_ms.percentiles(50, 99))
    return {
        "backend": pipeline.backend.name,
        "warmup_ms": round(warm_ms, 3),
        "frames": capture.frames,
        "decisions": counters.decisions,
        "verdicts": dict(counters.verdicts),
        "dropped": counters.dropped,
        "timeouts": counters.timeouts,
        "late_results": counters.late,
        "backend_errors": counters.backend_errors,
        "bad_frames": capture.bad_frames,
        "missed": capture.missed,
        "dropped_frames": capture.dropped_frames,
        "counter_restarts": capture.counter_restarts,
        "outages": capture.outages,
        "pulses": ejector.pulses,
        "eject": dict(ejector.outcomes),
        "actuator_errors": ejector.actuator_errors,
        "outputs": outputs,
        "output_failed": any(output["errors"] or not output["ok"] for output in outputs),
        "faults": dict(pipeline.health.seen),  # how often each link of the chain became unhealthy
        "encoder_errors": ejector.track.errors if ejector.track is not None else 0,
        "actuation_errors": ejector.loop_errors,
        "rejects_saved": pipeline.rejects.saved if pipeline.rejects else 0,
        "latency_ms": {"p50": p50, "p99": p99},
        "overhead_ms": {"p50": o50, "p99": o99},
        "overhead_cpu_ms": {"p50": c50, "p99": c99},
        "run_id": pipeline.results.run_id,
        "log_lines": pipeline.results.lines,
        "log_errors": pipeline.results.errors,
        "log_rotations": pipeline.results.rotations,
        "rejects_deleted_for_cap": pipeline.rejects.deleted if pipeline.rejects else 0,
    }
