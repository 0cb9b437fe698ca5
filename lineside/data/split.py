"""The validation split: good training images held out of training, chosen by a stable hash of their names.

Nothing that sets a threshold, a gate or a normalisation may read test images, so export's accuracy gates
and any later tuning measure on this split (plus synthetic defects made from it). The choice depends only on
each image's category and file name, never on a seed or on the order of the folder, so `train` and a later
`export` of the same data set pick the same images without passing lists around, and adding images to a
category moves few of the earlier choices.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from lineside.data.sample import Sample
from lineside.errors import LinesideError

DEFAULT_FRACTION = 0.1
MIN_PER_CATEGORY = 2  # fewer held-out images cannot rank a defect against a good part
MAX_PER_CATEGORY = 40  # beyond this the gate gains little and export slows down; the rest train
MIN_TRAIN_PER_CATEGORY = 2


def _rank_key(sample: Sample) -> str:
    return hashlib.sha1(f"{sample.category}/{sample.image_path.name}".encode()).hexdigest()


def held_out_count(available: int, fraction: float) -> int:
    """How many of `available` good training images of one category are held out at `fraction`."""
    if not 0.0 <= fraction < 1.0:
        raise LinesideError(f"--val-fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return 0
    count = min(MAX_PER_CATEGORY, max(MIN_PER_CATEGORY, round(fraction * available)))
    return count if available - count >= MIN_TRAIN_PER_CATEGORY else 0


def split_validation(
    good_train: Sequence[Sample], fraction: float = DEFAULT_FRACTION
) -> tuple[list[Sample], list[Sample]]:
    """(kept for training, held out for validation) from the good training images, per category.

    Order inside each list follows `good_train`. A category too small to spare images holds none out.
    """
    held: set[int] = set()
    categories = sorted({s.category for s in good_train})
    for category in categories:
        members = [i for i, s in enumerate(good_train) if s.category == category]
        count = held_out_count(len(members), fraction)
        ranked = sorted(members, key=lambda i: _rank_key(good_train[i]))
        held.update(ranked[:count])
    kept = [s for i, s in enumerate(good_train) if i not in held]
    return kept, [s for i, s in enumerate(good_train) if i in held]


def names_by_category(samples: Sequence[Sample]) -> dict[str, list[str]]:
    """{category: sorted file names}: how a checkpoint records its held-out images."""
    names: dict[str, list[str]] = {}
    for sample in samples:
        names.setdefault(sample.category, []).append(sample.image_path.name)
    return {category: sorted(found) for category, found in sorted(names.items())}
