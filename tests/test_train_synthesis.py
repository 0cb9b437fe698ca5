"""Defect synthesis and the in-graph pre-processing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lineside.errors import LinesideError
from lineside.train.preprocess import Preprocess
from lineside.train.synthesis import DefectSynthesizer, foreground_mask, grid_shuffle, load_textures, perlin_noise


def test_preprocess_matches_numpy():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    out = Preprocess(mean, std)(torch.from_numpy(frames)).numpy()
    rgb = frames[..., ::-1].astype(np.float32) / 255.0
    expected = ((rgb - np.array(mean)) / np.array(std)).transpose(0, 3, 1, 2)
    assert out.shape == (2, 3, 5, 7)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_perlin_noise_is_smooth_and_seeded():
    a = perlin_noise((64, 96), (4, 2), np.random.default_rng(1))
    b = perlin_noise((64, 96), (4, 2), np.random.default_rng(1))
    assert a.shape == (64, 96) and np.array_equal(a, b)
    assert -1.5 < a.min() < -0.1 and 0.1 < a.max() < 1.5
    assert np.abs(np.diff(a, axis=0)).max() < 0.2  # smooth: neighbours differ little


def _part_image() -> np.ndarray:
    image = np.full((128, 128, 3), 40, np.uint8)
    image[32:96, 32:96] = (200, 180, 160)
    image += np.random.default_rng(0).integers(0, 6, image.shape, dtype=np.uint8)
    return image


def test_foreground_mask_finds_the_part_and_falls_back_for_textures():
    mask = foreground_mask(_part_image())
    assert mask[64, 64] and not mask[5, 5]
    assert 0.2 < mask.mean() < 0.3
    texture = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert foreground_mask(texture).all() or foreground_mask(texture).mean() > 0.05


def test_defects_change_pixels_only_inside_the_mask_and_are_seeded():
    image = _part_image()
    synth = DefectSynthesizer()
    changed_any = False
    for seed in range(6):
        out, mask = synth(image, np.random.default_rng(seed))
        again, mask2 = synth(image, np.random.default_rng(seed))
        assert np.array_equal(out, again) and np.array_equal(mask, mask2)
        assert out.dtype == np.uint8 and mask.dtype == np.float32
        outside = mask == 0
        assert np.array_equal(out[outside], image[outside])
        assert not mask[:20].any()  # only on the part (rows 32..95), never on the background
        changed_any |= bool((out != image).any())
    assert changed_any


def test_grid_shuffle_keeps_pixels_and_texture_folder_errors(tmp_path):
    image = np.arange(64 * 64 * 3, dtype=np.uint32).reshape(64, 64, 3).astype(np.uint8)
    shuffled = grid_shuffle(image, np.random.default_rng(0))
    assert shuffled.shape == image.shape and not np.array_equal(shuffled, image)
    assert sorted(shuffled.ravel().tolist()) == sorted(image.ravel().tolist())
    with pytest.raises(LinesideError, match="no texture images"):
        load_textures(tmp_path, (64, 64))
