"""Input checks shared by the metrics: clear LinesideErrors instead of silent nonsense."""

from __future__ import annotations

import numpy as np

from lineside.errors import LinesideError


def to_array(values: object, what: str) -> np.ndarray:
    """np.asarray with a clear error for ragged input (e.g. a list of maps of different sizes)."""
    try:
        return np.asarray(values)
    except ValueError as exc:
        raise LinesideError(f"{what} must all have the same shape: {exc}") from exc


def as_scores(values: object, what: str) -> np.ndarray:
    """A finite float array (float16 is widened to float32 exactly; other floats keep their precision)."""
    array = to_array(values, what)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise LinesideError(f"{what} must be numbers, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise LinesideError(f"{what} must be real numbers, got dtype {array.dtype}")
    if array.dtype == np.float16 or np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float32 if array.dtype == np.float16 else np.float64)
    if array.size == 0:
        raise LinesideError(f"{what} is empty: evaluate at least one image")
    if not np.isfinite(array).all():
        bad = "NaN" if np.isnan(array).any() else "infinite"
        raise LinesideError(f"{what} contain {bad} values: check the model output before evaluating")
    return array


def as_labels(values: object, what: str) -> np.ndarray:
    """A boolean array from 0/1 (or bool) labels; anything else is refused."""
    array = to_array(values, what)
    if array.dtype == np.bool_:
        return array
    if not np.issubdtype(array.dtype, np.number) or not np.isin(array, (0, 1)).all():
        raise LinesideError(f"{what} must be 0 (good) or 1 (defect)")
    return array.astype(bool)


def as_masks(values: object, what: str = "masks") -> np.ndarray:
    """A boolean (N, H, W) array; any non-zero pixel is a defect (so 0/1, 0/255 and bool masks all work)."""
    array = to_array(values, what)
    if not (array.dtype == np.bool_ or np.issubdtype(array.dtype, np.number)):
        raise LinesideError(f"{what} must be numeric or boolean, got dtype {array.dtype}")
    return squeeze_channel(array, what) != 0


def squeeze_channel(array: np.ndarray, what: str) -> np.ndarray:
    """(N, H, W) from (N, H, W) or (N, 1, H, W); other ranks are refused."""
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3:
        raise LinesideError(f"{what} must have shape (N, H, W) or (N, 1, H, W), got {array.shape}")
    return array


def require_both_classes(labels: np.ndarray, what: str) -> None:
    """Refuse label sets that lack either class: ranking metrics are undefined there."""
    positives = int(labels.sum())
    if positives == 0 or positives == labels.size:
        only = "defect" if positives else "good"
        raise LinesideError(
            f"AUROC needs both good and defect {what}, but all {labels.size} are {only}: "
            "add test images of the other kind"
        )


def require_same_shape(a: np.ndarray, b: np.ndarray, what_a: str, what_b: str) -> None:
    """Refuse arrays whose shapes differ."""
    if a.shape != b.shape:
        raise LinesideError(f"{what_a} shape {a.shape} does not match {what_b} shape {b.shape}")
