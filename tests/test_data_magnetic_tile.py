"""The readers on real, messy data: the magnetic tile set (grayscale JPEGs of varying size, soft masks)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lineside.data import open_dataset

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "magnetic_tile"  # ../shared/data from the repo
ROOT = Path(os.environ.get("LINESIDE_MAGNETIC_TILE", DEFAULT))
pytestmark = pytest.mark.skipif(not ROOT.is_dir(), reason=f"real data set not present at {ROOT}")

README_COUNTS = {
    "train/good": 752,
    "test/good": 200,
    "test/blowhole": 115,
    "test/break": 85,
    "test/crack": 57,
    "test/fray": 32,
    "test/uneven": 103,
}


@pytest.fixture(scope="module")
def tiles():
    return open_dataset(ROOT)


def test_counts_match_the_readme(tiles):
    assert tiles.layout == "mvtec" and tiles.categories == ["magnetic_tile"]
    assert tiles.counts()["magnetic_tile"] == README_COUNTS
    assert all(s.mask_path is not None for s in tiles.samples if s.label == 1)


def test_parent_folder_finds_the_category(tiles):
    parent = open_dataset(ROOT.parent, layout="mvtec")
    assert parent.categories == ["magnetic_tile"] and len(parent.samples) == len(tiles.samples)


def test_grayscale_jpegs_of_varying_size_with_soft_masks(tiles):
    shapes = set()
    for sample in tiles.select(split="test")[::20]:
        image, mask = sample.load()
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert (image[..., 0] == image[..., 1]).all()  # grayscale source, three equal channels
        assert mask.shape == image.shape[:2]
        shapes.add(image.shape[:2])
    assert len(shapes) > 5


def test_soft_mask_edges_are_thresholded_at_127(tiles):
    from lineside.data.images import _decode, _read_bytes

    sample = next(s for s in tiles.select(split="test") if s.defect_type == "blowhole")
    raw = _decode(sample.mask_path, _read_bytes(sample.mask_path))
    assert len(np.unique(raw)) > 2  # soft edges in the file
    mask = sample.load_mask(raw.shape[:2])
    np.testing.assert_array_equal(mask, raw > 127)


@pytest.mark.slow
def test_every_image_and_mask_loads(tiles):
    empty = 0
    for sample in tiles.samples:
        _, mask = sample.load()
        empty += sample.label == 1 and not mask.any()
    assert empty == 4  # the README: four masks are empty
