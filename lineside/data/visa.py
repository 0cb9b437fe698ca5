"""VisA layout: a split CSV (split_csv/1cls.csv) with columns object,split,label,image,mask.

Rows look like `candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png`;
paths are relative to the data set root, `label` is "normal" or "anomaly". VisA masks store region ids
(0 = background), so any non-zero mask pixel is defective. The 1cls CSV does not name the defect kind:
defects get the type "anomaly".
"""

from __future__ import annotations

import csv
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
    return sorted(samples, key=lambda s: (s.category, s.split, s.defect_type, str(s.image_path)))
