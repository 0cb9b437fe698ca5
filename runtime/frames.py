"""A captured frame: one part's image (or why there is none), its part id and capture times."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass
class Frame:
    """One part as the capture stage saw it.

    `image` is None when the part could not be imaged (unreadable or corrupt frame, or a part missed
    while the source was stalled); `error` then says why and the part gets an ERROR verdict, and
    `cause` names the kind of failure for the log (`frame_dropped`: the source's counter skipped
    this part; `source_down`: missed during an outage). `counter` is the source's own frame counter
    (see FrameSource), None when the source has none.
    """

    part_id: int
    capture_mono: float  # time.monotonic() at capture; all deadlines are on this clock
    capture_time: float  # time.time() at capture, for the log
    image: np.ndarray | None  # (H, W, 3) uint8 BGR, ROI-cropped
    error: str | None = None
    handoff_mono: float = 0.0  # when the capture stage queued it for inference
    capture_cpu_ms: float = 0.0  # CPU time the capture stage spent on it (checks, registration, hand-off)
    counter: int | None = None  # the source's own frame counter, as the source reported it
    cause: str | None = None  # why there is no image, as a fixed word: "frame_dropped", "source_down"

    @classmethod
    def now(cls, part_id: int, image: np.ndarray | None, error: str | None = None, counter: int | None = None) -> Frame:
        """A frame stamped with the current time."""
        return cls(part_id, time.monotonic(), time.time(), image, error, counter=counter)

    @classmethod
    def arrived(
        cls, part_id: int, arrived_mono: float, image: np.ndarray | None, error: str | None, counter: int | None
    ) -> Frame:
        """A frame stamped with when it arrived (`time.monotonic()`, earlier than now), wall time to match."""
        wall = time.time() - (time.monotonic() - arrived_mono)
        return cls(part_id, arrived_mono, wall, image, error, counter=counter)


def frame_problem(image: np.ndarray | None) -> str | None:
    """Why `image` cannot be inspected (None if it can): missing, wrong type/shape, or blank."""
    if image is None:
        return "no image"
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        return f"frame is not a uint8 array ({getattr(image, 'dtype', type(image).__name__)})"
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 8 or image.shape[1] < 8:
        return f"frame has shape {image.shape}, expected (H, W, 3) BGR"
    sample = image[::8, ::8]  # 1/64 of the pixels is enough to tell a blank frame, at 1/64 of the cost
    if int(sample.max()) == int(sample.min()):
        return "frame is uniform (camera blanked or corrupt)"
    return None
