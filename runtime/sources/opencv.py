"""OpenCV capture: camera index, video file, RTSP/HTTP stream, or GStreamer pipeline (Jetson)."""

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

    def read(self) -> tuple[np.ndarray | None, str | None]:
        """Next frame; a live source that stops delivering raises EndOfSource (the watchdog reopens it)."""
        ok, image = self._capture.read()
        if not ok:
            raise EndOfSource(f"{self._name}: no more frames")
        return image, None

    def close(self) -> None:
        """Release the capture."""
        self._capture.release()

    def describe(self) -> str:
        return self._name
