"""open_dataset on every layout (MVTec, single MVTec category, VisA CSV, plain folder), good and bad input."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from lineside.data import Sample, open_dataset
from lineside.errors import LinesideError

SIZE = (20, 30)


def _img(path: Path, value: int = 120, size: tuple[int, int] = SIZE, gray: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((*size, 3), value, np.uint8)
    image[2:5, 3:9] = 255 - value
    ok, data = cv2.imencode(path.suffix, image[..., 0] if gray else image)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def _mask(path: Path, size: tuple[int, int] = SIZE, value: int = 255) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros(size, np.uint8)
    mask[5:10, 5:12] = value
    cv2.imwrite(str(path), mask)
    return path


def _mvtec_category(root: Path, name: str, n_train: int = 3) -> Path:
    cat = root / name
    for i in range(n_train):
        _img(cat / "train" / "good" / f"{i:03d}.png", 100 + i)
    _img(cat / "test" / "good" / "000.png")
    for kind in ("scratch", "hole"):
        for i in range(2):
            _img(cat / "test" / kind / f"{i:03d}.png", 90)
            _mask(cat / "ground_truth" / kind / f"{i:03d}_mask.png")
    (cat / "license.txt").write_text("not an image")
    return cat


# --- MVTec ---------------------------------------------------------------------------------------


def test_mvtec_root_with_categories(tmp_path):
    _mvtec_category(tmp_path, "bottle")
    _mvtec_category(tmp_path, "screw", n_train=5)
    (tmp_path / "readme.txt").write_text("MVTec-AD")
    ds = open_dataset(tmp_path)
    assert ds.layout == "mvtec" and ds.root == tmp_path
    assert ds.categories == ["bottle", "screw"]
    assert len(ds.select(split="train", category="screw")) == 5
    test = ds.select(split="test", category="bottle")
    assert [s.defect_type for s in test] == ["good", "hole", "hole", "scratch", "scratch"]
    assert [s.label for s in test] == [0, 1, 1, 1, 1]
    assert ds.counts()["bottle"] == {"test/good": 1, "test/hole": 2, "test/scratch": 2, "train/good": 3}
    image, mask = test[1].load()
    assert image.shape == (*SIZE, 3) and mask.dtype == bool and mask.sum() == 5 * 7
    good_image, good_mask = test[0].load()
    assert good_mask.shape == SIZE and not good_mask.any()


def test_single_category_root(tmp_path):
    cat = _mvtec_category(tmp_path, "washer")
    ds = open_dataset(cat, layout="mvtec")
    assert ds.categories == ["washer"] and len(ds.samples) == 3 + 5


def test_mvtec_mask_named_like_the_image(tmp_path):
    cat = _mvtec_category(tmp_path, "tile")
    os.replace(cat / "ground_truth" / "hole" / "000_mask.png", cat / "ground_truth" / "hole" / "000.png")
    sample = [s for s in open_dataset(cat).samples if s.defect_type == "hole"][0]
    assert sample.mask_path is not None and sample.mask_path.name == "000.png"


def test_mvtec_missing_mask_names_the_expected_file(tmp_path):
    cat = _mvtec_category(tmp_path, "tile")
    (cat / "ground_truth" / "scratch" / "001_mask.png").unlink()
    with pytest.raises(LinesideError, match=r"001.png: defect image has no mask; expected .*001_mask.png"):
        open_dataset(tmp_path)


def test_mvtec_mask_size_mismatch(tmp_path):
    cat = _mvtec_category(tmp_path, "tile")
    _mask(cat / "ground_truth" / "hole" / "000_mask.png", size=(10, 10))
    sample = [s for s in open_dataset(cat).samples if s.mask_path and s.mask_path.name == "000_mask.png"][0]
    with pytest.raises(LinesideError, match="mask is 10x10 px but its image is 30x20 px"):
        sample.load()


def test_mvtec_empty_train_split(tmp_path):
    cat = _mvtec_category(tmp_path, "tile")
    for p in (cat / "train" / "good").iterdir():
        p.unlink()
    with pytest.raises(LinesideError, match="no training images"):
        open_dataset(tmp_path)


def test_mvtec_empty_test_split(tmp_path):
    cat = tmp_path / "tile"
    _img(cat / "train" / "good" / "0.png")
    (cat / "test" / "good").mkdir(parents=True)
    with pytest.raises(LinesideError, match="no test images"):
        open_dataset(tmp_path)


def test_mvtec_corrupt_image_fails_on_load_with_its_name(tmp_path):
    cat = _mvtec_category(tmp_path, "tile")
    (cat / "train" / "good" / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    bad = [s for s in open_dataset(cat).samples if s.image_path.name == "001.png" and s.split == "train"][0]
    with pytest.raises(LinesideError, match="001.png"):
        bad.load_image()


def test_grayscale_jpeg_category(tmp_path):
    cat = tmp_path / "tile"
    for i in range(2):
        _img(cat / "train" / "good" / f"{i}.jpg", gray=True)
    _img(cat / "test" / "crack" / "c.jpg", gray=True)
    _mask(cat / "ground_truth" / "crack" / "c_mask.png")
    image, mask = open_dataset(tmp_path).select(split="test")[0].load()
    assert image.shape == (*SIZE, 3) and mask.sum() == 35


# --- select / open_dataset errors ------------------------------------------------------------------


def test_select_errors_say_what_exists(tmp_path):
    _mvtec_category(tmp_path, "bottle")
    ds = open_dataset(tmp_path)
    with pytest.raises(LinesideError, match="no category 'cable'.*bottle"):
        ds.select(category="cable")
    with pytest.raises(LinesideError, match="unknown split 'val'"):
        ds.select(split="val")


def test_wrong_layout_says_what_was_expected(tmp_path):
    (tmp_path / "stuff" / "more").mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(LinesideError, match="cannot recognise the data set layout.*expected an MVTec-AD layout"):
        open_dataset(tmp_path)


def test_empty_folder(tmp_path):
    with pytest.raises(LinesideError, match="cannot recognise"):
        open_dataset(tmp_path)
    with pytest.raises(LinesideError, match="no good images"):
        open_dataset(tmp_path, layout="folder")
    with pytest.raises(LinesideError, match="no MVTec category folders"):
        open_dataset(tmp_path, layout="mvtec")
    with pytest.raises(LinesideError, match="no VisA split file"):
        open_dataset(tmp_path, layout="visa")


def test_bad_paths_and_layout_names(tmp_path):
    with pytest.raises(LinesideError, match="no such data set folder"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(LinesideError, match="unknown layout 'coco'"):
        open_dataset(tmp_path, layout="coco")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(LinesideError, match="is not a folder"):
        open_dataset(tmp_path / "file.png")


# --- VisA ------------------------------------------------------------------------------------------


def _visa(root: Path, rows: list[str] | None = None, header: str = "object,split,label,image,mask") -> Path:
    for obj in ("candle", "pcb1"):
        for i in range(3):
            _img(root / obj / "Data" / "Images" / "Normal" / f"{i:04d}.JPG")
        _img(root / obj / "Data" / "Images" / "Anomaly" / "000.JPG")
        _mask(root / obj / "Data" / "Masks" / "Anomaly" / "000.png", value=1)  # VisA masks store region ids
    if rows is None:
        rows = []
        for obj in ("candle", "pcb1"):
            rows += [f"{obj},train,normal,{obj}/Data/Images/Normal/{i:04d}.JPG," for i in range(2)]
            rows.append(f"{obj},test,normal,{obj}/Data/Images/Normal/0002.JPG,")
            rows.append(f"{obj},test,anomaly,{obj}/Data/Images/Anomaly/000.JPG,{obj}/Data/Masks/Anomaly/000.png")
    csv = root / "split_csv" / "1cls.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    csv.write_text("\n".join([header, *rows]) + "\n")
    return csv


def test_visa_split_csv(tmp_path):
    csv = _visa(tmp_path)
    ds = open_dataset(tmp_path)
    assert ds.layout == "visa" and ds.categories == ["candle", "pcb1"]
    assert len(ds.select(split="train", category="pcb1")) == 2
    bad = [s for s in ds.select(split="test", category="candle") if s.label == 1]
    assert len(bad) == 1 and bad[0].defect_type == "anomaly"
    image, mask = bad[0].load()
    assert mask.sum() == 35  # mask value 1 counts as defective in VisA
    from_csv = open_dataset(csv)
    assert from_csv.root == tmp_path and len(from_csv.samples) == len(ds.samples)


def test_visa_defect_types_from_image_anno(tmp_path):
    _visa(tmp_path)
    (tmp_path / "candle" / "image_anno.csv").write_text(
        "image,label,mask\n"
        "candle/Data/Images/Normal/0000.JPG,normal,\n"
        'candle/Data/Images/Anomaly/000.JPG,"chunk of wax missing, Weird  Wick",candle/Data/Masks/Anomaly/000.png\n'
    )
    ds = open_dataset(tmp_path)
    types = {s.category: s.defect_type for s in ds.samples if s.label}
    assert types == {"candle": "chunk_of_wax_missing+weird_wick", "pcb1": "anomaly"}  # pcb1 has no image_anno.csv
    assert ds.counts()["candle"]["test/chunk_of_wax_missing+weird_wick"] == 1


def test_visa_bad_image_anno(tmp_path):
    _visa(tmp_path)
    (tmp_path / "pcb1" / "image_anno.csv").write_text("file,kind\nx,y\n")
    with pytest.raises(LinesideError, match="image_anno.csv: expected columns image,label,mask"):
        open_dataset(tmp_path)


def test_visa_missing_columns(tmp_path):
    _visa(tmp_path, rows=[], header="object,split,image")
    with pytest.raises(LinesideError, match="missing CSV columns label, mask"):
        open_dataset(tmp_path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("candle,val,normal,candle/Data/Images/Normal/0000.JPG,", "split 'val'"),
        ("candle,test,broken,candle/Data/Images/Normal/0000.JPG,", "label 'broken'"),
        ("candle,train,normal,candle/Data/Images/Normal/9999.JPG,", "9999.JPG does not exist"),
        ("candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,", "has no mask"),
        ("candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/nope.png", "nope.png does not exist"),
    ],
)
def test_visa_bad_rows_name_the_line(tmp_path, row, message):
    _visa(tmp_path, rows=["candle,train,normal,candle/Data/Images/Normal/0001.JPG,", row])
    with pytest.raises(LinesideError, match=f"1cls.csv:3: .*{message}"):
        open_dataset(tmp_path)


def test_visa_empty_csv(tmp_path):
    _visa(tmp_path, rows=[])
    with pytest.raises(LinesideError, match="lists no images"):
        open_dataset(tmp_path)


# --- plain folder ------------------------------------------------------------------------------------


def test_folder_of_images_is_all_good_training_data(tmp_path):
    root = tmp_path / "line3"
    for i in range(4):
        _img(root / f"{i}.bmp")
    ds = open_dataset(root)
    assert ds.layout == "folder" and ds.categories == ["line3"]
    assert all(s.split == "train" and s.label == 0 for s in ds.samples) and len(ds.samples) == 4
    with pytest.raises(LinesideError, match="no test images"):
        ds.select(split="test")


def test_folder_with_defects_and_masks(tmp_path):
    root = tmp_path / "part"
    for i in range(3):
        _img(root / "good" / f"g{i}.png")
    _img(root / "test_good" / "t0.png")
    _img(root / "defect" / "d0.png")
    _img(root / "defect" / "d1.jpg")
    _mask(root / "masks" / "d0.png")
    _mask(root / "masks" / "d1_mask.png")
    ds = open_dataset(root)
    test = ds.select(split="test")
    assert [(s.defect_type, s.label) for s in test] == [("good", 0), ("defect", 1), ("defect", 1)]
    assert all(s.load()[1].sum() == 35 for s in test[1:])


def test_folder_defects_without_masks_are_image_level(tmp_path):
    root = tmp_path / "part"
    _img(root / "good" / "g.png")
    _img(root / "defect" / "d.png")
    sample = open_dataset(root).select(split="test")[0]
    assert sample.mask_path is None and sample.label == 1
    with pytest.raises(LinesideError, match="has no ground-truth mask"):
        sample.load_mask()


def test_folder_missing_mask(tmp_path):
    root = tmp_path / "part"
    _img(root / "good" / "g.png")
    _img(root / "defect" / "d.png")
    (root / "masks").mkdir()
    with pytest.raises(LinesideError, match="d.png: defect image has no mask"):
        open_dataset(root)


def test_folder_masks_without_defects(tmp_path):
    root = tmp_path / "part"
    _img(root / "good" / "g.png")
    (root / "masks").mkdir()
    with pytest.raises(LinesideError, match="no defect/ folder"):
        open_dataset(root)


def test_folder_rgba_and_16bit_images(tmp_path):
    root = tmp_path / "part"
    rgba = np.dstack([np.full((*SIZE, 3), 80, np.uint8), np.zeros(SIZE, np.uint8)])
    (root / "good").mkdir(parents=True)
    cv2.imwrite(str(root / "good" / "a.png"), rgba)
    cv2.imwrite(str(root / "good" / "b.png"), np.full((*SIZE, 3), 257 * 80, np.uint16))
    images = [s.load_image() for s in open_dataset(root).samples]
    assert all(im.shape == (*SIZE, 3) and im.dtype == np.uint8 and (im == 80).all() for im in images)


def test_sample_is_frozen():
    sample = Sample(Path("a.png"), "c", "train", "good")
    with pytest.raises(AttributeError):
        sample.split = "test"  # type: ignore[misc]
