"""Image-folder replay: the images of a folder in name order, as a camera would deliver them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lineside.errors import LinesideError
from lineside.runtime.sources.base import EndOfSource, FrameSource

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


class ImageFolderSource(FrameSource):
    """Replays a folder; an unreadable image is a bad frame (the part gets an ERROR verdict)."""

    live = False

    def __init__(self, folder: Path, rate: float | None = None) -> None:
        self._folder = folder
        self._paths = self.list_images(folder)
        self._next = 0
        self.nominal_fps = rate

    @staticmethod
    def list_images(folder: Path) -> list[Path]:
        """Image files directly in `folder`, sorted by name; raises LinesideError if there are none."""
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not paths:
            raise LinesideError(f"image folder {folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return paths

    def read(self) -> tuple[np.ndarray | None, str | None]:
        """The next image, (None, why) if it cannot be decoded; EndOfSource after the last one."""
        if self._next >= len(self._paths):
            raise EndOfSource(f"{self._folder}: all {len(self._paths)} images replayed")
        path = self._paths[self._next]
        self._next += 1
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            return None, f"cannot decode {path.name}"
        return image, None

    def close(self) -> None:
        """Nothing to release."""

    def describe(self) -> str:
        return f"folder {self._folder}"
