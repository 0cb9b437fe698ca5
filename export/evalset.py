"""The evaluation set used by export and bench: test images at the model size, labels, masks, metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lineside.errors import LinesideError
from lineside.preprocess import resize_for_model, resize_mask


@dataclass(frozen=True)
class EvalSet:
    """Test images resized to the model input, with labels, masks and categories."""

    images: tuple[np.ndarray, ...]  # each (H, W, 3) uint8 BGR
    labels: np.ndarray  # (N,) int 0 good / 1 defect
    masks: np.ndarray  # (N, H, W) bool
    categories: tuple[str, ...]
    root: Path

    def __len__(self) -> int:
        return len(self.images)


def one_pair_points(eval_set: EvalSet) -> float:
    """Smallest mean I-AUROC drop (points) the set can show: one swapped good/defect pair in its largest category."""
    categories = np.array(eval_set.categories)
    costs = []
    for category in sorted(set(eval_set.categories)):
        labels = eval_set.labels[categories == category]
        pairs = int((labels == 0).sum()) * int((labels == 1).sum())
        costs.append(100.0 / pairs if pairs else 0.0)
    return min(costs) / len(costs) if costs else 0.0


def load_eval_set(root: str | Path, size: tuple[int, int], *, limit_per_category: int | None = None) -> EvalSet:
    """Read the test split of a data set (MVTec, VisA or folder layout) at `size` (H, W)."""
    from lineside.data import open_dataset

    dataset = open_dataset(root)
    samples = [s for s in dataset.samples if s.split == "test"]
    if limit_per_category is not None:
        kept: list = []
        for category in dataset.categories:
            members = [s for s in samples if s.category == category]
            good = [s for s in members if s.label == 0][: limit_per_category // 2]
            kept += good + [s for s in members if s.label == 1][: limit_per_category - len(good)]
        samples = kept
    if not any(s.label for s in samples) or all(s.label for s in samples):
        raise LinesideError(f"the test split of {root} needs good and defect images to measure accuracy")
    images, masks = [], []
    for sample in samples:
        image, mask = sample.load()
        images.append(resize_for_model(image, size))
        masks.append(resize_mask(mask, size))
    return EvalSet(
        images=tuple(images),
        labels=np.array([s.label for s in samples], dtype=np.int64),
        masks=np.stack(masks),
        categories=tuple(s.category for s in samples),
        root=Path(root),
    )


def accuracy(eval_set: EvalSet, scores: np.ndarray, maps: np.ndarray | None = None) -> dict[str, object]:
    """Per-category and mean metrics (image AUROC always; pixel AUROC and AUPRO when `maps` is given)."""
    from lineside.metrics import average_categories, evaluate

    per_category: dict[str, dict[str, float]] = {}
    categories = np.array(eval_set.categories)
    for category in sorted(set(eval_set.categories)):
        chosen = categories == category
        labels = eval_set.labels[chosen]
        if labels.min() == labels.max():
            continue  # a category without good or without defect images has no AUROC
        category_maps = None if maps is None else maps[chosen]
        category_masks = None if maps is None else eval_set.masks[chosen]
        per_category[category] = evaluate(scores[chosen], labels, category_maps, category_masks)
    if not per_category:
        raise LinesideError(f"no category of {eval_set.root} has both good and defect test images")
    return {"mean": average_categories(per_category), "per_category": per_category}


def image_auroc(eval_set: EvalSet) -> Callable[[np.ndarray], float]:
    """A function mapping (N,) scores to the mean per-category image AUROC (the fallback's objective)."""

    def score(scores: np.ndarray) -> float:
        return float(accuracy(eval_set, scores)["mean"]["image_auroc"])  # type: ignore[index]

    return score
