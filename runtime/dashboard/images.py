"""JPEGs for the page: the model input with its anomaly heatmap blended in, scaled to fit the page."""

from __future__ import annotations

import cv2
import numpy as np

from lineside.runtime.results import encode_jpeg, heatmap_overlay

MAX_SIDE = 480  # pixels: the page never needs more, and small JPEGs keep encoding cheap
PAGE_JPEG_QUALITY = 85


def fit(image: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """`image` scaled down (never up) so its longer side is at most `max_side`."""
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return image
    return cv2.resize(
        image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
    )


def render(image: np.ndarray, anomaly_map: np.ndarray | None, threshold: float | None, heatmap: bool) -> bytes:
    """The part as a JPEG; with `heatmap`, the anomaly map blended in (red = twice the threshold)."""
    if heatmap and anomaly_map is not None:
        if anomaly_map.shape != image.shape[:2]:
            anomaly_map = cv2.resize(anomaly_map, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
        image = heatmap_overlay(image, anomaly_map, threshold or 0.0)
    return encode_jpeg(fit(image), PAGE_JPEG_QUALITY)
