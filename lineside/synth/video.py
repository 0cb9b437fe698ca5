"""Synthetic camera footage for runtime tests: a sequence of part images written as an MJPG AVI."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from lineside.errors import LinesideError


def write_parts_video(
    path: str | Path, images: Iterable[np.ndarray], fps: float = 10.0, repeat: int = 1, codec: str = "MJPG"
) -> int:
    """Write (H, W, 3) uint8 BGR frames (all the same size) to an `.avi`; each image is held `repeat` frames.

    `codec` is a FourCC: "MJPG" (lossy, like most cameras) or a lossless one such as "FFV1" (frames read back
    bit-exact, so scores match the still images).

    Returns the number of frames written. The file is written to a temporary name and renamed when complete.
    """
    target = Path(path)
    if target.suffix.lower() != ".avi":
        raise LinesideError(f"{target}: write_parts_video writes an .avi container; use a .avi path")
    if fps <= 0 or repeat < 1:
        raise LinesideError(f"fps must be > 0 and repeat >= 1 (got fps={fps}, repeat={repeat})")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.partial.avi")
    writer: cv2.VideoWriter | None = None
    frames = 0
    try:
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise LinesideError(f"video frames must be (H, W, 3) uint8 BGR, got {image.shape} {image.dtype}")
            height, width = image.shape[:2]
            if writer is None:
                writer = cv2.VideoWriter(str(partial), cv2.VideoWriter.fourcc(*codec), fps, (width, height))
                if not writer.isOpened():
                    raise LinesideError(f"OpenCV cannot write {codec} video to {partial}")
                size = (height, width)
            if (height, width) != size:
                raise LinesideError(f"all video frames must be {size[0]}x{size[1]}, got {height}x{width}")
            for _ in range(repeat):
                writer.write(image)
                frames += 1
        if writer is None:
            raise LinesideError("write_parts_video needs at least one image")
        writer.release()
        writer = None
        partial.replace(target)
    finally:
        if writer is not None:
            writer.release()
        partial.unlink(missing_ok=True)
    return frames
