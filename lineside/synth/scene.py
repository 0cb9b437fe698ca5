"""One synthetic sample: clean render, defected render, lighting, camera blur and noise, exact mask.

The defected image equals the clean image (same pose, lighting and sensor noise) everywhere except
inside the mask; the mask is the set of pixels the defect changed by at least `DIFF_LEVEL` grey
levels, morphologically closed with a 5x5 disc so thin gaps inside a defect are part of it.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from lineside.synth.noise import lighting_field
from lineside.synth.objects import Capsule, Screw, Washer
from lineside.synth.textures import BrushedMetal, Mesh, Wood

DIFF_LEVEL = 10  # grey levels a defect must change a pixel by to count as defective
MIN_DEFECT_AREA = 12  # px at 256x256; fainter draws are redrawn
MIN_AREA_BY_TYPE = {"stain": 150}  # a faint discolouration smaller than this is not a reliable defect
CLOSE_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
GOOD = "good"
SENSOR_SIGMA = 2.0  # grey levels
NOISE_PAD = 256


class Category(Protocol):
    """What every synthetic category provides."""

    name: str
    defect_types: tuple[str, ...]

    def sample(self, rng: np.random.Generator, size: int) -> Any: ...

    def render(self, p: Any) -> np.ndarray: ...

    def defect(self, kind: str, p: Any, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


CATEGORIES: dict[str, Category] = {c.name: c for c in (Mesh(), BrushedMetal(), Wood(), Washer(), Screw(), Capsule())}


@dataclass(frozen=True)
class RenderedSample:
    """A rendered sample: `image` (H, W, 3) uint8 BGR, its defect-free twin `clean`, and the (H, W) bool `mask`."""

    image: np.ndarray
    clean: np.ndarray
    mask: np.ndarray


def _stable_id(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


@functools.lru_cache(maxsize=2)
def _noise_tile(size: int) -> np.ndarray:
    tile = np.random.default_rng(_stable_id("sensor")).standard_normal((size + NOISE_PAD, size + NOISE_PAD, 3))
    tile = (tile * SENSOR_SIGMA).astype(np.float32)
    tile.flags.writeable = False
    return tile


def sensor_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Gaussian sensor noise (size, size, 3): a random window of a fixed noise tile (cheaper than fresh draws)."""
    dy, dx = rng.integers(0, NOISE_PAD, size=2)
    order = rng.permutation(3)
    return _noise_tile(size)[dy : dy + size, dx : dx + size][..., order]


def _finish(scene: np.ndarray, light: np.ndarray, noise: np.ndarray, blur: float) -> np.ndarray:
    """Lighting, lens blur and sensor noise: (H, W, 3) float32 -> uint8."""
    lit = scene * light[..., None]
    lit = cv2.GaussianBlur(lit, (0, 0), blur)
    return np.clip(np.rint(lit + noise), 0, 255).astype(np.uint8)


def render_sample(category: str, seed: int, split: str, defect_type: str, index: int, size: int) -> RenderedSample:
    """Render sample `index` of `category`/`split`/`defect_type`: a pure function of its arguments."""
    cat = CATEGORIES[category]
    entropy = [seed, _stable_id(category), _stable_id(split), _stable_id(defect_type), index]
    scene_rng, light_rng, noise_rng, defect_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(entropy).spawn(4)
    )
    params = cat.sample(scene_rng, size)
    base = cat.render(params)  # (H, W, 3) float32 before lighting
    shape = (size, size)
    light = lighting_field(light_rng, shape)
    noise = sensor_noise(noise_rng, size)
    blur = 0.6 * size / 256
    clean = _finish(base, light, noise, blur)
    if defect_type == GOOD:
        return RenderedSample(clean, clean, np.zeros(shape, bool))
    min_area = MIN_AREA_BY_TYPE.get(defect_type, MIN_DEFECT_AREA) * (size / 256) ** 2
    for _ in range(16):
        defected = _finish(cat.defect(defect_type, params, base, defect_rng), light, noise, blur)
        changed = np.abs(defected.astype(np.int16) - clean.astype(np.int16)).max(axis=2) >= DIFF_LEVEL
        mask = cv2.morphologyEx(changed.astype(np.uint8), cv2.MORPH_CLOSE, CLOSE_KERNEL).astype(bool)
        if mask.sum() >= min_area:
            image = np.where(mask[..., None], defected, clean)
            return RenderedSample(image, clean, mask)
    raise RuntimeError(f"could not draw a visible {defect_type} defect for {category} sample {index}")
