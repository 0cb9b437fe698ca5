"""Per-region overlap (PRO) curve and AUPRO, the MVTec AD localisation protocol.

Each connected defect region (8-connectivity, per image) counts equally, however small. At a
threshold t, a region's overlap is the fraction of its pixels scoring >= t; PRO is the mean over
all regions of all images, and FPR is the fraction of good pixels (over all images) scoring >= t.
AUPRO integrates PRO over FPR from 0 to `fpr_limit` (0.3) and divides by the limit, so a perfect
map scores 1.0. As in the MVTec reference code, pixels are ranked once and the overlap of every
region is accumulated with per-pixel weights 1 / region size, so there is no threshold loop.
"""

from __future__ import annotations

import numpy as np

from lineside.errors import LinesideError
from lineside.metrics._validate import as_masks, as_scores, require_same_shape, squeeze_channel
from lineside.metrics.ranking import Counts, Ranking, trapezoid

FPR_LIMIT = 0.3


def region_weights(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """(N, H, W) weight 1 / (size of its region) on every defect pixel, 0 elsewhere; and the region count.

    Regions are 8-connected within an image (as in the MVTec code) and never join across images.
    OpenCV (a core dependency) labels them, one call per image.
    """
    import cv2

    labeled = np.zeros(masks.shape, dtype=np.int32)  # (N, H, W) global region id, 0 = good
    regions = 0
    for index, mask in enumerate(masks):
        image = np.ascontiguousarray(mask, dtype=np.uint8)  # (H, W)
        count, labels = cv2.connectedComponents(image, connectivity=8)  # labels: (H, W) int32
        labeled[index] = np.where(labels > 0, labels + regions, 0)
        regions += count - 1
    sizes = np.bincount(labeled.ravel(), minlength=regions + 1)  # (regions + 1,)
    inverse = np.zeros(regions + 1, dtype=np.float64)
    inverse[1:] = 1.0 / sizes[1:]
    return inverse[labeled], regions


def pro_curve_from(ranking: Ranking, counts: Counts, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, PRO) at every distinct pixel score, from ranked pixels and their counts; both start at 0."""
    weights, regions = region_weights(masks)
    if regions == 0:
        raise LinesideError("AUPRO needs at least one defect region in the masks: add defect images with masks")
    if counts.fps[-1] == 0:
        raise LinesideError("AUPRO needs good pixels in the masks, but every pixel is marked defective")
    fpr = np.minimum(counts.fps / counts.fps[-1], 1.0)
    pro = np.minimum(ranking.cumulative(weights) / regions, 1.0)
    return np.concatenate(([0.0], fpr)), np.concatenate(([0.0], pro))


def area_to_limit(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float = FPR_LIMIT) -> float:
    """Area under the curve from FPR 0 to `fpr_limit`, divided by `fpr_limit` (interpolating at the limit)."""
    if not 0.0 < fpr_limit <= 1.0:
        raise LinesideError(f"the AUPRO FPR limit must be in (0, 1], got {fpr_limit}")
    inside = int(np.searchsorted(fpr, fpr_limit, side="right"))  # fpr[:inside] <= limit
    area = trapezoid(fpr[:inside], pro[:inside])
    last_x, last_y = fpr[inside - 1], pro[inside - 1]
    if last_x < fpr_limit:
        next_x, next_y = fpr[inside], pro[inside]
        at_limit = last_y + (next_y - last_y) * (fpr_limit - last_x) / (next_x - last_x)
        area += 0.5 * (at_limit + last_y) * (fpr_limit - last_x)
    return float(area / fpr_limit)


def validate_pixels(maps: object, masks: object) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) finite scores and boolean masks of the same shape; (N, 1, H, W) is accepted."""
    map_array = squeeze_channel(as_scores(maps, "anomaly maps"), "anomaly maps")
    mask_array = as_masks(masks)
    require_same_shape(map_array, mask_array, "anomaly maps", "masks")
    return map_array, mask_array


def pro_curve(maps: object, masks: object) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, PRO) curve of anomaly maps against defect masks, both (N, H, W) or (N, 1, H, W)."""
    map_array, mask_array = validate_pixels(maps, masks)
    ranking = Ranking.of(map_array)
    return pro_curve_from(ranking, Counts.of(ranking, mask_array), mask_array)


def aupro(maps: object, masks: object, fpr_limit: float = FPR_LIMIT) -> float:
    """Normalised area under the PRO curve up to `fpr_limit` (MVTec AD protocol: 0.3)."""
    return area_to_limit(*pro_curve(maps, masks), fpr_limit=fpr_limit)
