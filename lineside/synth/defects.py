"""Defect painters shared by the categories: each takes a clean render and returns a defected copy.

Renders are float32 (H, W, 3) BGR in 0..255 before lighting. `support` (H, W) in [0, 1] is where the
part is (all ones for textures); defects painted on a part are multiplied by it so they never spill
onto the background. Strengths are chosen so defects are visible but not saturated blobs.
"""

from __future__ import annotations

import numpy as np

from lineside.synth.noise import blob_alpha, coords, draw_polyline, fractal_noise, jagged_curve, random_curve


def pick_point(rng: np.random.Generator, support: np.ndarray, margin: int, inner: float = 0.95) -> tuple[float, float]:
    """A random (x, y) where `support` > `inner`, at least `margin` px from the border."""
    valid = support > inner
    valid[:margin, :] = False
    valid[-margin:, :] = False
    valid[:, :margin] = False
    valid[:, -margin:] = False
    ys, xs = np.nonzero(valid)
    k = int(rng.integers(len(xs)))
    return float(xs[k]), float(ys[k])


def blend(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray | tuple[float, float, float]) -> np.ndarray:
    """Alpha-composite a flat colour over `image` with (H, W) `alpha`."""
    a = alpha[..., None]
    return image * (1 - a) + np.asarray(colour, np.float32) * a


def tint(image: np.ndarray, alpha: np.ndarray, factors: tuple[float, float, float]) -> np.ndarray:
    """Multiply `image` by per-channel `factors` where `alpha` is 1 (keeps the texture under a stain)."""
    a = alpha[..., None]
    return image * (1 - a * (1 - np.asarray(factors, np.float32)))


def stain(
    image: np.ndarray,
    support: np.ndarray,
    rng: np.random.Generator,
    factors: tuple[float, float, float],
    radius: tuple[float, float],
    margin: int,
) -> np.ndarray:
    """A soft irregular discolouration (oil, rust, water) tinting the surface."""
    centre = pick_point(rng, support, margin)
    r = rng.uniform(*radius)
    alpha = blob_alpha(rng, support.shape, centre, r, rough=0.5, edge=0.5 * r) * support
    patchy = np.clip(0.9 + 0.2 * fractal_noise(rng, support.shape, max(2, int(support.shape[0] / r)), 2), 0, 1)
    return tint(image, alpha * patchy * rng.uniform(0.8, 1.0), factors)


def scratch(
    image: np.ndarray,
    support: np.ndarray,
    rng: np.random.Generator,
    length: tuple[float, float],
    brightness: float,
    margin: int,
    angle: float | None = None,
) -> np.ndarray:
    """A thin, slightly curved line that catches the light (`brightness` > 0) or is dark (< 0)."""
    start = pick_point(rng, support, margin)
    heading = rng.uniform(0, 2 * np.pi) if angle is None else angle + rng.normal(0, 0.15)
    points = random_curve(rng, start, heading, rng.uniform(*length), wiggle=0.03)
    alpha = draw_polyline(support.shape, points, thickness=int(rng.integers(1, 3))) * support
    if brightness > 0:
        return image + alpha[..., None] * brightness * (255 - image) / 255
    return image * (1 + alpha[..., None] * brightness / 255)


def crack(
    image: np.ndarray,
    support: np.ndarray,
    rng: np.random.Generator,
    length: tuple[float, float],
    margin: int,
    angle: float | None = None,
    start: tuple[float, float] | None = None,
    thickness: int = 2,
    depth: float = 0.72,
) -> np.ndarray:
    """A dark jagged fissure with a short side branch; `depth` is how much light it swallows."""
    origin = pick_point(rng, support, margin) if start is None else start
    heading = rng.uniform(0, 2 * np.pi) if angle is None else angle
    main = jagged_curve(rng, origin, heading, rng.uniform(*length))
    alpha = draw_polyline(support.shape, main, thickness=thickness)
    fork = main[int(rng.integers(len(main) // 3, 2 * len(main) // 3))]
    side = jagged_curve(rng, tuple(fork), heading + rng.choice([-0.8, 0.8]), rng.uniform(*length) * 0.3, steps=10)
    alpha = np.maximum(alpha, draw_polyline(support.shape, side, thickness=1)) * support
    return image * (1 - depth * alpha[..., None])


def pit(
    image: np.ndarray, support: np.ndarray, rng: np.random.Generator, radius: tuple[float, float], margin: int
) -> np.ndarray:
    """A small dent or pore: dark centre with a lit rim on the light's side (shading from a bump's slope)."""
    cx, cy = pick_point(rng, support, margin)
    r = rng.uniform(*radius)
    xs, ys = coords(support.shape)
    d2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / (r * r)
    bump = np.exp(-d2 * 1.6)  # (H, W) depth profile
    lx, ly = np.cos(rng.uniform(0, 2 * np.pi)), np.sin(rng.uniform(0, 2 * np.pi))
    slope = (-(xs - cx) * lx - (ys - cy) * ly) / r * bump  # lit where the wall faces the light
    shade = (1 - 0.55 * bump + 0.35 * slope) * support + (1 - support)
    shade = np.where(d2 < 6.0, shade, 1.0).astype(np.float32)
    return image * shade[..., None]


def fibre(
    image: np.ndarray,
    support: np.ndarray,
    rng: np.random.Generator,
    length: tuple[float, float],
    colour: tuple[float, float, float],
    margin: int,
) -> np.ndarray:
    """Contamination: a loose hair or fibre lying on the surface."""
    start = pick_point(rng, support, margin)
    points = random_curve(rng, start, rng.uniform(0, 2 * np.pi), rng.uniform(*length), wiggle=0.18)
    alpha = draw_polyline(support.shape, points, thickness=2, taper=False) * support * 0.85
    return blend(image, alpha, colour)


def specks(
    image: np.ndarray,
    support: np.ndarray,
    rng: np.random.Generator,
    radius: tuple[float, float],
    colour: tuple[float, float, float],
    margin: int,
) -> np.ndarray:
    """Contamination: one to three small dark particles close together."""
    cx, cy = pick_point(rng, support, margin)
    alpha = np.zeros(support.shape, np.float32)
    for _ in range(int(rng.integers(1, 4))):
        r = rng.uniform(*radius)
        centre = (cx + rng.normal(0, 2 * r), cy + rng.normal(0, 2 * r))
        alpha = np.maximum(alpha, blob_alpha(rng, support.shape, centre, r, rough=0.3))
    return blend(image, alpha * support * 0.9, colour)


def hole(
    image: np.ndarray,
    support: np.ndarray,
    rng: np.random.Generator,
    radius: tuple[float, float],
    colour: tuple[float, float, float],
    margin: int,
) -> np.ndarray:
    """A bored or worm hole: a dark irregular core inside a shaded, slightly sunken rim."""
    cx, cy = pick_point(rng, support, margin)
    r = rng.uniform(*radius)
    xs, ys = coords(support.shape)
    d2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / (2.2 * r) ** 2
    rim = np.where(d2 < 4.0, 1 - 0.3 * np.exp(-d2 * 2.0), 1.0).astype(np.float32)  # (H, W) sunken edge
    core = blob_alpha(rng, support.shape, (cx, cy), r, rough=0.3) * support
    return blend(image * (rim * support + 1 - support)[..., None], core, colour)
