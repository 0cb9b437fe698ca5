"""OpenCV capture: camera index, video file, RTSP/HTTP stream, or GStreamer pipeline (Jetson).

Frame counters (part accounting, see FrameSource): a video file numbers its frames
(`frame_index`, CAP_PROP_POS_FRAMES). A GStreamer pipeline with a fixed frame rate numbers them by
buffer timestamp (`gst_pts`: CAP_PROP_POS_MSEC x fps): OpenCV's CAP_PROP_POS_FRAMES there only counts
the frames OpenCV itself pulled (measured: it never skips when appsink drops), while the timestamp
jumps by the dropped frames' periods. Camera indices (V4L2) and RTSP/HTTP streams expose no counter
through OpenCV: their drops cannot be seen, which the capture stage says at start-up.
"""

from __future__ import annotations

import logging
import re

import cv2
import numpy as np

from lineside.errors import LinesideError
from lineside.runtime.sources.base import EndOfSource, FrameSource

log = logging.getLogger(__name__)

APPSINK_OPTIONS = "drop=true max-buffers=1 sync=false"


def gstreamer_pipeline(spec: str) -> str:
    """The pipeline with `appsink drop=true max-buffers=1`, so a slow reader gets the newest frame."""
    match = re.search(r"appsink\b([^!]*)$", spec)
    if match is None:
        raise LinesideError(f"GStreamer pipeline must end in appsink, got: {spec}")
    options = match.group(1)
    missing = [opt for opt in APPSINK_OPTIONS.split() if opt.split("=")[0] not in options]
    return spec + (" " + " ".join(missing) if missing else "")


def has_gstreamer() -> bool:
    """Whether this OpenCV build can open GStreamer pipelines."""
    info = cv2.getBuildInformation()
    return re.search(r"GStreamer:\s+YES", info) is not None


class OpenCvSource(FrameSource):
    """A cv2.VideoCapture. Live sources (cameras, streams) are reopened by the watchdog when lost."""

    def __init__(self, target: int | str, *, live: bool, gstreamer: bool = False) -> None:
        self.live = live
        self._name = f"camera {target}" if isinstance(target, int) else str(target)
        if gstreamer:
            if not has_gstreamer():
                raise LinesideError(
                    "this OpenCV build has no GStreamer support: on a Jetson use the JetPack OpenCV "
                    "(python3-opencv), not opencv-python from PyPI"
                )
            self._capture = cv2.VideoCapture(gstreamer_pipeline(str(target)), cv2.CAP_GSTREAMER)
        else:
            self._capture = cv2.VideoCapture(target)
        if not self._capture.isOpened():
            self._capture.release()
            raise EndOfSource(f"cannot open {self._name}")
        if live and not gstreamer:
            self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a backlog
        fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.nominal_fps = fps if 0.0 < fps < 1000.0 else None
        if not live:
            self.counter_kind = "frame_index"
        elif gstreamer and self.nominal_fps is not None:
            self.counter_kind = "gst_pts"
        self._first_ms: float | None = None  # the first frame's timestamp: counters count periods from it

    def read(self) -> tuple[np.ndarray | None, str | None]:
        """Next frame; a live source that stops delivering raises EndOfSource (the watchdog reopens it)."""
        ok, image = self._capture.read()
        if not ok:
            raise EndOfSource(f"{self._name}: no more frames")
        self.last_counter = self._counter()
        return image, None

    def _counter(self) -> int | None:
        """This frame's number: file frame index, or buffer timestamp in frame periods (GStreamer)."""
        if self.counter_kind == "frame_index":
            return int(self._capture.get(cv2.CAP_PROP_POS_FRAMES)) - 1  # the position is the NEXT frame
        if self.counter_kind == "gst_pts" and self.nominal_fps is not None:
            stamp_ms = float(self._capture.get(cv2.CAP_PROP_POS_MSEC))
            if self._first_ms is None:
                self._first_ms = stamp_ms  # measuring from here keeps every value near a whole period
            return round((stamp_ms - self._first_ms) * self.nominal_fps / 1000.0)
        return None

    def close(self) -> None:
        """Release the capture."""
        self._capture.release()

    def describe(self) -> str:
        return self._name
