"""INT8 calibration set: N good images, stratified over categories, pre-processed like the runtime.

Sources: the good training images of a data set (any layout `lineside.data` reads: MVTec, VisA,
or a plain folder of good images), given with `--calib DIR` or taken from `--data DIR`. Images are
resized with `lineside.preprocess.resize_for_model`, the one host-side step the runtime does too;
everything else happens inside the graph being calibrated.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lineside.errors import LinesideError, missing_extra
from lineside.preprocess import resize_for_model


def find_good_images(root: str | Path) -> dict[str, list[Path]]:
    """Good training images per category (MVTec / VisA train split, or a plain folder of good images).

    Never test images: INT8 ranges are a normalisation, and nothing that sets one may read the test split.
    """
    from lineside.data import open_dataset

    dataset = open_dataset(root)
    groups: dict[str, list[Path]] = {}
    for sample in dataset.samples:
        if sample.label == 0 and sample.split == "train":
            groups.setdefault(sample.category, []).append(sample.image_path)
    if not groups:
        raise LinesideError(
            f"no good training images in {root} (calibration never reads test images): "
            "point --calib at a folder of good parts"
        )
    return groups


def stratified_sample(groups: dict[str, list[Path]], count: int, *, seed: int = 0) -> list[Path]:
    """Pick `count` paths round-robin over categories (each shuffled with `seed`), so categories share evenly."""
    if count < 1:
        raise LinesideError(f"--calib-size must be at least 1, got {count}")
    rng = random.Random(seed)
    queues = {name: rng.sample(paths, len(paths)) for name, paths in sorted(groups.items())}
    picked: list[Path] = []
    while len(picked) < count and any(queues.values()):
        for queue in queues.values():
            if queue and len(picked) < count:
                picked.append(queue.pop())
    return picked


def read_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 BGR image of the model size; grayscale, 16-bit and alpha images are converted."""
    from lineside.data import load_image

    return resize_for_model(load_image(path), size)


@dataclass(frozen=True)
class CalibrationSet:
    """Pre-processed calibration images and where they came from."""

    images: tuple[np.ndarray, ...]  # each (H, W, 3) uint8 BGR
    paths: tuple[Path, ...]
    per_category: dict[str, int]

    def __len__(self) -> int:
        return len(self.images)


def build_calibration_set(root: str | Path, size: tuple[int, int], count: int, *, seed: int = 0) -> CalibrationSet:
    """Load a stratified sample of `count` good images from `root`, resized to `size` (H, W)."""
    groups = find_good_images(root)
    paths = stratified_sample(groups, count, seed=seed)
    category_of = {path: name for name, members in groups.items() for path in members}
    per_category: dict[str, int] = {}
    for path in paths:
        per_category[category_of[path]] = per_category.get(category_of[path], 0) + 1
    images = tuple(read_image(path, size) for path in paths)
    return CalibrationSet(images, tuple(paths), per_category)


def data_reader(calib: CalibrationSet, input_name: str = "image") -> Any:
    """An ONNX Runtime `CalibrationDataReader` feeding each image as `{input_name: (1, H, W, 3) uint8}`."""
    try:
        from onnxruntime.quantization import CalibrationDataReader
    except ImportError as exc:
        raise missing_extra("onnxruntime", "export") from exc

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._iter: Iterator[np.ndarray] = iter(calib.images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            image = next(self._iter, None)
            return None if image is None else {input_name: np.ascontiguousarray(image[None])}

        def __len__(self) -> int:
            return len(calib)

        def rewind(self) -> None:
            self._iter = iter(calib.images)

    return _Reader()
