"""What every frame source provides, and `source_factory` that turns a --source string into one.

A source yields raw (H, W, 3) uint8 BGR images. Part ids, ROI, pacing, stall detection and
reopening are the capture stage's job (`runtime/sources/capture.py`), not the source's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lineside.errors import LinesideError

STREAM_SCHEMES: tuple[str, ...] = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class EndOfSource(Exception):
    """The source has no more frames (end of file) or lost its camera/stream."""


class FrameSource(ABC):
    """A camera, stream, video file or image folder.

    Frame counter (part accounting): a source that numbers its frames itself (a video file's frame
    index, a GStreamer position, a GenICam camera's BlockID / frame id, an encoder-triggered count)
    sets `counter_kind` to a short name of that counter (class or instance attribute, fixed once the
    source is open) and, in every `read()` that returns a frame, sets `last_counter` to that frame's
    counter value (an int; None when this one frame has none). The capture stage reads `last_counter`
    right after `read()` on the same thread, so no locking is needed. It detects gaps: every counter
    value skipped between two frames of one opened source becomes a part of its own with an ERROR
    verdict (cause `frame_dropped`), so a frame the driver dropped is rejected, never silently lost.

    A counter that wraps declares its range: values run `counter_min`..`counter_max` (inclusive) and
    after `counter_max` comes `counter_min` again (e.g. a GigE Vision 16-bit BlockID: min 1, max
    65535; 0 is never sent). `counter_max = None`: the counter does not wrap. A counter that goes
    backwards, repeats, or jumps further than the time since the last frame allows is taken as a
    counter restart (camera reset), not as drops. A reopened source starts a new count: parts lost
    while the source was down are counted from `--rate` (see capture.py), not from the counter.
    Sources without a counter leave `counter_kind = None`; their drops cannot be detected.

    Arrival time: the part's deadlines and its reject pulse are timed from when its frame arrived. A source
    that knows (the moment its bytes came in, before a slow decode) sets `last_arrival` to that
    `time.monotonic()` in `read()`; otherwise the reader stamps the moment `read()` returned, never the later
    hand-off to inference, so a frame that waited behind the reader's queue is not pulsed late. (A replayed
    file or folder is timed from when the replay releases the frame: that is its moment of capture.)
    """

    live: bool = False  # a camera or stream: reopened when lost; a file or folder: ends
    nominal_fps: float | None = None  # frame rate the source reports, when it reports one
    counter_kind: str | None = None  # e.g. "frame_index", "gst_position", "block_id"; None: no counter
    counter_min: int = 0  # lowest counter value (the value after a wrap)
    counter_max: int | None = None  # highest counter value before it wraps; None: never wraps
    last_counter: int | None = None  # counter of the frame the last read() returned
    last_arrival: float | None = None  # time.monotonic() its frame arrived, for sources that know (see above)

    @property
    def has_counter(self) -> bool:
        """Whether frames carry the source's own counter, so dropped frames can be detected."""
        return self.counter_kind is not None

    @abstractmethod
    def read(self) -> tuple[np.ndarray | None, str | None]:
        """The next image, or (None, why) for a frame that exists but is unusable; raises EndOfSource.

        A source with a counter also sets `last_counter` (see the class docstring).
        """

    @abstractmethod
    def close(self) -> None:
        """Release the device or file; safe to call twice."""

    @abstractmethod
    def describe(self) -> str:
        """A short human-readable name for logs."""


def is_gstreamer(spec: str) -> bool:
    """A GStreamer pipeline description (Jetson CSI/USB) rather than a path or URL."""
    return "!" in spec and "appsink" in spec


def source_factory(spec: str, *, rate: float | None = None) -> Callable[[], FrameSource]:
    """Parse a --source value into a factory that opens a fresh source (the watchdog reopens with it).

    `spec` is a camera index ("0"), a video file, an image folder, an RTSP/HTTP stream URL, a
    GStreamer pipeline ending in appsink, or a GenICam camera URL (genicam://, pylon://: genicam.py).
    `rate` is the replay rate of a folder in frames/s, and the software trigger rate of a GenICam camera.
    """
    from lineside.runtime.sources.folder import ImageFolderSource
    from lineside.runtime.sources.opencv import OpenCvSource

    spec = spec.strip()
    if not spec:
        raise LinesideError("--source is empty: give a camera index, video file, image folder, stream URL or pipeline")
    if spec.lower().startswith(("genicam://", "pylon://")):
        from lineside.runtime.sources.genicam import camera_factory

        return camera_factory(spec, rate=rate)
    if spec.isdigit():
        return lambda: OpenCvSource(int(spec), live=True)
    if is_gstreamer(spec):
        return lambda: OpenCvSource(spec, live=True, gstreamer=True)
    if spec.lower().startswith(STREAM_SCHEMES):
        return lambda: OpenCvSource(spec, live=True)
    path = Path(spec)
    if path.is_dir():
        ImageFolderSource.list_images(path)  # fail now, not in the capture thread, when it is empty
        return lambda: ImageFolderSource(path, rate=rate)
    if path.is_file():
        return lambda: OpenCvSource(str(path), live=False)
    raise LinesideError(
        f"--source {spec!r} is not a camera index, an existing video file or image folder, a stream URL "
        "(rtsp://, http://...) or a GStreamer pipeline ending in appsink"
    )
