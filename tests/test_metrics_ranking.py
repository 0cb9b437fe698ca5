"""Image-level ranking metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve, roc_auc_score

from lineside.errors import LinesideError
from lineside.metrics import auroc, average_precision, f1_max


@st.composite
def scored_labels(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Random scores (often tied) and 0/1 labels that contain both classes."""
    size = draw(st.integers(2, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    levels = draw(st.sampled_from([2, 5, 50, 0]))  # 0 = continuous scores, no ties
    rng = np.random.default_rng(seed)
    labels = rng.random(size) < draw(st.floats(0.05, 0.95))
    labels[rng.choice(size, 2, replace=False)] = [True, False]
    scores = rng.normal(size=size) + labels * draw(st.floats(-1.0, 3.0))
    if levels:
        scores = np.round(scores * levels / 4) / levels
    return scores, labels.astype(int)


def sklearn_f1_max(scores: np.ndarray, labels: np.ndarray) -> float:
    precision, recall, _ = precision_recall_curve(labels, scores)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    return float(f1.max())


@settings(max_examples=150, deadline=None)
@given(scored_labels())
def test_agrees_with_sklearn(case: tuple[np.ndarray, np.ndarray]) -> None:
    scores, labels = case
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-6)
    assert average_precision(scores, labels) == pytest.approx(average_precision_score(labels, scores), abs=1e-6)
    best, threshold = f1_max(scores, labels)
    assert best == pytest.approx(sklearn_f1_max(scores, labels), abs=1e-6)
    assert f1_score(labels, scores >= threshold) == pytest.approx(best, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(scored_labels())
def test_reversing_scores_mirrors_auroc(case: tuple[np.ndarray, np.ndarray]) -> None:
    scores, labels = case
    assert auroc(-scores, labels) == pytest.approx(1.0 - auroc(scores, labels), abs=1e-9)


def test_hand_computed_example() -> None:
    # Thresholds 0.8, 0.4, 0.35, 0.1 give (TP, FP) = (1, 0), (1, 1), (2, 1), (2, 2).
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert auroc(scores, labels) == pytest.approx(0.75)  # 3 of 4 (defect, good) pairs ordered right
    assert average_precision(scores, labels) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert f1_max(scores, labels) == pytest.approx((0.8, 0.35))  # P = 2/3, R = 1


def test_ties_count_half() -> None:
    # Pairs (defect, good): (2, 1) right, (2, 0) right, (1, 1) tie = 1/2, (1, 0) right.
    assert auroc([2, 1, 1, 0], [1, 1, 0, 0]) == pytest.approx(3.5 / 4)


def test_constant_scores_are_guessing() -> None:
    labels = [0, 1, 1, 0, 0, 1, 0, 0]
    assert auroc(np.full(8, 0.3), labels) == 0.5
    assert average_precision(np.full(8, 0.3), labels) == pytest.approx(3 / 8)
    assert f1_max(np.full(8, 0.3), labels) == pytest.approx((2 * 3 / 8 / (1 + 3 / 8), 0.3))


def test_perfect_and_inverted_separation() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.8])
    assert auroc(scores, labels) == 1.0
    assert average_precision(scores, labels) == 1.0
    assert f1_max(scores, labels) == (1.0, 0.8)
    assert auroc(-scores, labels) == 0.0


def test_float16_and_integer_scores() -> None:
    rng = np.random.default_rng(3)
    labels = rng.random(500) < 0.3
    scores = (rng.random(500) + labels * 0.3).astype(np.float16)
    expected = roc_auc_score(labels, scores.astype(np.float64))
    assert auroc(scores, labels) == pytest.approx(expected, abs=1e-12)
    assert auroc(np.array([3, 1, 2, 2]), np.array([True, False, True, False])) == pytest.approx(0.875)


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, 0.2, 0.3], [0, 0, 0], "AUROC needs both good and defect images, but all 3 are good"),
        ([0.1, 0.2], [1, 1], "AUROC needs both good and defect images, but all 2 are defect"),
        ([0.1, float("nan"), 0.3], [0, 1, 1], "contain NaN"),
        ([0.1, float("inf"), 0.3], [0, 1, 1], "contain infinite"),
        ([0.1, 0.2, 0.3], [0, 1], "does not match"),
        ([0.1, 0.2, 0.3], [0, 1, 2], "must be 0 (good) or 1 (defect)"),
        ([], [], "is empty"),
        (["a", "b"], [0, 1], "must be numbers"),
        ([True, False], [0, 1], "must be numbers"),
    ],
)
def test_bad_input_is_a_clear_error(scores: list, labels: list, message: str) -> None:
    for metric in (auroc, average_precision, f1_max):
        with pytest.raises(LinesideError, match=re.escape(message)):
            metric(scores, labels)
