"""MVTec-AD layout: <category>/train/good, <category>/test/<type>, <category>/ground_truth/<type>/<name>_mask.png.

The root is either a folder of categories or one category folder itself. The same layout is used by
the synthetic set (`lineside synth`), MVTec-AD, BTAD-style and the magnetic tile set.
"""

from __future__ import annotations

from pathlib import Path

from lineside.data.images import is_image_file
from lineside.data.sample import GOOD, Sample
from lineside.errors import LinesideError


def _is_category(folder: Path) -> bool:
    return (folder / "train").is_dir() and (folder / "test").is_dir()


def looks_like(root: Path) -> bool:
    """True if `root` is an MVTec category folder or holds at least one."""
    return _is_category(root) or any(_is_category(child) for child in root.iterdir() if child.is_dir())


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def _mask_for(category_dir: Path, defect_type: str, image: Path) -> Path:
    folder = category_dir / "ground_truth" / defect_type
    for name in (f"{image.stem}_mask.png", f"{image.stem}.png", f"{image.stem}_mask{image.suffix}"):
        if (folder / name).is_file():
            return folder / name
    raise LinesideError(
        f"{image}: defect image has no mask; expected {folder / (image.stem + '_mask.png')} "
        "(add the mask, or move the image out of the test set)"
    )


def _category(category_dir: Path) -> list[Sample]:
    name = category_dir.name
    train_good = category_dir / "train" / GOOD
    if not train_good.is_dir():
        raise LinesideError(f"{category_dir}: missing train/good folder (MVTec layout keeps good images there)")
    samples = [Sample(p, name, "train", GOOD) for p in _images(train_good)]
    if not samples:
        raise LinesideError(f"{train_good}: no training images (png, jpg, bmp, tif); add good images")
    test_dir = category_dir / "test"
    types = sorted(d.name for d in test_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    n_test = 0
    for defect_type in types:
        for image in _images(test_dir / defect_type):
            mask = None if defect_type == GOOD else _mask_for(category_dir, defect_type, image)
            samples.append(Sample(image, name, "test", defect_type, mask))
            n_test += 1
    if n_test == 0:
        raise LinesideError(f"{test_dir}: no test images; add test/good and test/<defect type> folders with images")
    return samples


def read(root: Path) -> list[Sample]:
    """All samples under `root` (a folder of categories, or a single category folder)."""
    if _is_category(root):
        return _category(root)
    categories = sorted(c for c in root.iterdir() if c.is_dir() and _is_category(c))
    if not categories:
        raise LinesideError(
            f"{root}: no MVTec category folders (each needs train/good and test/<type>, "
            "with masks in ground_truth/<type>/<name>_mask.png)"
        )
    return [s for c in categories for s in _category(c)]
