"""Training and test images from a data set folder, resized for the model (fail fast on bad folders)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lineside.data import DataSet, Sample, open_dataset
from lineside.data.split import DEFAULT_FRACTION, names_by_category, split_validation
from lineside.errors import LinesideError
from lineside.preprocess import resize_for_model
from lineside.train.features import TrainData


def open_for_training(path: str | Path, categories: Sequence[str] | None = None) -> tuple[DataSet, list[str]]:
    """Open the data set and resolve the class list (all categories with training images by default)."""
    dataset = open_dataset(path)
    with_train = sorted({s.category for s in dataset.samples if s.split == "train"})
    if not with_train:
        raise LinesideError(f"{dataset.root} has no training images (train/good/): point --data at a data set root")
    if not categories:
        return dataset, with_train
    missing = [c for c in categories if c not in with_train]
    if missing:
        raise LinesideError(
            f"no training images for categor{'y' if len(missing) == 1 else 'ies'} {', '.join(missing)} in "
            f"{dataset.root}: choose from {', '.join(with_train)}"
        )
    return dataset, list(dict.fromkeys(categories))


def load_images(samples: Sequence[Sample], size: tuple[int, int], desc: str, progress: bool = True) -> np.ndarray:
    """(N, H, W, 3) uint8 BGR images resized to the model's (H, W)."""
    out = np.empty((len(samples), size[0], size[1], 3), dtype=np.uint8)
    for i, sample in enumerate(tqdm(samples, desc=desc, unit="img", disable=not progress)):
        out[i] = resize_for_model(sample.load_image(), size)
    return out


def good_train_samples(dataset: DataSet, classes: Sequence[str]) -> list[Sample]:
    """Every good training image of `classes`, category by category."""
    samples: list[Sample] = []
    for category in classes:
        good = [s for s in dataset.select(split="train", category=category) if s.label == 0]
        if not good:
            raise LinesideError(f"category {category} has no good training images in {dataset.root}")
        samples += good
    return samples


def load_train_data(
    dataset: DataSet,
    classes: Sequence[str],
    size: tuple[int, int],
    progress: bool = True,
    val_fraction: float = DEFAULT_FRACTION,
) -> tuple[TrainData, dict[str, list[str]]]:
    """The good training images of `classes` minus the validation split, and the held-out file names.

    The held-out images (lineside.data.split) are what export's accuracy gates measure on: never trained on.
    """
    kept, held_out = split_validation(good_train_samples(dataset, classes), val_fraction)
    index = {category: i for i, category in enumerate(classes)}
    images = load_images(kept, size, "loading train images", progress)
    ids = np.asarray([index[s.category] for s in kept], dtype=np.int64)
    return TrainData(images, ids, list(classes)), names_by_category(held_out)
