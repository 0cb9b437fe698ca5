"""AUPRO on hand-made cases and against a slow threshold-by-threshold reference."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from lineside.errors import LinesideError
from lineside.metrics import aupro, pro_curve


def slow_aupro(maps: np.ndarray, masks: np.ndarray, limit: float = 0.3) -> float:
    """The definition, one threshold at a time: mean per-region overlap vs FPR, integrated to `limit`."""
    regions = []
    for index, mask in enumerate(masks):
        labeled, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [(index, labeled == k) for k in range(1, count + 1)]
    good = ~masks
    points = [(0.0, 0.0)]
    for threshold in np.unique(maps)[::-1]:
        predicted = maps >= threshold
        fpr = (predicted & good).sum() / good.sum()
        pro = np.mean([predicted[index][region].mean() for index, region in regions])
        points.append((fpr, pro))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / limit


def two_regions(small: int = 1, large: int = 10) -> np.ndarray:
    """One 16x16 mask with a small square region and a large one, far apart."""
    mask = np.zeros((1, 16, 16), dtype=bool)
    mask[0, 1 : 1 + small, 1 : 1 + small] = True
    mask[0, 5 : 5 + large, 5 : 5 + large] = True
    return mask


def test_perfect_map_scores_one() -> None:
    masks = two_regions()
    assert aupro(masks.astype(np.float32), masks) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("found", ["small", "large"])
def test_map_that_finds_one_of_two_regions(found: str) -> None:
    # Curve (0, 0) -> (0, 0.5) -> (1, 1): at FPR 0.3 PRO = 0.65, area = 0.3 * (0.5 + 0.65) / 2.
    # Each region counts the same however many pixels it has.
    masks = two_regions(small=1, large=10)
    maps = np.zeros(masks.shape)
    maps[0, 1, 1] = 1.0 if found == "small" else 0.0
    maps[0, 5:15, 5:15] = 1.0 if found == "large" else 0.0
    assert aupro(maps, masks) == pytest.approx(0.575)
    fpr, pro = pro_curve(maps, masks)
    np.testing.assert_allclose(fpr, [0, 0, 1])
    np.testing.assert_allclose(pro, [0, 0.5, 1])


def test_constant_map_is_the_diagonal() -> None:
    masks = two_regions()
    assert aupro(np.zeros(masks.shape), masks) == pytest.approx(0.3 * 0.3 / 2 / 0.3)


def test_inverted_map_scores_zero() -> None:
    masks = two_regions()
    assert aupro(1.0 - masks, masks) == pytest.approx(0.0)


def test_regions_are_eight_connected() -> None:
    # (0,0), (1,1), (1,2) form ONE region under 8-connectivity (4-connectivity would give two).
    masks = np.zeros((1, 8, 8), dtype=bool)
    masks[0, [0, 1, 1], [0, 1, 2]] = True
    maps = np.zeros(masks.shape)
    maps[0, 0, 0] = 1.0
    _, pro = pro_curve(maps, masks)
    assert pro[1] == pytest.approx(1 / 3)


def test_regions_do_not_connect_across_images() -> None:
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[0, 5, 5] = True
    masks[1, 5, 5:8] = True
    maps = masks * np.array([1.0, 0.0])[:, None, None]  # finds image 0's region only
    _, pro = pro_curve(maps, masks)
    assert pro[1] == pytest.approx(0.5)  # two regions, one found (one 3D region would give 1/4)


def test_integration_limit_is_interpolated() -> None:
    masks = two_regions()
    maps = np.zeros(masks.shape)
    maps[0, 1, 1] = 1.0
    assert aupro(maps, masks, fpr_limit=1.0) == pytest.approx(0.75)  # 0.5 + the triangle 0.25
    assert aupro(maps, masks, fpr_limit=0.5) == pytest.approx((0.5 + 0.75) / 2)


def test_channel_axis_and_mask_encodings_are_accepted() -> None:
    rng = np.random.default_rng(1)
    masks = np.zeros((3, 20, 20), dtype=np.uint8)
    masks[0, 2:8, 3:9] = 255
    masks[2, 10:12, 10:19] = 255
    maps = rng.random(masks.shape) + (masks > 0) * 0.4
    expected = aupro(maps, masks > 0)
    assert aupro(maps[:, None], masks[:, None]) == pytest.approx(expected, abs=1e-15)
    assert aupro(maps.astype(np.float16), masks) == pytest.approx(aupro(maps.astype(np.float16), masks > 0))


@st.composite
def maps_and_masks(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """A few small maps with quantised (tied) scores and random blob masks."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (draw(st.integers(1, 4)), draw(st.integers(3, 12)), draw(st.integers(3, 12)))
    masks = ndimage.binary_opening(rng.random(shape) < draw(st.floats(0.1, 0.6)), np.ones((1, 2, 2)))
    masks[0, 0, 0], masks[-1, -1, -1] = True, False  # at least one region and one good pixel
    maps = rng.random(shape) + masks * draw(st.floats(-0.5, 1.5))
    levels = draw(st.sampled_from([3, 10, 1000]))
    return np.round(maps * levels) / levels, masks


@settings(max_examples=150, deadline=None)
@given(maps_and_masks(), st.sampled_from([0.3, 0.05, 1.0]))
def test_agrees_with_slow_reference(case: tuple[np.ndarray, np.ndarray], limit: float) -> None:
    maps, masks = case
    assert aupro(maps, masks, fpr_limit=limit) == pytest.approx(slow_aupro(maps, masks, limit), abs=1e-9)


@pytest.mark.parametrize(
    ("maps", "masks", "message"),
    [
        (np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), "needs at least one defect region"),
        (np.zeros((2, 4, 4)), np.ones((2, 4, 4)), "needs good pixels"),
        (np.zeros((2, 4, 4)), np.ones((2, 4, 5)), "does not match"),
        (np.full((2, 4, 4), np.nan), two_regions()[:, :4, :4].repeat(2, 0), "contain NaN"),
        (np.zeros((4, 4)), np.ones((4, 4)), "must have shape (N, H, W)"),
    ],
)
def test_bad_input_is_a_clear_error(maps: np.ndarray, masks: np.ndarray, message: str) -> None:
    with pytest.raises(LinesideError, match=re.escape(message)):
        aupro(maps, masks)


@pytest.mark.parametrize("limit", [0.0, -0.1, 1.5])
def test_limit_out_of_range(limit: float) -> None:
    masks = two_regions()
    with pytest.raises(LinesideError, match="limit must be in"):
        aupro(masks.astype(float), masks, fpr_limit=limit)
