"""The one host-side pre-processing step shared by training, export, calibration and runtime.

Everything after this (BGR->RGB, scaling, normalisation, NCHW) lives inside the model graph,
so the runtime only resizes (and optionally crops) camera frames.
"""

from __future__ import annotations

import cv2
import numpy as np


def resize_for_model(image_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, 3) uint8 BGR image to the model's (height, width), area-averaged when shrinking."""
    height, width = size
    if image_bgr.shape[:2] == (height, width):
        return np.ascontiguousarray(image_bgr)
    shrinking = image_bgr.shape[0] > height or image_bgr.shape[1] > width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image_bgr, (width, height), interpolation=interpolation)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a boolean (H, W) mask to (height, width) with nearest-neighbour sampling."""
    height, width = size
    if mask.shape == (height, width):
        return mask.astype(bool, copy=False)
    return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
