"""Plain folder layout: the simplest way to bring your own images.

    ROOT/good/        good images (training split)
    ROOT/test_good/   optional good images held out for testing
    ROOT/defect/      optional defect images (test split, defect type "defect")
    ROOT/masks/       optional masks for the defect images: <name>.png or <name>_mask.png

A folder that directly holds images (no good/ sub-folder) is read as good training images. The
category is the root folder's name. With a masks/ folder every defect image needs a mask; without
one, defects are image-level only (pixel metrics need masks).
"""

from __future__ import annotations

from pathlib import Path

from lineside.data.images import is_image_file
from lineside.data.sample import GOOD, Sample
from lineside.errors import LinesideError

GOOD_DIR, TEST_GOOD_DIR, DEFECT_DIR, MASK_DIR = "good", "test_good", "defect", "masks"
DEFECT_TYPE = "defect"


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def looks_like(root: Path) -> bool:
    """True if `root` has a good/ folder or holds images directly."""
    return (root / GOOD_DIR).is_dir() or any(is_image_file(p) for p in root.iterdir())


def _mask_for(masks: Path, image: Path) -> Path:
    for name in (f"{image.stem}.png", f"{image.stem}_mask.png"):
        if (masks / name).is_file():
            return masks / name
    raise LinesideError(
        f"{image}: defect image has no mask; expected {masks / (image.stem + '.png')} or "
        f"{masks / (image.stem + '_mask.png')} (add it, or remove {masks} to evaluate image-level only)"
    )


def read(root: Path) -> list[Sample]:
    """Samples of a plain folder data set."""
    category = root.resolve().name
    good_dir = root / GOOD_DIR if (root / GOOD_DIR).is_dir() else root
    samples = [Sample(p, category, "train", GOOD) for p in _images(good_dir)]
    if not samples:
        raise LinesideError(f"{good_dir}: no good images (png, jpg, bmp, tif); a folder data set needs some")
    if (root / TEST_GOOD_DIR).is_dir():
        samples += [Sample(p, category, "test", GOOD) for p in _images(root / TEST_GOOD_DIR)]
    if (root / DEFECT_DIR).is_dir():
        masks = root / MASK_DIR
        for image in _images(root / DEFECT_DIR):
            mask = _mask_for(masks, image) if masks.is_dir() else None
            samples.append(Sample(image, category, "test", DEFECT_TYPE, mask))
    elif (root / MASK_DIR).is_dir():
        raise LinesideError(f"{root}: has {MASK_DIR}/ but no {DEFECT_DIR}/ folder for the defect images")
    return samples
