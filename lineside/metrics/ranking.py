"""Threshold-free ranking metrics from one sort: AUROC, average precision, F1-max.

Scores are ranked once; every distinct score is a threshold, and a sample is
predicted defective when its score is >= the threshold. Equal scores form one step, so ties
are handled exactly (constant scores give AUROC 0.5), as in scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lineside.metrics._validate import as_labels, as_scores, require_both_classes, require_same_shape


@dataclass(frozen=True)
class Ranking:
    """Distinct scores (descending) and how many samples score at least each; weighted counts on demand.

    Only the values are sorted in full (np.sort is several times faster than argsort); weighted
    counts argsort just the samples with non-zero weight, e.g. the few defect pixels of a test set.
    """

    scores: np.ndarray  # (M,) flattened scores
    thresholds: np.ndarray  # (T,) the distinct scores, descending
    at_least: np.ndarray  # (T,) number of samples with score >= threshold

    @classmethod
    def of(cls, scores: np.ndarray) -> Ranking:
        """Rank (any shape, flattened) scores; O(M log M) once."""
        flat = scores.ravel()
        ordered = np.sort(flat)[::-1]  # (M,) descending
        ends = np.append(np.flatnonzero(ordered[1:] != ordered[:-1]), ordered.size - 1)  # (T,) last of each run
        return cls(scores=flat, thresholds=ordered[ends], at_least=ends + 1)

    def cumulative(self, weights: np.ndarray) -> np.ndarray:
        """(T,) sum of `weights` (same shape as the scores) over the samples scoring >= each threshold."""
        flat = weights.ravel()
        picked = np.flatnonzero(flat)  # (K,)
        values = self.scores[picked]  # (K,)
        order = np.argsort(values)
        values = values[order]  # (K,) ascending
        suffix = np.append(np.cumsum(flat[picked][order][::-1])[::-1], 0)  # (K + 1,) sum of weights from i on
        return suffix[np.searchsorted(values, self.thresholds, side="left")]


@dataclass(frozen=True)
class Counts:
    """True and false positives at every distinct threshold (descending)."""

    tps: np.ndarray  # (T,) defects with score >= threshold
    fps: np.ndarray  # (T,) good samples with score >= threshold
    thresholds: np.ndarray  # (T,)

    @classmethod
    def of(cls, ranking: Ranking, labels: np.ndarray) -> Counts:
        """Count positives per threshold; `labels` is boolean with the ranked scores' shape."""
        tps = ranking.cumulative(labels)
        fps = ranking.at_least - tps
        return cls(tps=tps, fps=fps, thresholds=ranking.thresholds)

    @classmethod
    def from_scores(cls, scores: object, labels: object, what: str = "images") -> Counts:
        """Validate scores and 0/1 labels of equal shape, then rank and count."""
        score_array = as_scores(scores, f"{what} scores")
        label_array = as_labels(labels, f"{what} labels")
        require_same_shape(score_array, label_array, f"{what} scores", f"{what} labels")
        require_both_classes(label_array, what)
        return cls.of(Ranking.of(score_array), label_array)


def trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    """Area under the piecewise-linear curve through (x, y), x non-decreasing."""
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1])) / 2.0)


def roc_auc_from(counts: Counts) -> float:
    """Area under the ROC curve; the curve starts at (0, 0) and ends at (1, 1)."""
    fpr = np.concatenate(([0.0], counts.fps / counts.fps[-1]))
    tpr = np.concatenate(([0.0], counts.tps / counts.tps[-1]))
    return trapezoid(fpr, tpr)


def average_precision_from(counts: Counts) -> float:
    """Average precision: sum over thresholds of (recall step) x precision, no interpolation."""
    precision = counts.tps / (counts.tps + counts.fps)
    recall = counts.tps / counts.tps[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def f1_max_from(counts: Counts) -> tuple[float, float]:
    """Best F1 over all thresholds and the threshold that gives it (defect when score >= threshold)."""
    precision = counts.tps / (counts.tps + counts.fps)
    recall = counts.tps / counts.tps[-1]
    total = precision + recall
    f1 = np.divide(2.0 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    best = int(np.argmax(f1))
    return float(f1[best]), float(counts.thresholds[best])


def auroc(scores: object, labels: object) -> float:
    """Area under the ROC curve of `scores` (higher = more anomalous) against 0/1 `labels`."""
    return roc_auc_from(Counts.from_scores(scores, labels))


def average_precision(scores: object, labels: object) -> float:
    """Average precision (area under the step precision-recall curve), as scikit-learn defines it."""
    return average_precision_from(Counts.from_scores(scores, labels))


def f1_max(scores: object, labels: object) -> tuple[float, float]:
    """(best F1, its threshold) over all thresholds of `scores` against 0/1 `labels`."""
    return f1_max_from(Counts.from_scores(scores, labels))
