"""The line-side loop: capture -> inference -> decision -> scheduled actuation, logged.

Threads and queues:
    capture   (Capture.run)   frames -> `frames` queue (bounded, `queue_size`)
    inference (this module)   frames -> backend -> verdict -> Ejector.resolve + results log
    actuation (Ejector.run)   deadlines, reject pulses, heartbeat, alarm; never writes a file
    records   (this module)   the Ejector's events (timeouts, pulse outcomes) -> results log
Drop policy: a paced source (camera, stream, or replay with --rate) never waits for inference; when
the queue is full the OLDEST queued part is dropped and gets an ERROR verdict (so it is rejected,
and logged), keeping the newest parts inside their deadlines. An unpaced replay (file or folder
without --rate) waits instead, so a benchmark replay loses no frame. Every part gets exactly one
decision record: the first of (its verdict, its deadline) wins, arbitrated by the Ejector. A part
that gets a reject pulse is logged when the pulse is over, with what the output really did (`eject`).
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import cv2
import numpy as np

from lineside.preprocess import resize_for_model
from lineside.runtime.actuators.base import Actuator
from lineside.runtime.backends.base import BackendError, InferenceBackend
from lineside.runtime.decision import Eject, Verdict, decide
from lineside.runtime.ejector import EjectEvent, Ejector, EjectorConfig
from lineside.runtime.encoder import EncoderTrack
from lineside.runtime.frames import Frame, frame_problem
from lineside.runtime.health import LineHealth, health_text
from lineside.runtime.records import DecisionObserver, PartRecords
from lineside.runtime.results import RejectStore, ResultsLog
from lineside.runtime.sources.capture import Capture
from lineside.runtime.stats import Rolling

log = logging.getLogger(__name__)

T = TypeVar("T")

UNHEALTHY_AFTER_ERRORS = 3  # consecutive backend failures that stop the heartbeat
# A thread waiting for the GIL gets it after at most this long (Python's default is 5 ms): the capture
# hand-off, decision and pulse scheduling are short bursts of Python that must not queue behind another
# thread's; measured on 2 cores, overhead p99 4.0-4.7 ms at 0.5 ms vs 5.0-5.4 ms at the default.
GIL_SWITCH_S = 0.0005
# OpenCV splits a large resize across its own pool; with inference holding the other cores, each resize
# then waits for a busy core. On 2 cores (edge INT8 CRR, ~70 parts/s) the overhead p99 was 2.3-5.6 ms
# with OpenCV's default pool and 2.3-3.5 ms with one thread, over 7 rounds each.
OPENCV_THREADS = 1


@contextmanager
def temporarily(get: Callable[[], T], set_to: Callable[[T], Any], value: T) -> Iterator[None]:
    """Set a process-wide setting (read by `get`, written by `set_to`) to `value` for the block, then restore it."""
    previous = get()
    set_to(value)
    try:
        yield
    finally:
        set_to(previous)


@dataclass
class Counters:
    """Decisions by verdict plus the ways a part can fail."""

    verdicts: dict[str, int] = field(default_factory=lambda: {v.value: 0 for v in Verdict})
    dropped: int = 0
    timeouts: int = 0
    late: int = 0
    backend_errors: int = 0

    @property
    def decisions(self) -> int:
        return sum(self.verdicts.values())


class Pipeline:
    """Wires a capture, a backend, an ejector and the logs; `run()` blocks until the line stops."""

    def __init__(
        self,
        capture: Capture,
        backend: InferenceBackend,
        results: ResultsLog,
        threshold: float,
        ejector: EjectorConfig,
        actuator: Actuator,
        *,
        heartbeat: Actuator | None = None,
        paced: bool,
        queue_size: int = 4,
        rejects: RejectStore | None = None,
        track: EncoderTrack | None = None,
        observer: DecisionObserver | None = None,
        alarm: Actuator | None = None,
    ) -> None:
        self.capture = capture
        self.backend = backend
        self.results = results
        self.threshold = threshold
        self.paced = paced
        self.rejects = rejects
        self.observer = observer
        self.health = LineHealth(ejector.hold_s)
        self.health.add("source", lambda: None if capture.stats.source_up else "no frames from the source")
        self.health.add("backend", self._backend_fault)
        self.ejector = Ejector(actuator, ejector, heartbeat=heartbeat, alarm=alarm, track=track, health=self.health)
        self.records = PartRecords(results, observer)
        self.counters = Counters()
        self.total_ms = Rolling()
        self.overhead_ms = Rolling()  # wall time of everything but inference and queue waiting
        self.overhead_cpu_ms = Rolling()  # CPU time of the same: the runtime's own cost, whatever the load
        self.stop = capture.stop  # graceful: stop capturing, decide what is in flight
        self.abort = threading.Event()  # second signal: stop now
        self._frames: queue.Queue[Frame] = queue.Queue(maxsize=queue_size)
        self._captured: dict[int, Frame] = {}
        self._lock = threading.Lock()
        self._capture_done = threading.Event()
        self._consecutive_errors = 0

    # ---- health and status -------------------------------------------------------------------------------
    def healthy(self) -> bool:
        """Source delivering, backend answering, encoder readable, every output written: the heartbeat toggles only then."""
        return self.health.ok()

    def _backend_fault(self) -> str | None:
        errors = self._consecutive_errors
        return f"{errors} inferences failed in a row" if errors >= UNHEALTHY_AFTER_ERRORS else None

    def status(self) -> str:
        """One status line: fps, latency percentiles, decisions, rejects, errors."""
        p50, p99 = self.total_ms.percentiles(50, 99)
        verdicts = self.counters.verdicts
        return (
            f"{self.total_ms.rate():5.1f} fps | latency p50 {p50:6.1f} ms p99 {p99:6.1f} ms | "
            f"parts {self.counters.decisions} | rejects {verdicts['REJECT']} | errors {verdicts['ERROR']} "
            f"(dropped {self.counters.dropped}, timeouts {self.counters.timeouts}, missed {self.capture.stats.missed})"
            f" | eject failed {self.ejector.outcomes[Eject.FAILED.value]}"
            f" | {health_text(self.health.faults())}"
        )

    # ---- capture side ------------------------------------------------------------------------------------
    def _emit(self, frame: Frame) -> None:
        """Called by the capture thread for every part."""
        cpu_start = time.thread_time()
        problem = frame.error or frame_problem(frame.image)
        if problem is not None:
            eject = self.ejector.register(frame.part_id, frame.capture_mono, Verdict.ERROR)
            missed = eject is Eject.FAILED
            late = "; it had passed the ejector, NOT rejected" if missed else ""
            detail = {"eject_error": "the part had passed the ejector before it was decided"} if missed else None
            self._record(frame, Verdict.ERROR, f"bad frame: {problem}{late}", None, {}, eject, detail, frame.image)
            if self.rejects is not None and frame.image is not None:
                self.rejects.submit(frame.part_id, frame.image, None, self.threshold)
            return
        with self._lock:
            self._captured[frame.part_id] = frame
        self.ejector.register(frame.part_id, frame.capture_mono)
        frame.handoff_mono = time.monotonic()
        frame.capture_cpu_ms = (time.thread_time() - cpu_start) * 1000
        if not self.paced:
            while not self.abort.is_set():
                try:
                    self._frames.put(frame, timeout=0.1)
                    return
                except queue.Full:
                    continue
            return
        while True:
            try:
                self._frames.put_nowait(frame)
                return
            except queue.Full:
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        try:
            oldest = self._frames.get_nowait()
        except queue.Empty:
            return
        with self._lock:
            self.counters.dropped += 1
        self._finish(oldest, Verdict.ERROR, reason="dropped: inference fell behind (queue full)")

    def _capture_loop(self) -> None:
        try:
            self.capture.run(self._emit)
        except Exception:  # the line must still drain and leave outputs off
            log.exception("capture stage failed")
        finally:
            self._capture_done.set()

    # ---- inference side ----------------------------------------------------------------------------------
    def _inference_loop(self) -> None:
        while not self.abort.is_set():
            try:
                frame = self._frames.get(timeout=0.05)
            except queue.Empty:
                if self._capture_done.is_set():
                    return
                continue
            try:
                self._inspect(frame)
            except Exception as exc:  # an unexpected fault on one frame must not stop the line
                log.exception("inspecting part %d failed", frame.part_id)
                self._consecutive_errors += 1
                with self._lock:
                    pending = frame.part_id in self._captured
                if pending:
                    self._finish(frame, Verdict.ERROR, reason=f"internal error: {type(exc).__name__}: {exc}")

    def _inspect(self, frame: Frame) -> None:
        start, cpu_start = time.monotonic(), time.thread_time()
        image = resize_for_model(frame.image, self.backend.input_size)  # (H, W, 3) uint8
        ready, cpu_ready = time.monotonic(), time.thread_time()
        try:
            result = self.backend.infer(image[None])  # (1, H, W, 3) -> map (1, 1, H, W), score (1,)
        except (BackendError, ValueError) as exc:
            self._consecutive_errors += 1
            self.counters.backend_errors += 1
            self._finish(frame, Verdict.ERROR, reason=str(exc), image=image)
            return
        inferred, cpu_inferred = time.monotonic(), time.thread_time()
        self._consecutive_errors = 0
        score = float(result.score[0])
        verdict = decide(score, self.threshold)
        latency = {
            "capture": (frame.handoff_mono - frame.capture_mono) * 1000,
            "queue": (start - frame.handoff_mono) * 1000,
            "preprocess": (ready - start) * 1000,
            "infer": (inferred - ready) * 1000,
        }
        self._finish(frame, verdict, score=score, latency=latency, image=image, anomaly_map=result.anomaly_map[0, 0])
        post, cpu_post = (time.monotonic() - inferred) * 1000, (time.thread_time() - cpu_inferred) * 1000
        self.overhead_ms.add(latency["capture"] + latency["preprocess"] + post)
        self.overhead_cpu_ms.add(frame.capture_cpu_ms + (cpu_ready - cpu_start) * 1000 + cpu_post)

    # ---- decisions ---------------------------------------------------------------------------------------
    def _finish(
        self,
        frame: Frame,
        verdict: Verdict,
        *,
        reason: str | None = None,
        score: float | None = None,
        latency: dict[str, float] | None = None,
        image: np.ndarray | None = None,
        anomaly_map: np.ndarray | None = None,
    ) -> None:
        """Hand the verdict to the ejector; log it if it was in time, else log a late-result event."""
        eject = self.ejector.resolve(frame.part_id, verdict)
        if eject is None:
            with self._lock:
                self.counters.late += 1
            self.results.write(
                {
                    "type": "event",
                    "event": "late_result",
                    "part_id": frame.part_id,
                    "verdict": verdict.value,
                    "score": score,
                    "time": time.time(),
                }
            )
            return
        self._record(frame, verdict, reason, score, latency or {}, eject, image=image, anomaly_map=anomaly_map)
        if self.rejects is not None and verdict is not Verdict.PASS and image is not None:
            self.rejects.submit(frame.part_id, image, anomaly_map, self.threshold)

    def _on_event(self, event: EjectEvent) -> None:
        """The records thread: a part the Ejector decided by its deadline, or the outcome of a pulse."""
        if event.expired:
            with self._lock:
                frame = self._captured.get(event.part_id)
                if frame is None:
                    return
                self.counters.timeouts += 1
            deadline_ms = self.ejector.config.deadline_s * 1000
            why = event.detail.get("eject_error") or f"no verdict within {deadline_ms:.0f} ms"
            self._record(frame, Verdict.ERROR, f"timeout: {why}", None, {}, event.eject, event.detail, frame.image)
            return
        self.records.outcome(event)

    def _records_loop(self, done: threading.Event) -> None:
        """Turn the Ejector's events into log records until `done` is set and none is left."""
        while True:
            try:
                event = self.ejector.events.get(timeout=0.05)
            except queue.Empty:
                if done.is_set():
                    return
                continue
            try:
                self._on_event(event)
            except Exception:  # one bad record must not stop the others from being written
                log.exception("recording what happened to part %d failed", event.part_id)

    def _record(
        self,
        frame: Frame,
        verdict: Verdict,
        reason: str | None,
        score: float | None,
        latency: dict[str, float],
        eject: Eject,
        detail: dict[str, Any] | None = None,
        image: np.ndarray | None = None,
        anomaly_map: np.ndarray | None = None,
    ) -> None:
        """Log a decision; one with a pulse pending is logged when the Ejector reports the pulse's outcome."""
        now = time.monotonic()
        with self._lock:
            self._captured.pop(frame.part_id, None)
            self.counters.verdicts[verdict.value] += 1
        total = (now - frame.capture_mono) * 1000
        latency = {**latency, "total": total}
        if "infer" in latency:
            self.total_ms.add(total)
        record = {
            "type": "part",
            "part_id": frame.part_id,
            "capture_time": frame.capture_time,
            "decision_time": time.time(),
            "verdict": verdict.value,
            "score": score,
            "threshold": self.threshold,
            "reason": reason,
            **{key: value for key, value in (("cause", frame.cause), ("counter", frame.counter)) if value is not None},
            "eject": eject.value,
            **(detail or ({"eject_error": "the line stopped before the pulse"} if eject is Eject.FAILED else {})),
            "latency_ms": {key: round(value, 3) for key, value in latency.items()},
        }
        self.records.record(record, image, anomaly_map)

    # ---- run ---------------------------------------------------------------------------------------------
    def run(self) -> Counters:
        """Run until the source ends, max parts, or `stop`; then drain: every captured part is decided."""
        with (
            temporarily(sys.getswitchinterval, sys.setswitchinterval, GIL_SWITCH_S),
            temporarily(cv2.getNumThreads, cv2.setNumThreads, OPENCV_THREADS),
        ):
            return self._run_threads()

    def _run_threads(self) -> Counters:
        threads = [
            threading.Thread(target=self._capture_loop, name="lineside-capture", daemon=True),
            threading.Thread(target=self._inference_loop, name="lineside-inference", daemon=True),
        ]
        ejector_stop, records_done = threading.Event(), threading.Event()
        actuation = threading.Thread(
            target=self.ejector.run, args=(ejector_stop, self.abort), name="lineside-actuation", daemon=True
        )
        records = threading.Thread(
            target=self._records_loop, args=(records_done,), name="lineside-records", daemon=True
        )
        actuation.start()
        records.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive() and not self.abort.is_set():
                thread.join(0.1)
        ejector_stop.set()
        while actuation.is_alive() and not self.abort.is_set():
            actuation.join(0.1)
        self._decide_leftovers()
        self.ejector.close()
        records_done.set()
        while records.is_alive() and not self.abort.is_set():
            records.join(0.1)
        if not records.is_alive():
            self.records.unreported()
        return self.counters

    def _decide_leftovers(self) -> None:
        """After an abort, parts still in flight get an ERROR record (their pulses can no longer fire)."""
        with self._lock:
            leftovers = sorted(self._captured.values(), key=lambda f: f.part_id)
        for frame in leftovers:
            self._finish(frame, Verdict.ERROR, reason="aborted before a verdict")
