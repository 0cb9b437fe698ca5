"""One call that evaluates a category, and the mean over categories."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lineside.errors import LinesideError
from lineside.metrics._validate import as_labels, require_both_classes, to_array
from lineside.metrics.pro import FPR_LIMIT, area_to_limit, pro_curve_from, validate_pixels
from lineside.metrics.ranking import Counts, Ranking, average_precision_from, f1_max_from, roc_auc_from

IMAGE_KEYS = ("image_auroc", "image_ap", "image_f1_max")
PIXEL_KEYS = ("pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro")
METRIC_KEYS = IMAGE_KEYS + PIXEL_KEYS
THRESHOLD_KEYS = ("image_f1_threshold", "pixel_f1_threshold")


def image_metrics(scores: object, labels: object) -> dict[str, float]:
    """image_auroc, image_ap, image_f1_max and image_f1_threshold of (N,) scores against (N,) 0/1 labels."""
    score_array = to_array(scores, "image scores")
    if score_array.ndim != 1:
        raise LinesideError(f"image scores must be one number per image, shape (N,), got {score_array.shape}")
    counts = Counts.from_scores(score_array, labels, "images")
    f1, threshold = f1_max_from(counts)
    return {
        "image_auroc": roc_auc_from(counts),
        "image_ap": average_precision_from(counts),
        "image_f1_max": f1,
        "image_f1_threshold": threshold,
    }


def rank_pixels(maps: object, masks: object) -> tuple[Ranking, Counts, np.ndarray]:
    """Validate maps and masks, rank all pixels once and count them: (ranking, counts, (N, H, W) bool masks)."""
    map_array, mask_array = validate_pixels(maps, masks)
    require_both_classes(mask_array, "pixels")
    ranking = Ranking.of(map_array)
    return ranking, Counts.of(ranking, mask_array), mask_array


def pixel_metrics(maps: object, masks: object, fpr_limit: float = FPR_LIMIT) -> dict[str, float]:
    """pixel_auroc, pixel_ap, pixel_f1_max, pixel_f1_threshold and aupro; pixels are sorted once for all."""
    ranking, counts, mask_array = rank_pixels(maps, masks)
    f1, threshold = f1_max_from(counts)
    fpr, pro = pro_curve_from(ranking, counts, mask_array)
    return {
        "pixel_auroc": roc_auc_from(counts),
        "pixel_ap": average_precision_from(counts),
        "pixel_f1_max": f1,
        "pixel_f1_threshold": threshold,
        "aupro": area_to_limit(fpr, pro, fpr_limit),
    }


def evaluate(
    scores: object,
    labels: object,
    maps: object | None = None,
    masks: object | None = None,
    *,
    fpr_limit: float = FPR_LIMIT,
) -> dict[str, float]:
    """Evaluate one category.

    Args:
        scores: (N,) image anomaly scores, higher = more anomalous.
        labels: (N,) 0 = good, 1 = defect.
        maps: optional (N, H, W) or (N, 1, H, W) anomaly maps (float16 is fine).
        masks: (N, H, W) or (N, 1, H, W) defect masks, non-zero = defect; required with `maps`.
        fpr_limit: AUPRO integration limit (MVTec AD protocol: 0.3).

    Returns:
        IMAGE_KEYS (and with maps PIXEL_KEYS) as floats in [0, 1], plus the F1-max thresholds.
    """
    result = image_metrics(scores, labels)
    if maps is None and masks is None:
        return result
    if maps is None or masks is None:
        raise LinesideError("pixel metrics need both anomaly maps and masks: pass both or neither")
    map_array, mask_array = to_array(maps, "anomaly maps"), to_array(masks, "masks")
    label_array = as_labels(labels, "image labels")
    image_count = label_array.shape[0]
    if map_array.shape[:1] != (image_count,) or mask_array.shape[:1] != (image_count,):
        raise LinesideError(
            f"anomaly maps {map_array.shape} and masks {mask_array.shape} must have one entry per image "
            f"({image_count} images)"
        )
    _check_good_masks_empty(label_array, mask_array)
    result.update(pixel_metrics(map_array, mask_array, fpr_limit))
    return result


def _check_good_masks_empty(labels: np.ndarray, masks: np.ndarray) -> None:
    """Refuse masks that mark defect pixels in images labelled good (labels and masks out of sync)."""
    good = ~labels  # (N,)
    marked = masks.reshape(good.shape[0], -1).any(axis=1)  # (N,)
    wrong = np.flatnonzero(good & marked)
    if wrong.size:
        raise LinesideError(
            f"images {wrong[:5].tolist()} are labelled good but their masks mark defect pixels: "
            "labels and masks are out of order"
        )


def average_categories(results: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean of every metric that all categories report (thresholds are per category and not averaged)."""
    if not results:
        raise LinesideError("no categories to average: evaluate at least one category")
    shared = [key for key in METRIC_KEYS if all(key in metrics for metrics in results.values())]
    return {key: float(np.mean([metrics[key] for metrics in results.values()])) for key in shared}
