"""evaluate() and average_categories(): keys, agreement with scikit-learn, input errors, a full-size run."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from lineside.errors import LinesideError
from lineside.metrics import METRIC_KEYS, THRESHOLD_KEYS, average_categories, evaluate


def synthetic_category(
    count: int = 12, size: int = 32, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scores, labels, noisy maps and box masks: the second half of the images are defective."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) >= count // 2
    masks = np.zeros((count, size, size), dtype=bool)
    for index in np.flatnonzero(labels):
        top, left = rng.integers(0, size - 8, 2)
        masks[index, top : top + rng.integers(2, 8), left : left + rng.integers(2, 8)] = True
    maps = (rng.random(masks.shape) + masks * 0.6).astype(np.float32)  # (N, H, W)
    scores = maps.reshape(count, -1).max(axis=1) + rng.normal(0, 0.05, count)  # (N,)
    return scores, labels.astype(int), maps, masks


def sklearn_f1_max(scores: np.ndarray, labels: np.ndarray) -> float:
    precision, recall, _ = precision_recall_curve(labels, scores)
    return float(np.nanmax(2 * precision * recall / np.maximum(precision + recall, 1e-300)))


def check_against_sklearn(result: dict[str, float], scores, labels, maps, masks) -> None:
    pixels, truth = maps.ravel().astype(np.float64), masks.ravel()
    assert result["image_auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-6)
    assert result["image_ap"] == pytest.approx(average_precision_score(labels, scores), abs=1e-6)
    assert result["image_f1_max"] == pytest.approx(sklearn_f1_max(scores, labels), abs=1e-6)
    assert result["pixel_auroc"] == pytest.approx(roc_auc_score(truth, pixels), abs=1e-6)
    assert result["pixel_ap"] == pytest.approx(average_precision_score(truth, pixels), abs=1e-6)
    assert result["pixel_f1_max"] == pytest.approx(sklearn_f1_max(pixels, truth), abs=1e-6)


def test_keys_and_agreement_with_sklearn() -> None:
    scores, labels, maps, masks = synthetic_category()
    result = evaluate(scores, labels, maps, masks)
    assert set(result) == set(METRIC_KEYS) | set(THRESHOLD_KEYS)
    assert all(isinstance(value, float) for value in result.values())
    check_against_sklearn(result, scores, labels, maps, masks)
    assert 0.0 < result["aupro"] < 1.0


def test_image_only() -> None:
    scores, labels, _, _ = synthetic_category()
    result = evaluate(scores, labels)
    assert set(result) == {"image_auroc", "image_ap", "image_f1_max", "image_f1_threshold"}


def test_perfect_maps_score_one_everywhere() -> None:
    _, labels, _, masks = synthetic_category()
    result = evaluate(labels * 2.0, labels, masks.astype(np.float16), masks)
    for key in METRIC_KEYS:
        assert result[key] == pytest.approx(1.0, abs=1e-12), key


def test_float16_maps_and_channel_axis() -> None:
    scores, labels, maps, masks = synthetic_category(seed=4)
    half = maps.astype(np.float16)
    result = evaluate(scores, labels, half[:, None], masks[:, None].astype(np.uint8) * 255)
    assert result == evaluate(scores, labels, half.astype(np.float32), masks)
    check_against_sklearn(result, scores, labels, half.astype(np.float32), masks)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"maps": None}, "need both anomaly maps and masks"),
        ({"masks": None}, "need both anomaly maps and masks"),
        ({"maps": np.zeros((3, 32, 32))}, "must have one entry per image (12 images)"),
        ({"masks": np.zeros((12, 32, 30), bool)}, "does not match masks shape"),
        ({"labels": np.zeros(12)}, "AUROC needs both good and defect images"),
        ({"scores": np.zeros((12, 1))}, "one number per image"),
        ({"maps": np.full((12, 32, 32), np.nan)}, "contain NaN"),
        ({"maps": [np.zeros((32, 32))] * 11 + [np.zeros((16, 16))]}, "must all have the same shape"),
    ],
)
def test_bad_input_is_a_clear_error(change: dict, message: str) -> None:
    scores, labels, maps, masks = synthetic_category()
    arguments = {"scores": scores, "labels": labels, "maps": maps, "masks": masks} | change
    with pytest.raises(LinesideError, match=re.escape(message)):
        evaluate(**arguments)


def test_defect_marked_in_a_good_image_is_refused() -> None:
    scores, labels, maps, masks = synthetic_category()
    masks[0, 3, 3] = True
    with pytest.raises(LinesideError, match=re.escape("images [0] are labelled good")):
        evaluate(scores, labels, maps, masks)


def test_average_categories() -> None:
    results = {
        "screw": {"image_auroc": 0.9, "aupro": 0.8, "image_f1_threshold": 3.0},
        "wood": {"image_auroc": 0.7, "aupro": 0.6, "image_f1_threshold": 5.0, "pixel_ap": 0.5},
    }
    mean = average_categories(results)
    assert mean == pytest.approx({"image_auroc": 0.8, "aupro": 0.7})
    with pytest.raises(LinesideError, match="no categories"):
        average_categories({})


def test_full_category_runs() -> None:
    """100 float16 maps of 256x256 (6.5 M pixels): about a second here; a per-threshold loop would take minutes."""
    scores, labels, maps, masks = synthetic_category(count=100, size=256, seed=7)
    result = evaluate(scores, labels, maps.astype(np.float16), masks)
    assert set(result) == set(METRIC_KEYS) | set(THRESHOLD_KEYS)
    assert 0.5 < result["pixel_auroc"] < 1.0 and 0.5 < result["aupro"] < 1.0


@pytest.mark.slow
def test_full_category_size() -> None:
    """100 images of 256x256 (6.5 M pixels): runs and still agrees with scikit-learn."""
    scores, labels, maps, masks = synthetic_category(count=100, size=256, seed=7)
    maps = maps.astype(np.float16)
    result = evaluate(scores, labels, maps, masks)
    check_against_sklearn(result, scores, labels, maps.astype(np.float32), masks)
    assert 0.5 < result["aupro"] < 1.0


def test_docstring_example_runs() -> None:
    import doctest

    import lineside.metrics

    outcome = doctest.testmod(lineside.metrics)
    assert outcome.attempted > 0
    assert outcome.failed == 0
