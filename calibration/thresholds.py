"""Per-class reject thresholds from good-part scores (and optionally labelled defects).

A part is rejected when its image score is strictly greater than the class threshold. With good
scores only, the threshold meets a target false-reject rate (see `score_tail`); with defect scores
it can instead maximise F1 (anomalib's F1AdaptiveThreshold does the same on a validation set).
Either way the result reports the false-reject and miss rates it implies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lineside.calibration.score_tail import tail_threshold
from lineside.errors import LinesideError

OBJECTIVES = ("false-reject", "f1")


@dataclass(frozen=True)
class ClassThreshold:
    """The calibrated threshold of one class and its expected error rates.

    Attributes:
        name: class name.
        threshold: reject when score > threshold.
        method: how it was chosen ("empirical", "pareto-tail" or "f1").
        n_good / n_defect: how many scores it was calibrated on.
        false_reject_bound: upper confidence bound of the false-reject rate (None for "f1").
        false_reject_estimate: model/point estimate of the false-reject rate at the threshold.
        false_reject_observed: share of the calibration good scores above the threshold.
        miss_rate: share of defect scores at or below the threshold (None without defects).
        f1: F1 of the defect class at the threshold (None without defects).
    """

    name: str
    threshold: float
    method: str
    n_good: int
    n_defect: int
    false_reject_bound: float | None
    false_reject_estimate: float
    false_reject_observed: float
    miss_rate: float | None
    f1: float | None


def f1_optimal_threshold(good: np.ndarray, defect: np.ndarray) -> tuple[float, float]:
    """Threshold maximising the defect-class F1 (reject when score > t); returns (threshold, f1).

    The threshold lies midway between the lowest rejected and the highest accepted score.
    """
    scores = np.concatenate([good, defect]).astype(np.float64)  # (n,)
    labels = np.concatenate([np.zeros(good.size), np.ones(defect.size)])  # (n,)
    order = np.argsort(-scores, kind="stable")
    ranked, ranked_labels = scores[order], labels[order]
    last_of_run = np.append(ranked[1:] != ranked[:-1], True)  # cut only between distinct scores
    tp = np.cumsum(ranked_labels)[last_of_run]
    rejected = (np.arange(1, scores.size + 1))[last_of_run]
    f1 = 2.0 * tp / (rejected + defect.size)  # 2TP / (2TP + FP + FN) = 2TP / (rejected + positives)
    best = int(np.argmax(f1))
    cut = int(rejected[best])
    below = ranked[cut] if cut < ranked.size else ranked[-1] - 1.0
    return float(0.5 * (ranked[cut - 1] + below)), float(f1[best])


def calibrate_class(
    name: str,
    good: np.ndarray,
    defect: np.ndarray | None = None,
    *,
    false_reject: float = 0.001,
    confidence: float = 0.95,
    objective: str = "false-reject",
    method: str = "auto",
) -> ClassThreshold:
    """Calibrate one class's threshold for `objective` ("false-reject" or "f1")."""
    good = np.asarray(good, dtype=np.float64).ravel()
    defect = np.zeros(0) if defect is None else np.asarray(defect, dtype=np.float64).ravel()
    if objective not in OBJECTIVES:
        raise LinesideError(f"unknown objective {objective!r}: choose one of {', '.join(OBJECTIVES)}")
    if good.size == 0:
        raise LinesideError(f"class {name}: no good images found")
    if not np.all(np.isfinite(good)) or not np.all(np.isfinite(defect)):
        raise LinesideError(f"class {name}: the model produced non-finite scores; check the bundle")
    bound: float | None = None
    if objective == "f1":
        if defect.size == 0:
            raise LinesideError(f"class {name}: the F1 objective needs defect images (--defect)")
        threshold, _ = f1_optimal_threshold(good, defect)
        chosen, estimate = "f1", float(np.mean(good > threshold))
    else:
        try:
            tail = tail_threshold(good, false_reject, confidence, method)
        except LinesideError as exc:
            raise LinesideError(f"class {name}: {exc}") from exc
        threshold, chosen, bound, estimate = tail.threshold, tail.method, tail.bound, tail.estimate
    miss = float(np.mean(defect <= threshold)) if defect.size else None
    f1 = None
    if defect.size:
        tp = float(np.sum(defect > threshold))
        f1 = 2.0 * tp / (float(np.sum(good > threshold)) + tp + defect.size)
    return ClassThreshold(
        name=name,
        threshold=float(threshold),
        method=chosen,
        n_good=int(good.size),
        n_defect=int(defect.size),
        false_reject_bound=bound,
        false_reject_estimate=float(estimate),
        false_reject_observed=float(np.mean(good > threshold)),
        miss_rate=miss,
        f1=f1,
    )


def format_table(results: list[ClassThreshold], false_reject: float, confidence: float) -> str:
    """A plain-text table of calibrated thresholds, one row per class."""
    header = (
        f"{'class':<16} {'n good':>6} {'n def':>5} {'method':<11} {'threshold':>10} "
        f"{'FR bound':>9} {'FR est.':>9} {'FR seen':>8} {'miss':>7} {'F1':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        bound = "-" if r.false_reject_bound is None else f"{r.false_reject_bound:.2e}"
        miss = "-" if r.miss_rate is None else f"{r.miss_rate:.2%}"
        f1 = "-" if r.f1 is None else f"{r.f1:.3f}"
        lines.append(
            f"{r.name:<16} {r.n_good:>6} {r.n_defect:>5} {r.method:<11} {r.threshold:>10.5g} "
            f"{bound:>9} {r.false_reject_estimate:>9.2e} {r.false_reject_observed:>8.2%} {miss:>7} {f1:>6}"
        )
    lines.append(
        f"target false-reject {false_reject:g}; FR bound = upper {confidence:.0%} confidence bound; "
        "reject when score > threshold"
    )
    return "\n".join(lines)
