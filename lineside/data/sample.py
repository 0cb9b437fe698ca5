"""One labelled image of a data set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lineside.data.images import MASK_THRESHOLD, load_image, load_mask
from lineside.errors import LinesideError

GOOD = "good"
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Sample:
    """An image with its category, split ("train" | "test"), defect type ("good" if normal) and optional mask.

    `mask_threshold`: a mask pixel is defective where its value is > this (127 for 0/255 masks, 0 for VisA's
    label masks).
    """

    image_path: Path
    category: str
    split: str
    defect_type: str
    mask_path: Path | None = None
    mask_threshold: int = MASK_THRESHOLD

    @property
    def label(self) -> int:
        """0 for a good image, 1 for a defect."""
        return 0 if self.defect_type == GOOD else 1

    def load_image(self) -> np.ndarray:
        """The image as (H, W, 3) uint8 BGR."""
        return load_image(self.image_path)

    def load_mask(self, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The (H, W) bool defect mask; all False for a good image without a mask.

        `shape` is the image's (H, W); without it the image is read to find it.
        """
        if shape is None:
            shape = self.load_image().shape[:2]
        if self.mask_path is not None:
            return load_mask(self.mask_path, shape, self.mask_threshold)
        if self.label == 0:
            return np.zeros(shape[:2], bool)
        raise LinesideError(f"{self.image_path}: defect image has no ground-truth mask; pixel metrics need one")

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """(image (H, W, 3) uint8 BGR, mask (H, W) bool)."""
        image = self.load_image()
        return image, self.load_mask(image.shape[:2])
