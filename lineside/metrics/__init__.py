"""Anomaly-detection metrics (MVTec AD / VisA protocol): numpy, vectorised, no extra dependency.

Scores are "higher = more anomalous"; labels and masks are 1 (defect) / 0 (good).

| key | what it measures |
| --- | --- |
| image_auroc | Area under the ROC curve of image scores: the chance that a random defect image scores above a random good one (0.5 = guessing, 1.0 = perfect). Threshold-free. |
| image_ap | Average precision of image scores: area under the precision-recall curve (step-wise, scikit-learn's definition); sensitive to how many good images score high. |
| image_f1_max | Best F1 (harmonic mean of precision and recall) over all thresholds; `image_f1_threshold` is that score threshold (defect when score >= it). |
| pixel_auroc | ROC AUC over all pixels of all images; dominated by large defects and the many good pixels. |
| pixel_ap | Average precision over all pixels; low when good pixels score high, so it exposes noisy maps that pixel AUROC hides. |
| pixel_f1_max | Best pixel-level F1 over thresholds; `pixel_f1_threshold` is the map threshold. |
| aupro | Area under the per-region-overlap curve up to FPR 0.3, divided by 0.3: every connected defect region counts equally, so small defects matter as much as large ones. |

`plot_curves(path, scores, labels, maps, masks)` draws the ROC, precision-recall and PRO curves
behind these numbers into a PNG. Ties are exact (equal scores form one threshold step; constant
scores give AUROC 0.5). Bad input (one class only, NaN scores, shape mismatch) raises
LinesideError.

Example:
    >>> from lineside.metrics import evaluate
    >>> evaluate([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])["image_auroc"]
    0.75
"""

from lineside.metrics.evaluate import (
    IMAGE_KEYS,
    METRIC_KEYS,
    PIXEL_KEYS,
    THRESHOLD_KEYS,
    average_categories,
    evaluate,
    image_metrics,
    pixel_metrics,
    rank_pixels,
)
from lineside.metrics.plots import plot_curves
from lineside.metrics.pro import FPR_LIMIT, aupro, pro_curve
from lineside.metrics.ranking import auroc, average_precision, f1_max

__all__ = [
    "FPR_LIMIT",
    "IMAGE_KEYS",
    "METRIC_KEYS",
    "PIXEL_KEYS",
    "THRESHOLD_KEYS",
    "aupro",
    "auroc",
    "average_categories",
    "average_precision",
    "evaluate",
    "f1_max",
    "image_metrics",
    "pixel_metrics",
    "plot_curves",
    "pro_curve",
    "rank_pixels",
]
