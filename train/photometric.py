"""Photometric looks of the good training images: the lighting drift a line sees (brightness, contrast).

A look multiplies the image by a brightness factor b, then pulls it towards its mean grey by a contrast
factor c (out = c * img + (1 - c) * mean), both drawn from U(1 - strength, 1 + strength): torchvision's
ColorJitter brightness and contrast, in a fixed order. The strength (0.4 in the edge preset) is that
transform's common setting, chosen before any measurement. These are the looks besides the image
itself, which the training set (`PreparedSet`) counts as look 0.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

GREY_WEIGHTS = np.array([0.114, 0.587, 0.299], dtype=np.float32)  # BGR -> luma (ITU-R BT.601)
LOOK_SEED = 0x10C  # mixed into every seed that draws looks, so they differ from the defect draws of the same seed


def photometric_look(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """One random brightness and contrast change of an (H, W, 3) uint8 BGR image, uint8 BGR."""
    brightness, contrast = rng.uniform(1.0 - strength, 1.0 + strength, size=2)
    bright = np.clip(image.astype(np.float32) * brightness, 0.0, 255.0)  # (H, W, 3)
    mean_grey = float((bright @ GREY_WEIGHTS).mean())
    out = contrast * bright + (1.0 - contrast) * mean_grey
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def photometric_looks(images: np.ndarray, looks: int, seed: int, strength: float, progress: bool = True) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, looks, H, W, 3) uint8; image i, look k is seeded by (seed, i, k)."""
    out = np.empty((images.shape[0], looks, *images.shape[1:]), dtype=np.uint8)
    for i in tqdm(range(images.shape[0]), desc="photometric looks", unit="img", disable=not progress):
        for k in range(looks):
            out[i, k] = photometric_look(images[i], np.random.default_rng([seed, i, k, LOOK_SEED]), strength)
    return out
