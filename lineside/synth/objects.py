"""Object categories: a washer, a screw and a capsule lying on a conveyor belt, with pose jitter.

Each renders the part (with a soft drop shadow) over a belt texture; geometry defects (a missing
chunk, a bent shaft, a broken tip) re-render the part with changed geometry, surface defects are
painted on the part only.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lineside.synth import defects
from lineside.synth.noise import blob_alpha, coords, fractal_noise, rotated, smoothstep, streak_noise


@dataclass(frozen=True)
class ObjectParams:
    """What varies between good images of one object category."""

    size: int
    centre: tuple[float, float]  # px
    angle: float  # radians
    scale: float  # relative part size
    light: float  # direction of the key light, radians
    belt: np.ndarray  # (H, W) belt texture level
    grain: np.ndarray  # (H, W) surface noise of the part
    radial: np.ndarray  # (size,) 1-D noise profile: turning marks of machined round parts


def _sample(rng: np.random.Generator, size: int, angle_deg: float) -> ObjectParams:
    s = size / 256
    shape = (size, size)
    belt = 0.26 + 0.012 * fractal_noise(rng, shape, 8, 3) + 0.01 * streak_noise(rng, shape, int(40 * s), 0.0)
    return ObjectParams(
        size=size,
        centre=(float(size / 2 + rng.normal(0, 4 * s)), float(size / 2 + rng.normal(0, 4 * s))),
        angle=float(np.deg2rad(rng.uniform(-angle_deg, angle_deg))),
        scale=float(rng.uniform(0.97, 1.03)),
        light=float(rng.uniform(-2.6, -1.9)),
        belt=belt.astype(np.float32),
        grain=fractal_noise(rng, shape, 24, 2),
        radial=cv2.GaussianBlur(rng.standard_normal((size, 1)).astype(np.float32), (0, 0), 0.8).ravel(),
    )


def _compose(p: ObjectParams, part: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Part (H, W, 3) over the belt with a drop shadow cast by `alpha` (H, W)."""
    s = p.size / 256
    shift = np.array([[1, 0, 4 * s], [0, 1, 5 * s]], np.float32)
    shadow = cv2.warpAffine(alpha, shift, (p.size, p.size))
    shadow = cv2.GaussianBlur(shadow, (0, 0), 4 * s)
    belt = (p.belt * (1 - 0.5 * shadow))[..., None] * np.array([235, 232, 228], np.float32)
    return belt * (1 - alpha[..., None]) + part * alpha[..., None]


class Washer:
    """A flat steel washer seen from above."""

    name = "washer"
    defect_types: tuple[str, ...] = ("missing", "crack", "scratch", "stain")

    def sample(self, rng: np.random.Generator, size: int) -> ObjectParams:
        """Draw the jitter of one good image."""
        return _sample(rng, size, 180.0)

    def _geometry(self, p: ObjectParams) -> tuple[np.ndarray, np.ndarray, float, float]:
        xs, ys = coords((p.size, p.size))
        u, v = rotated(xs, ys, p.centre, p.angle)
        outer, inner = 0.34 * p.size * p.scale, 0.155 * p.size * p.scale
        return np.sqrt(u * u + v * v), np.arctan2(v, u), outer, inner

    def support(self, p: ObjectParams) -> np.ndarray:
        """Where the washer is, (H, W) in [0, 1]."""
        rho, _, outer, inner = self._geometry(p)
        return np.clip(outer - rho + 0.5, 0, 1) * np.clip(rho - inner + 0.5, 0, 1)

    def render(self, p: ObjectParams, cut: np.ndarray | None = None) -> np.ndarray:
        """Render the scene; `cut` (H, W) in [0, 1] removes material from the washer."""
        rho, phi, outer, inner = self._geometry(p)
        alpha = self.support(p) if cut is None else self.support(p) * (1 - cut)
        facing = np.cos(phi + p.angle - p.light)  # (H, W) how the surface normal faces the light
        bevel = smoothstep(3.0, 0.0, outer - rho) - smoothstep(3.0, 0.0, rho - inner)
        turning = np.interp(rho, np.arange(p.size, dtype=np.float32), p.radial).astype(np.float32)  # (H, W)
        level = 0.68 + 0.1 * facing + 0.2 * bevel * facing + 0.035 * turning + 0.01 * p.grain
        part = level[..., None] * np.array([190, 188, 182], np.float32)
        return _compose(p, part, alpha)

    def defect(self, kind: str, p: ObjectParams, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Paint or build one defect of `kind`."""
        s = p.size / 256
        sup = self.support(p)
        rho, phi, outer, inner = self._geometry(p)
        if kind == "missing":
            edge = rng.choice([outer, inner])
            at = rng.uniform(-np.pi, np.pi)
            centre = self._to_image(p, edge * np.cos(at), edge * np.sin(at))
            cut = blob_alpha(rng, sup.shape, centre, rng.uniform(8, 13) * s, rough=0.4)
            return self.render(p, cut=cut)
        if kind == "crack":
            at = rng.uniform(-np.pi, np.pi)
            start = self._to_image(p, (inner - 2) * np.cos(at), (inner - 2) * np.sin(at))
            heading = at + p.angle
            span = (outer - inner + 4, outer - inner + 6)
            return defects.crack(clean, sup, rng, span, 0, heading, start, thickness=1, depth=0.65)
        if kind == "scratch":
            return defects.scratch(clean, sup, rng, (25 * s, 50 * s), 120.0, int(10 * s))
        if kind == "stain":
            return defects.stain(clean, sup, rng, (0.45, 0.62, 0.9), (7 * s, 12 * s), int(10 * s))
        raise ValueError(kind)

    @staticmethod
    def _to_image(p: ObjectParams, u: float, v: float) -> tuple[float, float]:
        c, s = np.cos(p.angle), np.sin(p.angle)
        return p.centre[0] + c * u - s * v, p.centre[1] + s * u + c * v


class Screw:
    """A hex-head machine screw in side view."""

    name = "screw"
    defect_types: tuple[str, ...] = ("bent", "missing", "scratch", "contamination")

    def sample(self, rng: np.random.Generator, size: int) -> ObjectParams:
        """Draw the jitter of one good image."""
        return _sample(rng, size, 6.0)

    @staticmethod
    def _shaft(su: np.ndarray, v: np.ndarray, k: float, end: float) -> tuple[np.ndarray, np.ndarray]:
        """Threaded shaft (alpha, level) from the position along it `su` and across it `v` (px); k = part scale."""
        shaft_len, r0, pitch = 0.55 * k, 0.055 * k, 0.036 * k
        slant = (su + 0.3 * v) / pitch
        tooth = np.abs(slant % 1.0 - 0.5) * 2  # (H, W) thread profile 0..1
        tip = np.clip((shaft_len - su) / (0.09 * k), 0.25, 1.0)  # conical point
        radius = (r0 + 0.011 * k * (tooth - 0.5)) * tip
        length = shaft_len * end
        alpha = np.clip(radius - np.abs(v) + 0.5, 0, 1) * np.clip(su + 0.5, 0, 1) * np.clip(length - su + 0.5, 0, 1)
        n = np.clip(v / np.maximum(radius, 1e-3), -1, 1)  # (H, W) position across the cylinder, -1..1
        level = 0.3 + 0.5 * np.sqrt(1 - n * n) + 0.3 * np.exp(-(((n + 0.4) / 0.18) ** 2))
        return alpha, level * (0.78 + 0.22 * np.cos(2 * np.pi * slant))

    @staticmethod
    def _head(hu: np.ndarray, v: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray]:
        """Hex head (alpha, level) seen from the side: three visible faces and a chamfered top."""
        length, radius = 0.1 * k, 0.13 * k
        chamfer = radius - np.clip(0.03 * k - hu, 0, None)
        alpha = np.clip(hu + 0.5, 0, 1) * np.clip(length - hu + 0.5, 0, 1) * np.clip(chamfer - np.abs(v) + 0.5, 0, 1)
        facet = np.floor((np.clip(v / radius, -0.999, 0.999) + 1) * 1.5)  # 0, 1, 2
        return alpha, np.choose(facet.astype(np.int64), [0.55, 0.92, 0.62])

    def _parts(self, p: ObjectParams, bend: float = 0.0, end: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Screw (alpha, level), each (H, W); `bend` px tip offset, `end` the kept fraction of the shaft."""
        k = p.size * p.scale
        u, v = rotated(*coords((p.size, p.size)), p.centre, p.angle)
        head0 = -0.33 * k
        su = u - (head0 + 0.1 * k)  # (H, W) position along the shaft
        bent_v = v - bend * np.clip((su - 0.2475 * k) / (0.3025 * k), 0, None) ** 2  # bends over the outer 55 %
        shaft_a, shaft_l = self._shaft(su, bent_v, k, end)
        head_a, head_l = self._head(u - head0, v, k)
        alpha = np.maximum(head_a, shaft_a)
        level = np.where(head_a >= shaft_a, head_l + 0.04 * p.grain, shaft_l + 0.03 * p.grain)
        return alpha.astype(np.float32), level.astype(np.float32)

    def support(self, p: ObjectParams) -> np.ndarray:
        """Where the screw is, (H, W) in [0, 1]."""
        return self._parts(p)[0]

    def render(self, p: ObjectParams, bend: float = 0.0, end: float = 1.0) -> np.ndarray:
        """Render the scene, optionally with a bent shaft or a broken-off tip."""
        alpha, level = self._parts(p, bend, end)
        return _compose(p, level[..., None] * np.array([178, 176, 170], np.float32), alpha)

    def defect(self, kind: str, p: ObjectParams, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Paint or build one defect of `kind`."""
        s = p.size / 256
        if kind == "bent":
            return self.render(p, bend=rng.choice([-1, 1]) * rng.uniform(12, 16) * s)
        if kind == "missing":
            return self.render(p, end=rng.uniform(0.7, 0.82))
        sup = self.support(p)
        if kind == "scratch":  # on the flat faces of the head
            u, _ = rotated(*coords(sup.shape), p.centre, p.angle)
            head = sup * (u < -0.23 * p.size * p.scale - 1)
            return defects.scratch(clean, head, rng, (14 * s, 24 * s), 150.0, int(8 * s))
        if kind == "contamination":
            return defects.specks(clean, sup, rng, (3.0 * s, 4.5 * s), (25.0, 35.0, 45.0), int(8 * s))
        raise ValueError(kind)


class Capsule:
    """A two-tone hard gelatin capsule seen from above."""

    name = "capsule"
    defect_types: tuple[str, ...] = ("crack", "missing", "contamination", "stain")

    def sample(self, rng: np.random.Generator, size: int) -> ObjectParams:
        """Draw the jitter of one good image."""
        return _sample(rng, size, 8.0)

    def _shape(self, p: ObjectParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = p.size * p.scale
        xs, ys = coords((p.size, p.size))
        u, v = rotated(xs, ys, p.centre, p.angle)
        half_len, radius = 0.16 * k, 0.115 * k
        dist = np.sqrt(np.clip(np.abs(u) - half_len, 0, None) ** 2 + v * v) - radius  # (H, W) signed distance
        return u, v / radius, dist

    def support(self, p: ObjectParams) -> np.ndarray:
        """Where the capsule is, (H, W) in [0, 1]."""
        return np.clip(0.5 - self._shape(p)[2], 0, 1)

    def render(self, p: ObjectParams, cut: np.ndarray | None = None) -> np.ndarray:
        """Render the scene; `cut` (H, W) in [0, 1] removes a chip of the shell."""
        u, n, _ = self._shape(p)
        alpha = self.support(p) if cut is None else self.support(p) * (1 - cut)
        n = np.clip(n, -1, 1)
        shade = 0.55 + 0.4 * np.sqrt(1 - n * n) + 0.25 * np.exp(-(((n + 0.45) / 0.15) ** 2)) + 0.015 * p.grain
        seam = 1 - 0.35 * np.exp(-((u / (1.2 * p.size / 256)) ** 2))
        cap = u < 0
        colour = np.where(cap[..., None], np.array([55, 70, 185], np.float32), np.array([205, 218, 226], np.float32))
        return _compose(p, colour * (shade * seam)[..., None], alpha)

    def defect(self, kind: str, p: ObjectParams, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Paint or build one defect of `kind`."""
        s = p.size / 256
        sup = self.support(p)
        if kind == "missing":
            ring = (sup > 0.05) & (sup < 0.95)
            ys, xs = np.nonzero(ring)
            at = int(rng.integers(len(xs)))
            cut = blob_alpha(rng, sup.shape, (float(xs[at]), float(ys[at])), rng.uniform(6, 9) * s, rough=0.4)
            return self.render(p, cut=cut)
        if kind == "crack":
            start = defects.pick_point(rng, sup, int(8 * s), inner=0.99)
            heading = p.angle + np.pi / 2 + rng.choice([0.0, np.pi]) + rng.uniform(-0.4, 0.4)
            return defects.crack(clean, sup, rng, (18 * s, 30 * s), 0, heading, start, thickness=1, depth=0.6)
        if kind == "contamination":
            return defects.specks(clean, sup, rng, (1.8 * s, 3.2 * s), (25.0, 40.0, 60.0), int(8 * s))
        if kind == "stain":  # discolouration shows on the white body half
            body = sup * (self._shape(p)[0] > 6 * s)
            return defects.stain(clean, body, rng, (0.5, 0.62, 0.85), (8 * s, 12 * s), int(8 * s))
        raise ValueError(kind)
