"""Pictures of the curves behind the numbers: ROC, precision-recall and PRO, one PNG per category."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lineside.atomic import atomic_write_bytes
from lineside.errors import missing_extra
from lineside.metrics.evaluate import rank_pixels
from lineside.metrics.pro import FPR_LIMIT, area_to_limit, pro_curve_from
from lineside.metrics.ranking import Counts, average_precision_from, roc_auc_from

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MAX_POINTS = 2000  # per drawn curve; pixel curves have millions of thresholds

Curve = tuple[np.ndarray, np.ndarray]


def _thin(x: np.ndarray, y: np.ndarray, points: int = MAX_POINTS) -> Curve:
    """At most `points` evenly spaced samples of a curve, first and last kept."""
    keep = np.unique(np.linspace(0, x.size - 1, min(points, x.size)).astype(np.int64))
    return x[keep], y[keep]


def _roc_pr(counts: Counts) -> tuple[Curve, Curve]:
    """((FPR, TPR), (recall, precision)) of counted scores, from the strictest threshold down."""
    fpr = np.concatenate(([0.0], counts.fps / counts.fps[-1]))
    tpr = np.concatenate(([0.0], counts.tps / counts.tps[-1]))
    recall = counts.tps / counts.tps[-1]
    precision = counts.tps / (counts.tps + counts.fps)
    return _thin(fpr, tpr), _thin(recall, precision)


def plot_curves(
    path: str | Path,
    scores: object,
    labels: object,
    maps: object | None = None,
    masks: object | None = None,
    *,
    title: str = "",
) -> Path:
    """Write a PNG: ROC and precision-recall of image scores (and pixels), plus the PRO curve with maps.

    Inputs are as for `evaluate`; the legends show the same numbers `evaluate` returns.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise missing_extra("matplotlib", "report") from exc
    image = Counts.from_scores(scores, labels, "images")
    curves = {"image": (_roc_pr(image), roc_auc_from(image), average_precision_from(image))}
    pro: tuple[Curve, float] | None = None
    if maps is not None and masks is not None:
        ranking, pixels, mask_array = rank_pixels(maps, masks)
        curves["pixel"] = (_roc_pr(pixels), roc_auc_from(pixels), average_precision_from(pixels))
        fpr, overlap = pro_curve_from(ranking, pixels, mask_array)
        pro = (_thin(fpr, overlap), area_to_limit(fpr, overlap))
    figure = Figure(figsize=(15 if pro else 10, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3 if pro else 2)
    for level, ((roc, pr), auroc, ap) in curves.items():
        axes[0].plot(*roc, label=f"{level} AUROC {auroc:.3f}")
        axes[1].step(*pr, where="post", label=f"{level} AP {ap:.3f}")
    axes[0].plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    _label(axes[0], "ROC", "false positive rate", "true positive rate")
    _label(axes[1], "precision-recall", "recall", "precision")
    if pro:
        _draw_pro(axes[2], *pro)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def _draw_pro(axes: Axes, curve: Curve, aupro: float) -> None:
    """The PRO curve with the integrated part (FPR <= 0.3) shaded."""
    fpr, overlap = curve
    axes.plot(fpr, overlap, color="tab:green", label=f"AUPRO@{FPR_LIMIT} {aupro:.3f}")
    inside = fpr <= FPR_LIMIT
    axes.fill_between(fpr[inside], overlap[inside], color="tab:green", alpha=0.2)
    axes.axvline(FPR_LIMIT, color="grey", linestyle=":", linewidth=1)
    _label(axes, "per-region overlap", "false positive rate (good pixels)", "mean region overlap")


def _label(axes: Axes, title: str, x: str, y: str) -> None:
    """Title, axis labels, unit limits, grid and legend of one panel."""
    axes.set(title=title, xlabel=x, ylabel=y, xlim=(0, 1), ylim=(0, 1.02))
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
