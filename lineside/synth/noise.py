"""Vectorised noise fields and drawing primitives for the synthetic scenes (numpy + OpenCV only).

Every function takes an explicit `numpy.random.Generator`, so a scene is a pure function of its seed.
All fields are float32 of shape (H, W) unless stated otherwise.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np


def fractal_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int, octaves: int = 4) -> np.ndarray:
    """Smooth multi-octave value noise with zero mean and unit standard deviation."""
    height, width = shape
    field = np.zeros(shape, np.float32)
    amplitude = 1.0
    for octave in range(octaves):
        n = cells * 2**octave
        grid = rng.standard_normal((n + 1, n + 1)).astype(np.float32)
        field += amplitude * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        amplitude *= 0.5
    field -= field.mean()
    return field / max(float(field.std()), 1e-6)


def streak_noise(rng: np.random.Generator, shape: tuple[int, int], length: int, angle_deg: float) -> np.ndarray:
    """Noise made of thin streaks about `length` px long along `angle_deg` (brushed metal, wood pores); unit std.

    Rows of coarse random samples are stretched along x (cheap), then rotated by the small angle;
    near-vertical streaks are drawn transposed.
    """
    height, width = shape
    if abs(angle_deg) > 45:
        turn = 90.0 if angle_deg > 0 else -90.0
        return np.ascontiguousarray(streak_noise(rng, (width, height), length, angle_deg - turn).T)
    margin = int(np.ceil(abs(np.sin(np.deg2rad(angle_deg))) * max(shape))) + 2
    big_h, big_w = height + 2 * margin, width + 2 * margin
    step = max(1.0, length / 3)
    coarse = rng.standard_normal((big_h, int(np.ceil(big_w / step)) + 2), dtype=np.float32)
    big = cv2.resize(coarse, (big_w, big_h), interpolation=cv2.INTER_CUBIC)  # smooth along x only
    if angle_deg:
        rot = cv2.getRotationMatrix2D((big_w / 2, big_h / 2), angle_deg, 1.0)
        big = cv2.warpAffine(big, rot, (big_w, big_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    field = big[margin : margin + height, margin : margin + width]
    field = field - field.mean()
    return np.ascontiguousarray(field / max(float(field.std()), 1e-6))


@functools.lru_cache(maxsize=4)
def coords(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinate grids (x, y), each (H, W) float32 and read-only (cached per shape)."""
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs.flags.writeable = False
    ys.flags.writeable = False
    return xs, ys


def rotated(
    xs: np.ndarray, ys: np.ndarray, centre: tuple[float, float], angle_rad: float
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in a frame centred at `centre` and rotated by `angle_rad` (u along the axis)."""
    dx, dy = xs - centre[0], ys - centre[1]
    c, s = np.float32(np.cos(angle_rad)), np.float32(np.sin(angle_rad))
    return c * dx + s * dy, -s * dx + c * dy


def lighting_field(rng: np.random.Generator, shape: tuple[int, int], strength: float = 1.0) -> np.ndarray:
    """Multiplicative illumination: global gain, a linear gradient and a soft vignette/hot spot."""
    xs, ys = coords(shape)
    height, width = shape
    gain = rng.uniform(0.86, 1.14)
    gx, gy = rng.uniform(-0.12, 0.12, size=2) * strength
    hx, hy = rng.uniform(0.25, 0.75) * width, rng.uniform(0.25, 0.75) * height
    spot = np.exp(-((xs - hx) ** 2 + (ys - hy) ** 2) / (2 * (0.45 * width) ** 2))
    field = gain * (1 + gx * (xs / width - 0.5) * 2 + gy * (ys / height - 0.5) * 2) * (0.9 + 0.12 * spot * strength)
    return field.astype(np.float32)


def aniso_noise(rng: np.random.Generator, shape: tuple[int, int], cells_x: int, cells_y: int) -> np.ndarray:
    """Single-octave smooth noise with different feature sizes along x and y; unit std."""
    height, width = shape
    grid = rng.standard_normal((cells_y + 1, cells_x + 1)).astype(np.float32)
    field = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    field -= field.mean()
    return field / max(float(field.std()), 1e-6)


def blob_alpha(
    rng: np.random.Generator,
    shape: tuple[int, int],
    centre: tuple[float, float],
    radius: float,
    rough: float = 0.35,
    edge: float = 2.0,
) -> np.ndarray:
    """Irregular blob in [0, 1]: 1 inside, a noisy ramp about `edge` px wide, exactly 0 outside."""
    xs, ys = coords(shape)
    aspect = rng.uniform(0.6, 1.0)
    u, v = rotated(xs, ys, centre, rng.uniform(0, np.pi))
    dist = np.sqrt(u**2 + (v / aspect) ** 2) / radius  # (H, W) normalised radius
    wobble = fractal_noise(rng, shape, cells=max(2, int(shape[0] / (radius * 1.5))), octaves=3)
    shape_field = 1.0 + rough * wobble * 0.5 - dist
    return np.clip(shape_field * radius / edge, 0.0, 1.0).astype(np.float32)


def random_curve(
    rng: np.random.Generator,
    start: tuple[float, float],
    angle_rad: float,
    length: float,
    wiggle: float,
    steps: int = 24,
) -> np.ndarray:
    """Points (N, 2) of a smooth random walk: heading drifts by `wiggle` radians per step (std)."""
    step = length / steps
    turns = np.cumsum(rng.normal(0.0, wiggle, steps))
    heading = angle_rad + turns - turns.mean()
    offsets = np.stack([np.cos(heading), np.sin(heading)], axis=1) * step
    points = np.vstack([[0.0, 0.0], np.cumsum(offsets, axis=0)])
    return points + np.asarray(start, np.float64)


def jagged_curve(
    rng: np.random.Generator, start: tuple[float, float], angle_rad: float, length: float, steps: int = 30
) -> np.ndarray:
    """Points (N, 2) of a crack-like path: straight on average with sharp random kinks."""
    step = length / steps
    heading = angle_rad + rng.normal(0.0, 0.45, steps)
    offsets = np.stack([np.cos(heading), np.sin(heading)], axis=1) * step
    points = np.vstack([[0.0, 0.0], np.cumsum(offsets, axis=0)])
    return points + np.asarray(start, np.float64)


def draw_polyline(shape: tuple[int, int], points: np.ndarray, thickness: int, taper: bool = True) -> np.ndarray:
    """Anti-aliased stroke alpha in [0, 1] along `points`; with `taper` the ends thin out."""
    canvas = np.zeros(shape, np.uint8)
    shift = 4
    pts = np.round(points * (1 << shift)).astype(np.int32)
    n = len(pts) - 1
    for i in range(n):
        frac = min(i, n - 1 - i) / max(n / 4, 1) if taper else 1.0
        width = max(1, int(round(thickness * min(1.0, 0.4 + frac))))
        cv2.line(canvas, tuple(pts[i]), tuple(pts[i + 1]), 255, width, cv2.LINE_AA, shift)
    return canvas.astype(np.float32) / 255.0


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at `edge0` to 1 at `edge1`."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)
