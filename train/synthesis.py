"""DRAEM-style synthetic defects: Perlin-noise masks inside the part, filled with a foreign texture.

mask  = rotate(perlin(scales 2^0..2^5), +-90 deg) > 0.5, times the part's foreground mask
src   = a texture image (user folder such as DTD, or a procedural Perlin colour texture) or the
        image itself shuffled in an 8x8 grid
out   = image * (1 - mask) + (beta * image + (1 - beta) * src) * mask,  beta ~ U(0.2, 0.8)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from lineside.data.images import IMAGE_SUFFIXES, list_images, load_image
from lineside.errors import LinesideError
from lineside.preprocess import resize_for_model


def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """2-D Perlin noise of `shape` with `res` gradient cells per axis; values roughly in [-1, 1]."""
    ry, rx = res
    height, width = math.ceil(shape[0] / ry) * ry, math.ceil(shape[1] / rx) * rx
    angles = 2 * np.pi * rng.random((ry + 1, rx + 1))
    grads = np.stack([np.cos(angles), np.sin(angles)], axis=-1)  # (ry+1, rx+1, 2)
    ys = np.arange(height) * ry / height  # (H,) position in cell units
    xs = np.arange(width) * rx / width  # (W,)
    y0, x0 = ys.astype(int)[:, None], xs.astype(int)[None, :]  # (H, 1), (1, W)
    fy, fx = (ys % 1)[:, None], (xs % 1)[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:  # (H, W) dot(gradient, offset)
        g = grads[y0 + dy, x0 + dx]  # (H, W, 2)
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)

    def fade(t: np.ndarray) -> np.ndarray:
        return 6 * t**5 - 15 * t**4 + 10 * t**3

    ty, tx = fade(fy), fade(fx)
    top = corner(0, 0) * (1 - tx) + corner(0, 1) * tx
    bottom = corner(1, 0) * (1 - tx) + corner(1, 1) * tx
    noise = math.sqrt(2) * (top * (1 - ty) + bottom * ty)
    return noise[: shape[0], : shape[1]].astype(np.float32)


def perlin_mask(shape: tuple[int, int], rng: np.random.Generator, threshold: float = 0.5) -> np.ndarray:
    """Boolean (H, W) blob mask: Perlin noise at random scales 2^0..2^5, rotated +-90 deg, thresholded."""
    res = (2 ** int(rng.integers(0, 6)), 2 ** int(rng.integers(0, 6)))
    noise = perlin_noise(shape, res, rng)
    angle = float(rng.uniform(-90, 90))
    matrix = cv2.getRotationMatrix2D((shape[1] / 2, shape[0] / 2), angle, 1.0)
    noise = cv2.warpAffine(noise, matrix, (shape[1], shape[0]), borderMode=cv2.BORDER_REFLECT)
    return noise > threshold


def foreground_mask(image: np.ndarray, min_fraction: float = 0.05) -> np.ndarray:
    """Boolean (H, W) part mask: pixels far from the median border colour; all-ones for textures."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).astype(np.float32)  # (P, 3)
    distance = np.linalg.norm(image.astype(np.float32) - np.median(border, axis=0), axis=-1)  # (H, W)
    threshold, _ = cv2.threshold(np.clip(distance, 0, 255).astype(np.uint8), 0, 255, cv2.THRESH_OTSU)
    mask = (distance > max(threshold, 12.0)).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    fraction = float(mask.mean())
    if fraction < min_fraction or fraction > 1 - min_fraction:
        return np.ones(image.shape[:2], dtype=bool)
    return mask.astype(bool)


def grid_shuffle(image: np.ndarray, rng: np.random.Generator, grid: int = 8) -> np.ndarray:
    """The image cut into grid x grid cells (edges rounded to fit) and the cells permuted."""
    height, width = image.shape[:2]
    ch, cw = height // grid, width // grid
    cells = [image[r * ch : (r + 1) * ch, c * cw : (c + 1) * cw] for r in range(grid) for c in range(grid)]
    order = rng.permutation(len(cells))
    rows = [np.concatenate([cells[order[r * grid + c]] for c in range(grid)], axis=1) for r in range(grid)]
    return resize_for_model(np.concatenate(rows, axis=0), (height, width))


def procedural_texture(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random colourful Perlin texture, uint8 (H, W, 3): stands in for DTD when no folder is given."""
    channels = []
    for _ in range(3):
        res = 2 ** int(rng.integers(1, 6))
        noise = perlin_noise(shape, (res, res), rng)
        channels.append(np.clip((noise * rng.uniform(0.5, 1.5) + rng.uniform(-0.5, 0.5)) * 127 + 128, 0, 255))
    return np.stack(channels, axis=-1).astype(np.uint8)


def load_textures(folder: str | Path, size: tuple[int, int], limit: int = 200) -> list[np.ndarray]:
    """Up to `limit` texture images from a folder (recursively, e.g. DTD), resized to `size`."""
    root = Path(folder)
    if not root.is_dir():
        raise LinesideError(f"texture folder not found: {root}")
    files = list_images(root, recursive=True)[:limit]
    if not files:
        raise LinesideError(
            f"no texture images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}: pass a texture folder"
        )
    return [resize_for_model(load_image(path), size) for path in files]  # corrupt/truncated: LinesideError


class DefectSynthesizer:
    """Makes (defected image, mask) pairs from good uint8 BGR images."""

    def __init__(
        self,
        textures: Sequence[np.ndarray] = (),
        shuffle_probability: float = 0.5,
        blend: tuple[float, float] = (0.2, 0.8),
        max_tries: int = 10,
    ) -> None:
        self.textures = list(textures)
        self.shuffle_probability = shuffle_probability
        self.blend = blend
        self.max_tries = max_tries

    def _source(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < self.shuffle_probability:
            return grid_shuffle(image, rng)
        if self.textures:
            texture = self.textures[int(rng.integers(len(self.textures)))]
            return resize_for_model(texture, image.shape[:2])
        return procedural_texture(image.shape[:2], rng)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 -> defected (H, W, 3) uint8 and its float32 {0, 1} mask (H, W)."""
        foreground = foreground_mask(image)
        mask = np.zeros(image.shape[:2], dtype=bool)
        for _ in range(self.max_tries):  # a Perlin blob may miss the part; retry a few times
            mask = perlin_mask(image.shape[:2], rng) & foreground
            if mask.mean() > 0.002:
                break
        beta = float(rng.uniform(*self.blend))
        source = self._source(image, rng).astype(np.float32)
        pixels = image.astype(np.float32)
        blended = beta * pixels + (1 - beta) * source
        m = mask[..., None].astype(np.float32)  # (H, W, 1)
        out = pixels * (1 - m) + blended * m
        return np.clip(out + 0.5, 0, 255).astype(np.uint8), mask.astype(np.float32)
