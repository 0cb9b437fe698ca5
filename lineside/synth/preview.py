"""Contact sheet of a data set: one row per category, good images then defects with mask outlines."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

OUTLINE_BGR = (0, 255, 0)
LABEL_BGR = (255, 255, 255)


def outlined(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Copy of (H, W, 3) `image` with the boundary of (H, W) bool `mask` drawn in green."""
    out = image.copy()
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, OUTLINE_BGR, 1, cv2.LINE_8)
    return out


def _tile(image: np.ndarray, label: str, tile: int) -> np.ndarray:
    small = cv2.resize(image, (tile, tile), interpolation=cv2.INTER_AREA)
    cv2.rectangle(small, (0, 0), (tile - 1, 13), (0, 0, 0), -1)
    cv2.putText(small, label, (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.33, LABEL_BGR, 1, cv2.LINE_AA)
    return small


def contact_sheet(rows: Sequence[Sequence[tuple[str, np.ndarray, np.ndarray]]], tile: int = 128) -> np.ndarray:
    """Grid image from rows of (label, image BGR, mask bool); masks are drawn as outlines before shrinking."""
    width = max(len(r) for r in rows)
    sheet = np.full((len(rows) * (tile + 2), width * (tile + 2), 3), 24, np.uint8)
    for i, row in enumerate(rows):
        for j, (label, image, mask) in enumerate(row):
            y, x = i * (tile + 2), j * (tile + 2)
            sheet[y : y + tile, x : x + tile] = _tile(outlined(image, mask), label, tile)
    return sheet
