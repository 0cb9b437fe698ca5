"""plot_curves writes a real PNG of the ROC, precision-recall and PRO curves."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_metrics_evaluate import synthetic_category

from lineside.errors import LinesideError
from lineside.metrics import plot_curves


def test_image_and_pixel_curves(tmp_path: Path) -> None:
    scores, labels, maps, masks = synthetic_category(count=20, size=64)
    written = plot_curves(tmp_path / "plots" / "screw.png", scores, labels, maps, masks, title="screw")
    picture = cv2.imread(str(written))
    assert picture.shape == (450, 1500, 3)  # three panels of 5 x 4.5 inches at 100 dpi
    assert picture.std() > 20  # curves and text, not a blank canvas
    assert os.listdir(written.parent) == ["screw.png"]


def test_image_curves_only(tmp_path: Path) -> None:
    scores, labels, _, _ = synthetic_category()
    picture = cv2.imread(str(plot_curves(tmp_path / "image.png", scores, labels)))
    assert picture.shape == (450, 1000, 3)  # ROC and precision-recall only


def test_bad_input_writes_nothing(tmp_path: Path) -> None:
    scores, labels, maps, masks = synthetic_category()
    with pytest.raises(LinesideError, match="AUROC needs both good and defect pixels"):
        plot_curves(tmp_path / "x.png", scores, labels, maps, np.zeros_like(masks))
    assert os.listdir(tmp_path) == []
