"""The capture stage: part ids, ROI, replay pacing, and a watchdog that reopens a stalled source.

Frames are read by a reader thread per opened source and handed over through a small queue, so a
read that hangs inside a camera driver or a dead stream cannot block the line: after `stall_s`
without a frame the source is abandoned (its thread releases it if the read ever returns) and a new
one is opened with exponential back-off. Parts that passed while the source was down are emitted as
frames without an image (so they get an ERROR verdict and are logged) when the part rate is known;
without it, the outage is one `outage` event (its duration, and a part estimate from the source's
frame rate when it reports one) and the line is unhealthy (heartbeat stopped) while it lasts.

Part accounting: when the source numbers its frames (`FrameSource.counter_kind`), every counter value
it skipped becomes a part of its own without an image (cause `frame_dropped`, an ERROR verdict, so
it is rejected under fail-safe), emitted before the frame that revealed the gap. Part ids stay one
run-wide sequence without holes; each frame's record carries the source's counter too.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lineside.errors import LinesideError
from lineside.runtime.frames import Frame
from lineside.runtime.sources.accounting import CounterTrack
from lineside.runtime.sources.base import EndOfSource, FrameSource

log = logging.getLogger(__name__)

# The reader decodes the next frame in bulk; stamping a part, handing it to inference and timing its
# pulse must not wait behind that. Measured on 2 cores (edge INT8 CRR, 65-69 parts/s): runtime
# overhead p99 3.2-5.6 ms with the reader 10 nice levels lower, 5.1-5.7 ms without.
READER_NICENESS = 10


def lower_thread_priority(steps: int) -> None:
    """Make the calling thread `steps` nice levels lower (Linux threads have their own); no-op elsewhere."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + steps))
    except (AttributeError, OSError) as exc:  # no per-thread priorities here, or not permitted
        log.debug("thread priority unchanged: %s", exc)


@dataclass(frozen=True)
class CaptureConfig:
    """How frames are taken from a source."""

    rate: float | None = None  # replay: frames/s; live: the line's part rate, to count parts missed in outages
    roi: tuple[int, int, int, int] | None = None  # x, y, width, height in source pixels
    stall_s: float = 2.0  # a live source silent this long is reopened
    backoff_s: float = 0.5  # first reopen delay, doubled per failure
    backoff_max_s: float = 10.0
    max_parts: int | None = None


@dataclass
class CaptureStats:
    """Counters the status line and the final report show."""

    frames: int = 0
    bad_frames: int = 0
    missed: int = 0  # parts counted from --rate while the source was down
    dropped_frames: int = 0  # counter values the source skipped (frames dropped before the reader)
    counter_restarts: int = 0  # counter went backwards or jumped implausibly (not counted as drops)
    outages: int = 0
    source_up: bool = False


class _End:
    def __init__(self, why: str) -> None:
        self.why = why


def crop(image: np.ndarray, roi: tuple[int, int, int, int] | None) -> tuple[np.ndarray | None, str | None]:
    """The ROI of `image` (a view), or (None, why) when the ROI does not fit the frame."""
    if roi is None:
        return image, None
    x, y, width, height = roi
    if x + width > image.shape[1] or y + height > image.shape[0]:
        return None, f"ROI {roi} does not fit the {image.shape[1]}x{image.shape[0]} frame"
    return image[y : y + height, x : x + width], None


def _reader(source: FrameSource, items: queue.Queue, alive: threading.Event) -> None:
    """Read frames into `items` until the source ends or the capture stage abandons this source."""
    lower_thread_priority(READER_NICENESS)
    try:
        while alive.is_set():
            try:
                source.last_arrival = None
                image, error = source.read()
                arrived = source.last_arrival or time.monotonic()
                item: object = (image, error, source.last_counter, arrived)  # this very frame's counter and time
            except EndOfSource as exc:
                item = _End(str(exc))
            except Exception as exc:  # a driver error is a lost source, not a crash of the line
                item = _End(f"{type(exc).__name__}: {exc}")
            while alive.is_set():
                try:
                    items.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if isinstance(item, _End):
                return
    finally:
        source.close()


class Capture:
    """Runs in the capture thread; calls `emit(frame)` for every part, in part-id order."""

    def __init__(
        self,
        factory: Callable[[], FrameSource],
        config: CaptureConfig,
        on_event: Callable[[dict[str, object]], None] | None = None,
    ) -> None:
        self.config = config
        self.stats = CaptureStats()
        self.stop = threading.Event()  # set to end capture (signal, shutdown)
        self.on_event = on_event  # receives events for the results log (an outage without --rate)
        self._factory = factory
        self._next_id = 0
        self._source: FrameSource | None = None
        self._last_mono: float | None = None
        self._after_outage = False
        self._down_since: float | None = None

    def open(self) -> FrameSource:
        """Open the source the first time; a source that cannot be opened now is a user error."""
        try:
            self._source = self._factory()
        except EndOfSource as exc:
            raise LinesideError(f"{exc}: check --source (device present? URL reachable?)") from exc
        self.stats.source_up = True
        say_accounting(self._source, self.config.rate)
        return self._source

    def run(self, emit: Callable[[Frame], None]) -> None:
        """Capture until the source ends (file/folder), `max_parts` is reached, or stop is set."""
        source = self._source or self.open()
        while not self.stop.is_set():
            finished = self._pump(source, emit)
            self.stats.source_up = False
            if finished or not source.live:
                return
            self.stats.outages += 1
            self._after_outage = True
            self._down_since = time.monotonic()
            source = self._reopen()
            if source is None:
                return
            self.stats.source_up = True

    def _reopen(self) -> FrameSource | None:
        """Open a fresh source with exponential back-off; None once stop is set."""
        delay, failures = self.config.backoff_s, 0
        while not self.stop.wait(delay):
            try:
                source = self._factory()
                log.warning("source reopened after %d failed attempt(s)", failures)
                return source
            except (EndOfSource, LinesideError) as exc:
                failures += 1
                log.warning("reopen failed (%s); next try in %.1f s", exc, min(delay * 2, self.config.backoff_max_s))
                delay = min(delay * 2, self.config.backoff_max_s)
        return None

    def _pump(self, source: FrameSource, emit: Callable[[Frame], None]) -> bool:
        """Frames from one opened source; True when capture is finished, False when the source was lost."""
        items: queue.Queue = queue.Queue(maxsize=2)
        alive = threading.Event()
        alive.set()
        threading.Thread(target=_reader, args=(source, items, alive), name="lineside-reader", daemon=True).start()
        period = 1.0 / self.config.rate if self.config.rate else None
        start = time.monotonic()
        track = counter_track(source, self.config.rate)
        try:
            while not self.stop.is_set():
                try:
                    item = items.get(timeout=self.config.stall_s if source.live else 0.5)
                except queue.Empty:
                    if source.live:
                        log.warning(
                            "%s stalled: no frame for %.1f s, reopening", source.describe(), self.config.stall_s
                        )
                        return False
                    continue
                if isinstance(item, _End):
                    log.warning("%s: %s", source.describe(), item.why)
                    return not source.live
                if period is not None and not source.live:
                    self.stop.wait(max(0.0, start + self.stats.frames * period - time.monotonic()))
                if source.live:
                    self._emit_missed(emit, source)
                if not self._emit_dropped(emit, track, item[2]) or self._done():
                    return True
                image, error, counter, arrived = item
                # a live frame is timed from its arrival; a replayed one is "captured" when the replay releases it
                emit(self._frame(image, error, counter, arrived if source.live else time.monotonic()))
                if self._done():
                    return True
            return True
        finally:
            alive.clear()

    def _done(self) -> bool:
        return self.config.max_parts is not None and self._next_id >= self.config.max_parts

    def _frame(self, image: np.ndarray | None, error: str | None, counter: int | None, arrived: float) -> Frame:
        if image is not None:
            image, error = crop(image, self.config.roi)
        frame = Frame.arrived(self._next_id, arrived, image, error, counter)
        self._next_id += 1
        self.stats.frames += 1
        self.stats.bad_frames += int(error is not None)
        self._last_mono = frame.capture_mono
        return frame

    def _emit_dropped(self, emit: Callable[[Frame], None], track: CounterTrack | None, counter: int | None) -> bool:
        """An image-less part (cause frame_dropped) per counter value skipped before `counter`; False at max-parts."""
        if track is None:
            return True
        now = time.monotonic()
        restarts = track.restarts
        skipped = track.step(counter, now)
        self.stats.counter_restarts += track.restarts - restarts
        last = self._last_mono if self._last_mono is not None else now
        wall_offset = time.time() - now
        for k, value in enumerate(skipped, start=1):
            if self._done():
                return False
            mono = last + k * (now - last) / (len(skipped) + 1)  # spread over the gap, in counter order
            why = f"frame_dropped: the source's {track.kind} skipped {value}"
            emit(Frame(self._next_id, mono, mono + wall_offset, None, why, counter=value, cause="frame_dropped"))
            self._next_id += 1
            self.stats.dropped_frames += 1
        return True

    def _emit_missed(self, emit: Callable[[Frame], None], source: FrameSource) -> None:
        """After an outage, emit an image-less frame for each part that passed meanwhile (needs --rate)."""
        if not self._after_outage:
            return
        self._after_outage = False
        if self._last_mono is None or not self.config.rate:
            self._outage_event(source)
            return
        gap = time.monotonic() - self._last_mono
        missed = max(0, round(gap * self.config.rate) - 1)
        wall_offset = time.time() - time.monotonic()
        for k in range(1, missed + 1):
            if self._done():
                break
            mono = self._last_mono + k / self.config.rate
            emit(Frame(self._next_id, mono, mono + wall_offset, None, "missed: source was down", cause="source_down"))
            self._next_id += 1
            self.stats.missed += 1

    def _outage_event(self, source: FrameSource) -> None:
        """Without --rate the parts that passed during an outage cannot be counted: log and record the outage."""
        now = time.monotonic()
        down_s = now - (self._down_since if self._down_since is not None else now)
        seen_s = now - self._last_mono if self._last_mono is not None else down_s
        fps = source.nominal_fps
        estimate = round(seen_s * fps) if fps else None
        log.error(
            "parts passed unrecorded while the source was down for %.1f s (about %s); pass --rate to count and "
            "reject them", down_s, estimate if estimate is not None else "an unknown number",
        )  # fmt: skip
        if self.on_event is not None:
            event = {"type": "event", "event": "outage", "time": time.time(), "down_s": round(down_s, 3)}
            gap = {"since_last_frame_s": round(seen_s, 3), "source_fps": fps}
            self.on_event({**event, **gap, "parts_unaccounted_estimate": estimate})


def counter_track(source: FrameSource, rate: float | None) -> CounterTrack | None:
    """A fresh counter track for one opened source (None when it has no counter): a reopen restarts the count."""
    if source.counter_kind is None:
        return None
    fps = rate or source.nominal_fps
    return CounterTrack(source.counter_kind, source.counter_min, source.counter_max, fps)


def say_accounting(source: FrameSource, rate: float | None) -> None:
    """One start-up line: how parts are accounted with this source."""
    if source.counter_kind is not None:
        log.info("%s numbers its frames (%s): dropped frames are rejected as frame_dropped",
                 source.describe(), source.counter_kind)  # fmt: skip
    elif source.live:
        mode = "parts missed in outages are counted from --rate" if rate else "pass --rate to count outage parts"
        log.warning("%s has no frame counter: frames dropped before the reader cannot be detected; %s",
                    source.describe(), mode)  # fmt: skip
    else:
        log.info("%s has no frame counter (a replay drops no frames)", source.describe())
