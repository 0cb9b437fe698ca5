"""Photometric looks: the transform itself, their cached features, and how the loop's batches pick them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from rlr_support import TINY

from lineside.train.features import TrainData, prepare
from lineside.train.loop import _epoch_looks
from lineside.train.models.rlr import PRESETS, RLR
from lineside.train.photometric import photometric_look, photometric_looks
from lineside.train.preprocess import Preprocess


def _images(n: int, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(40, 200, size=(n, size, size, 3), dtype=np.uint8)


def test_a_look_is_torchvisions_brightness_then_contrast():
    image = _images(1)[0]
    rng, replay = np.random.default_rng(3), np.random.default_rng(3)
    brightness, contrast = replay.uniform(0.6, 1.4, size=2)
    bright = np.clip(image.astype(np.float32) * brightness, 0, 255)
    grey = (bright[..., 0] * 0.114 + bright[..., 1] * 0.587 + bright[..., 2] * 0.299).mean()
    expected = np.clip(np.rint(contrast * bright + (1 - contrast) * grey), 0, 255)
    assert np.array_equal(photometric_look(image, rng, 0.4), expected.astype(np.uint8))


def test_looks_are_seeded_per_image_and_change_brightness_within_the_strength():
    images = _images(6)
    looks = photometric_looks(images, 3, seed=5, strength=0.4, progress=False)
    assert looks.shape == (6, 3, 96, 96, 3) and looks.dtype == np.uint8
    assert np.array_equal(looks, photometric_looks(images, 3, seed=5, strength=0.4, progress=False))
    assert not np.array_equal(looks, photometric_looks(images, 3, seed=6, strength=0.4, progress=False))
    ratio = looks.reshape(6, 3, -1).mean(-1) / images.reshape(6, 1, -1).mean(-1)  # contrast keeps the mean
    assert 0.55 < ratio.min() and ratio.max() < 1.45 and ratio.std() > 0.05
    assert np.array_equal(photometric_looks(images, 1, seed=5, strength=0.0, progress=False)[:, 0], images)


def test_epoch_looks_cover_every_look_and_change_per_epoch():
    assert _epoch_looks(50, 0, seed=0, stage=0, epoch=0) is None
    first, second = _epoch_looks(300, 2, 0, 0, 0), _epoch_looks(300, 2, 0, 0, 1)
    assert first is not None and second is not None
    assert set(first.tolist()) == {0, 1, 2} and not torch.equal(first, second)
    assert torch.equal(first, _epoch_looks(300, 2, 0, 0, 0))


def test_prepared_batches_carry_the_chosen_looks_features():
    torch.manual_seed(0)
    model = RLR(dataclasses.replace(TINY, photometric_looks=2), ["wood"], random_init_backbone=True).eval()
    images = _images(5)
    prepared = prepare(model, TrainData(images, np.zeros(5, np.int64), ["wood"]), seed=1, device=torch.device("cpu"),
                       progress=False)  # fmt: skip
    assert prepared.looks == 2 and prepared.look_frames is not None and prepared.look_features is not None
    assert prepared.look_frames.shape == (5, 2, 96, 96, 3)
    assert np.array_equal(prepared.look_frames.numpy(), photometric_looks(images, 2, 1, 0.4, progress=False))
    preprocess = Preprocess(model.mean, model.std)
    indices, looks = torch.tensor([4, 0, 2]), torch.tensor([2, 0, 1])
    batch = prepared.batch(indices, 0, preprocess, torch.device("cpu"), looks)
    frames = torch.stack([prepared.look_frames[4, 1], prepared.frames[0], prepared.look_frames[2, 0]])
    assert torch.equal(batch.images, preprocess(frames))
    assert batch.features is not None
    with torch.no_grad():
        encoded = model.encode(preprocess(frames))
    for cached, fresh in zip(batch.features, encoded, strict=True):
        assert torch.allclose(cached, fresh, atol=2e-2 * float(fresh.abs().max()))  # float16 cache
    plain = prepared.batch(indices, 0, preprocess, torch.device("cpu"))
    assert torch.equal(plain.images, preprocess(prepared.frames[indices]))


def test_the_edge_preset_trains_on_looks_and_the_paper_form_does_not():
    assert PRESETS["edge"].photometric_looks == 2 and PRESETS["edge"].photometric_strength == pytest.approx(0.4)
    assert PRESETS["paper"].photometric_looks == 0


def test_defects_are_drawn_on_looks_and_their_clean_image_is_taken_in_the_same_look():
    from lineside.train.models import build_model
    from lineside.train.synthesis import DefectSynthesizer

    torch.manual_seed(0)
    model = build_model("crr", "tiny", ["wood"], random_init_backbone=True, photometric_looks=2, input_size=(96, 96))
    images = _images(6)
    prepared = prepare(model, TrainData(images, np.zeros(6, np.int64), ["wood"]), seed=2, device=torch.device("cpu"),
                       progress=False)  # fmt: skip
    assert prepared.defect_looks is not None and prepared.look_frames is not None
    assert prepared.defect_looks.shape == (6, 2) and set(prepared.defect_looks.flatten().tolist()) <= {0, 1, 2}
    assert len(set(prepared.defect_looks.flatten().tolist())) > 1
    for i, v in ((0, 0), (3, 1), (5, 0)):
        look = int(prepared.defect_looks[i, v])
        base = images[i] if look == 0 else prepared.look_frames[i, look - 1].numpy()
        drawn, _ = DefectSynthesizer()(base, np.random.default_rng([2, i, v]))
        assert np.array_equal(prepared.defect_frames[i, v].numpy(), drawn)
    preprocess = Preprocess(model.mean, model.std)
    indices = torch.arange(6)
    batch = prepared.batch(indices, 1, preprocess, torch.device("cpu"), torch.zeros(6, dtype=torch.int64))
    looks = prepared.defect_looks[:, 1]
    clean = [images[i] if int(k) == 0 else prepared.look_frames[i, int(k) - 1].numpy() for i, k in enumerate(looks)]
    assert torch.equal(batch.images, preprocess(torch.from_numpy(np.stack(clean))))  # the loop's looks are ignored
