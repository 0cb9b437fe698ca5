"""VisA layout: a split CSV (split_csv/1cls.csv) with columns object,split,label,image,mask.

Rows look like `candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png`;
paths are relative to the data set root, `label` is "normal" or "anomaly". VisA masks store region ids
(0 = background), so any non-zero mask pixel is defective. The split CSV does not name the defect
kind; it is taken from each object's `image_anno.csv` (columns image,label,mask; label e.g.
"chunk of wax missing" or "melt, scratch" -> "chunk_of_wax_missing", "melt+scratch") when present,
else defects get the type "anomaly".
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from lineside.data.sample import GOOD, SPLITS, Sample
from lineside.errors import LinesideError

COLUMNS = ("object", "split", "label", "image", "mask")
DEFAULT_CSV = Path("split_csv") / "1cls.csv"
LABELS = {"normal": GOOD, "anomaly": "anomaly"}


def looks_like(root: Path) -> bool:
    """True if `root` holds a VisA split CSV."""
    return (root / DEFAULT_CSV).is_file()


def _csv_and_root(path: Path) -> tuple[Path, Path]:
    if path.is_file():
        return path, (path.parent.parent if path.parent.name == "split_csv" else path.parent)
    if (path / DEFAULT_CSV).is_file():
        return path / DEFAULT_CSV, path
    found = sorted((path / "split_csv").glob("*.csv")) if (path / "split_csv").is_dir() else []
    hint = f" (found {', '.join(p.name for p in found)}: pass one of them as the data path)" if found else ""
    raise LinesideError(f"{path}: no VisA split file {DEFAULT_CSV}{hint}")


def _resolve(root: Path, rel: str, csv_path: Path, line: int, what: str) -> Path:
    file = root / rel.strip()
    if not file.is_file():
        raise LinesideError(f"{csv_path}:{line}: {what} {file} does not exist; fix the CSV or restore the file")
    return file


def defect_name(label: str) -> str:
    """Folder-safe defect type from a VisA annotation label ("melt, scratch" -> "melt+scratch")."""
    parts = [" ".join(p.split()).lower().replace(" ", "_").replace("/", "_") for p in label.split(",")]
    return "+".join(p for p in parts if p) or "anomaly"


def _annotations(root: Path, objects: set[str]) -> dict[str, str]:
    """Image path (relative, as in the CSVs) -> defect type, from every object's image_anno.csv."""
    types: dict[str, str] = {}
    for obj in sorted(objects):
        anno = root / obj / "image_anno.csv"
        if not anno.is_file():
            continue
        with open(anno, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not {"image", "label"} <= set(reader.fieldnames or []):
                raise LinesideError(f"{anno}: expected columns image,label,mask (VisA annotation file)")
            for row in reader:
                if row["label"].strip().lower() != "normal":
                    types[row["image"].strip()] = defect_name(row["label"])
    return types


def _row(root: Path, csv_path: Path, line: int, row: dict[str, str]) -> Sample:
    split, label = row["split"].strip().lower(), row["label"].strip().lower()
    if split not in SPLITS:
        raise LinesideError(f"{csv_path}:{line}: split {row['split']!r} is not one of {', '.join(SPLITS)}")
    if label not in LABELS:
        raise LinesideError(f"{csv_path}:{line}: label {row['label']!r} is not one of {', '.join(LABELS)}")
    image = _resolve(root, row["image"], csv_path, line, "image")
    mask = None
    if (row.get("mask") or "").strip():
        mask = _resolve(root, row["mask"], csv_path, line, "mask")
    elif label == "anomaly":
        raise LinesideError(f"{csv_path}:{line}: anomaly image {image} has no mask; add its mask path to the CSV")
    return Sample(image, row["object"].strip(), split, LABELS[label], mask, mask_threshold=0)


def _typed(sample: Sample, root: Path, types: dict[str, str]) -> Sample:
    if sample.label == 0:
        return sample
    kind = types.get(sample.image_path.relative_to(root).as_posix())
    return dataclasses.replace(sample, defect_type=kind) if kind else sample


def read(path: Path) -> list[Sample]:
    """All samples listed in the VisA split CSV at `path` (a CSV file or the data set root)."""
    csv_path, root = _csv_and_root(path)
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise LinesideError(
                f"{csv_path}: missing CSV columns {', '.join(missing)}; a VisA split file has {','.join(COLUMNS)}"
            )
        samples = [_row(root, csv_path, line, row) for line, row in enumerate(reader, start=2)]
    if not samples:
        raise LinesideError(f"{csv_path}: the split file lists no images")
    types = _annotations(root, {s.category for s in samples})
    samples = [_typed(s, root, types) for s in samples]
    return sorted(samples, key=lambda s: (s.category, s.split, s.defect_type, str(s.image_path)))
