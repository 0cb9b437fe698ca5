"""The validation set export gates on: held-out good training images plus synthetic defects made from them.

No test image decides anything: the FP16 and INT8 accuracy gates (and the INT8 fallback) compare graphs on
this set. The good images are the ones `lineside train` held out (recorded in the checkpoint, chosen by
`lineside.data.split`); each also yields `DEFECTS_PER_IMAGE` synthetic defects with exact masks (Perlin
blobs filled with a texture or the image's own shuffled cells, `lineside.train.synthesis`), so image and
pixel metrics can both be measured. A checkpoint from before the split (or trained with `--val-fraction 0`)
falls back to the same hash-chosen images, which the model has then seen: recorded as `seen_in_training`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lineside.errors import LinesideError
from lineside.export.evalset import EvalSet
from lineside.preprocess import resize_for_model

if TYPE_CHECKING:
    from lineside.data import Sample

log = logging.getLogger(__name__)

DEFECTS_PER_IMAGE = 3
MIN_MASK_FRACTION = 0.001  # a synthetic blob smaller than this is no defect: redraw


@dataclass(frozen=True)
class ValidationSource:
    """Which good images the validation set was made from, for the report."""

    images: int
    defects: int
    seen_in_training: bool

    def report(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "good_images": self.images,
            "synthetic_defects": self.defects,
            "seen_in_training": self.seen_in_training,
            "source": "held-out good training images + synthetic defects (no test image)",
        }


def held_out_samples(root: str | Path, classes: list[str], held_out: dict[str, list[str]] | None) -> tuple[list, bool]:
    """(the held-out good training samples, whether the model saw them in training)."""
    from lineside.data import open_dataset
    from lineside.data.split import split_validation
    from lineside.train.data import good_train_samples

    good = good_train_samples(open_dataset(root), classes)
    if held_out:
        by_name = {(s.category, s.image_path.name): s for s in good}
        wanted = [(category, name) for category, names in held_out.items() for name in names]
        missing = [f"{c}/{n}" for c, n in wanted if (c, n) not in by_name]
        if missing:
            raise LinesideError(
                f"{root} lacks {len(missing)} validation image(s) the checkpoint held out (e.g. {missing[0]}): "
                "pass the --data the model was trained on"
            )
        return [by_name[key] for key in wanted], False
    _, held = split_validation(good)
    if not held:
        raise LinesideError(f"{root} has too few good training images per category to validate an export")
    log.warning("the checkpoint records no held-out images: export gates on %d images it was trained on", len(held))
    return held, True


def _defect(synthesizer: Any, image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    for _ in range(5):
        defected, mask = synthesizer(image, rng)
        if mask.mean() >= MIN_MASK_FRACTION:
            return defected, mask > 0.5
    return None


def build_validation_set(
    samples: list[Sample], size: tuple[int, int], root: str | Path, *, seen_in_training: bool = False, seed: int = 0
) -> tuple[EvalSet, ValidationSource]:
    """Good images at `size` (H, W) and `DEFECTS_PER_IMAGE` synthetic defects of each, deterministic in `seed`."""
    from lineside.train.synthesis import DefectSynthesizer

    synthesizer = DefectSynthesizer()
    rows: list[tuple[np.ndarray, int, np.ndarray, str]] = []  # (image, label, mask, category)
    empty = np.zeros(size, dtype=bool)
    for index, sample in enumerate(samples):
        good = resize_for_model(sample.load_image(), size)
        rows.append((good, 0, empty, sample.category))
        for copy in range(DEFECTS_PER_IMAGE):
            made = _defect(synthesizer, good, np.random.default_rng([seed, index, copy]))
            if made is not None:
                rows.append((made[0], 1, made[1], sample.category))
    images, labels, masks, categories = zip(*rows, strict=True)
    labels_array = np.asarray(labels, dtype=np.int64)
    eval_set = EvalSet(tuple(images), labels_array, np.stack(masks), tuple(categories), Path(root))
    return eval_set, ValidationSource(len(samples), int(labels_array.sum()), seen_in_training)


def load_validation_set(
    root: str | Path, classes: list[str], held_out: dict[str, list[str]] | None, size: tuple[int, int]
) -> tuple[EvalSet, ValidationSource]:
    """The validation set of a checkpoint (its classes and held-out names) from the data set at `root`."""
    samples, seen = held_out_samples(root, classes, held_out)
    return build_validation_set(samples, size, root, seen_in_training=seen)
