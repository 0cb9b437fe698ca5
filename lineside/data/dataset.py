"""A data set as a list of samples, and `open_dataset`, which recognises the layout on disk."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lineside.data.sample import SPLITS, Sample
from lineside.errors import LinesideError

LAYOUTS = ("auto", "mvtec", "visa", "folder")

EXPECTED = (
    "expected an MVTec-AD layout (<category>/train/good, <category>/test/<type>, "
    "<category>/ground_truth/<type>/<name>_mask.png, or one such category folder), "
    "a VisA layout (split_csv/1cls.csv) or a plain folder (good/ [defect/] [masks/], or a folder of images)"
)


@dataclass(frozen=True)
class DataSet:
    """All samples of a data set on disk, in a stable order."""

    root: Path
    layout: str
    samples: tuple[Sample, ...]

    @property
    def categories(self) -> list[str]:
        """Sorted category names."""
        return sorted({s.category for s in self.samples})

    def select(self, split: str | None = None, category: str | None = None) -> list[Sample]:
        """Samples of one split and/or category; an empty selection is an error that says what exists."""
        if split is not None and split not in SPLITS:
            raise LinesideError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
        if category is not None and category not in self.categories:
            raise LinesideError(
                f"no category {category!r} in {self.root}: it has {', '.join(self.categories) or 'none'}"
            )
        chosen = [
            s
            for s in self.samples
            if (split is None or s.split == split) and (category is None or s.category == category)
        ]
        if not chosen:
            what = " ".join(x for x in (category, split) if x)
            raise LinesideError(f"no {what} images in {self.root} ({self.layout} layout); add some or choose another")
        return chosen

    def counts(self) -> dict[str, dict[str, int]]:
        """Per category, the number of images per "split/type" (e.g. "test/scratch")."""
        table: dict[str, Counter[str]] = {c: Counter() for c in self.categories}
        for s in self.samples:
            table[s.category][f"{s.split}/{s.defect_type}"] += 1
        return {c: dict(sorted(counter.items())) for c, counter in table.items()}

    def summary(self) -> str:
        """One line: layout, categories and split sizes."""
        n_train = sum(s.split == "train" for s in self.samples)
        n_bad = sum(s.label for s in self.samples)
        n_test = len(self.samples) - n_train
        return (
            f"{self.root} ({self.layout}): {len(self.categories)} categories, {n_train} train, "
            f"{n_test} test ({n_test - n_bad} good, {n_bad} defect)"
        )


def _detect(root: Path) -> str:
    from lineside.data import folder, mvtec, visa

    if visa.looks_like(root):
        return "visa"
    if mvtec.looks_like(root):
        return "mvtec"
    if folder.looks_like(root):
        return "folder"
    raise LinesideError(f"cannot recognise the data set layout of {root}: {EXPECTED}")


def open_dataset(path: str | Path, layout: str = "auto") -> DataSet:
    """Read the sample list of a data set (MVTec-AD, VisA or a plain folder); images are read lazily."""
    from lineside.data import folder, mvtec, visa

    root = Path(path).expanduser()
    if layout not in LAYOUTS:
        raise LinesideError(f"unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    if not root.exists():
        raise LinesideError(f"{root}: no such data set folder")
    if root.is_file() and root.suffix.lower() == ".csv" and layout in ("auto", "visa"):
        layout = "visa"
    elif not root.is_dir():
        raise LinesideError(f"{root} is not a folder: point to the data set's root folder")
    if layout == "auto":
        layout = _detect(root)
    readers = {"mvtec": mvtec.read, "visa": visa.read, "folder": folder.read}
    samples = readers[layout](root)
    if not samples:
        raise LinesideError(f"no images found in {root} ({layout} layout): {EXPECTED}")
    if root.is_file():  # a VisA split CSV: the data set root is above split_csv/
        root = root.parent.parent if root.parent.name == "split_csv" else root.parent
    return DataSet(root=root, layout=layout, samples=tuple(samples))
