"""The readers on the second real set: DeepPCB (640 px single-channel boards, box masks), and both real sets together."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from lineside.data import open_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data from the repo
ROOT = Path(os.environ.get("LINESIDE_DEEPPCB", SHARED / "deeppcb"))
TILES = Path(os.environ.get("LINESIDE_MAGNETIC_TILE", SHARED / "magnetic_tile"))
pytestmark = pytest.mark.skipif(not ROOT.is_dir(), reason=f"real data set not present at {ROOT}")

README_COUNTS = {"train/good": 334, "test/good": 167, "test/defect": 167}


@pytest.fixture(scope="module")
def boards():
    return open_dataset(ROOT)


def test_counts_match_the_readme(boards) -> None:
    assert boards.layout == "mvtec" and boards.categories == ["pcb"]
    assert boards.counts()["pcb"] == README_COUNTS
    defects = [s for s in boards.samples if s.label == 1]
    assert len(defects) == 167 and all(s.mask_path is not None and s.defect_type == "defect" for s in defects)
    assert all(s.mask_path is None for s in boards.samples if s.label == 0)


def test_single_channel_640px_boards_load_as_three_equal_channels(boards) -> None:
    for sample in boards.select(split="test")[::40]:
        image, mask = sample.load()
        assert image.shape == (640, 640, 3) and image.dtype == np.uint8
        assert (image[..., 0] == image[..., 2]).all()
        assert mask.shape == (640, 640) and mask.dtype == bool
        assert mask.any() == (sample.label == 1)


def test_masks_are_filled_axis_aligned_boxes(boards) -> None:
    for sample in [s for s in boards.samples if s.label == 1][::20]:
        mask = sample.load_mask().astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
        assert count > 1
        for index in range(1, count):
            x, y, w, h, area = stats[index]
            box = labels[y : y + h, x : x + w]
            # a box fills its bounding rectangle (overlapping boxes merge into a union of rectangles)
            assert area == w * h or (box == index).mean() > 0.5


@pytest.mark.skipif(not TILES.is_dir(), reason=f"real data set not present at {TILES}")
def test_both_real_sets_open_as_one_unified_root(tmp_path: Path) -> None:
    (tmp_path / "pcb").symlink_to(ROOT / "pcb", target_is_directory=True)
    (tmp_path / "magnetic_tile").symlink_to(TILES, target_is_directory=True)
    both = open_dataset(tmp_path, layout="mvtec")
    assert both.categories == ["magnetic_tile", "pcb"]
    counts = both.counts()
    assert counts["pcb"] == README_COUNTS and counts["magnetic_tile"]["train/good"] == 752
