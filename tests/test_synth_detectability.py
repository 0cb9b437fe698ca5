"""The synthetic defects are detectable by a plain feature-distance baseline (not by the trained models).

A PatchCore-like nearest-neighbour score on frozen EfficientNet-Lite0 ImageNet features (strides 8
and 16, 3x3 averaged), with no training at all, must already separate good from defect images and
localise the defects. This guards against defects that are invisible (or that drift so), while the
trained CRR/RLR models are judged on the same set by their own tests.
"""

from __future__ import annotations

import numpy as np
import pytest

SIZE = 256


def _features(backbone, samples):
    import torch
    import torch.nn.functional as F

    images = np.stack([s.load_image() for s in samples])  # (N, H, W, 3) uint8 BGR
    x = torch.from_numpy(images[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255.0
    x = (x - 0.5) / 0.5  # EfficientNet-Lite normalisation, (N, 3, H, W)
    with torch.no_grad():
        levels = backbone(x)
        fine, coarse = levels[1], levels[2]  # strides 8 and 16
        coarse = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        return F.avg_pool2d(torch.cat([fine, coarse], 1), 3, 1, 1)  # (N, C, h, w)


def _knn_maps(train, test):
    import cv2
    import torch
    import torch.nn.functional as F

    channels = train.shape[1]
    bank = train.permute(0, 2, 3, 1).reshape(-1, channels)  # (N*h*w, C)
    query = test.permute(0, 2, 3, 1).reshape(-1, channels)
    dist = torch.cat([torch.cdist(query[i : i + 4096], bank).min(1).values for i in range(0, len(query), 4096)])
    maps = dist.reshape(len(test), 1, *test.shape[-2:])
    maps = F.interpolate(maps, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0].numpy()
    return np.stack([cv2.GaussianBlur(m, (0, 0), 4) for m in maps])  # (N, H, W)


@pytest.mark.slow
@pytest.mark.parametrize("category", ["screw", "mesh"])
def test_feature_distance_baseline_finds_the_defects(synth_factory, category):
    torch = pytest.importorskip("torch", reason="needs the train extra")
    from lineside.data import open_dataset
    from lineside.metrics import auroc
    from lineside.train.backbones import build_backbone

    torch.set_num_threads(2)
    root = synth_factory(categories=(category,), n_train=30, n_test_good=12, n_test_defect=12, size=SIZE, seed=1)
    ds = open_dataset(root)
    backbone = build_backbone("efficientnet_lite0", (SIZE, SIZE))
    test = ds.select(split="test")
    maps = _knn_maps(_features(backbone, ds.select(split="train")), _features(backbone, test))
    labels = np.array([s.label for s in test])
    masks = np.stack([s.load_mask((SIZE, SIZE)) for s in test])
    image_auroc = auroc(maps.reshape(len(maps), -1).max(1), labels)
    pixel_auroc = auroc(maps.ravel(), masks.ravel())
    assert image_auroc >= 0.9, f"{category}: image AUROC {image_auroc:.3f}"
    assert pixel_auroc >= 0.93, f"{category}: pixel AUROC {pixel_auroc:.3f}"
