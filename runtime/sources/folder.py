"""Image-folder replay: the images of a folder in name order, as a camera would deliver them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lineside.data.images import IMAGE_SUFFIXES, list_images, load_image
from lineside.errors import LinesideError
from lineside.runtime.sources.base import EndOfSource, FrameSource


class ImageFolderSource(FrameSource):
    """Replays a folder; an unreadable, corrupt or truncated image is a bad frame (the part gets an ERROR verdict).

    Images are decoded by the same reader as training and calibration (`lineside.data.images`), so
    every stage sees the same pixels and the same suffixes.
    """

    live = False

    def __init__(self, folder: Path, rate: float | None = None) -> None:
        self._folder = folder
        self._paths = self.list_images(folder)
        self._next = 0
        self.nominal_fps = rate

    @staticmethod
    def list_images(folder: Path) -> list[Path]:
        """Image files directly in `folder`, sorted by name; raises LinesideError if there are none."""
        paths = list_images(folder)
        if not paths:
            raise LinesideError(f"image folder {folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return paths

    def read(self) -> tuple[np.ndarray | None, str | None]:
        """The next image, (None, why) if it cannot be read or is truncated; EndOfSource after the last one."""
        if self._next >= len(self._paths):
            raise EndOfSource(f"{self._folder}: all {len(self._paths)} images replayed")
        path = self._paths[self._next]
        self._next += 1
        try:
            return load_image(path), None
        except LinesideError as exc:
            return None, str(exc)

    def close(self) -> None:
        """Nothing to release."""

    def describe(self) -> str:
        return f"folder {self._folder}"
