"""Texture categories: woven mesh, brushed metal and wood grain, each with its realistic defects.

A category samples scene parameters (pose jitter, texture phase, colour) from a generator, renders
them to a float32 (H, W, 3) BGR image in 0..255 before lighting, and paints defects on a render.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lineside.synth import defects
from lineside.synth.noise import aniso_noise, blob_alpha, coords, rotated, smoothstep, streak_noise


@dataclass(frozen=True)
class TextureParams:
    """What varies between good images of one texture category."""

    size: int
    angle: float  # radians
    period: float  # px
    phase: tuple[float, float]  # px
    colour: tuple[float, float, float]  # BGR base colour
    fields: tuple[np.ndarray, ...]  # pre-drawn noise fields (H, W)


def _full(size: int) -> np.ndarray:
    return np.ones((size, size), np.float32)


class Mesh:
    """Plain-weave technical fabric / filter mesh seen from above."""

    name = "mesh"
    defect_types: tuple[str, ...] = ("hole", "stain", "contamination")

    def sample(self, rng: np.random.Generator, size: int) -> TextureParams:
        """Draw the jitter of one good image."""
        s = size / 256
        period = float(14.0 * s * rng.uniform(0.96, 1.04))
        colour = tuple(np.array([150.0, 178.0, 196.0]) * rng.uniform(0.95, 1.05) * rng.uniform(0.98, 1.02, 3))
        shape = (size, size)
        fields = (streak_noise(rng, shape, int(20 * s), 90.0), streak_noise(rng, shape, int(20 * s), 0.0))
        return TextureParams(
            size,
            float(np.deg2rad(rng.uniform(-2.5, 2.5))),
            period,
            (float(rng.uniform(0, period)), float(rng.uniform(0, period))),
            colour,
            fields,
        )

    def render(self, p: TextureParams, cut: np.ndarray | None = None) -> np.ndarray:
        """Render the weave; `cut` (H, W) in [0, 1] removes threads (a hole shows the dark backing)."""
        xs, ys = coords((p.size, p.size))
        u, v = rotated(xs, ys, (0.0, 0.0), p.angle)
        u, v = u + p.phase[0], v + p.phase[1]
        fu, fv = (u / p.period) % 1.0, (v / p.period) % 1.0
        over = ((np.floor(u / p.period) + np.floor(v / p.period)) % 2) == 0
        warp = np.sqrt(np.clip(1 - ((fu - 0.5) / 0.4) ** 2, 0, 1))  # vertical thread cross-section
        weft = np.sqrt(np.clip(1 - ((fv - 0.5) / 0.4) ** 2, 0, 1))  # horizontal thread cross-section
        dip = np.where(over, np.float32(0.5), np.float32(-0.5))
        z_warp = np.where(warp > 0, warp + dip * np.sin(np.pi * fv), -9.0)
        z_weft = np.where(weft > 0, weft - dip * np.sin(np.pi * fu), -9.0)
        warp_on_top = z_warp >= z_weft
        profile = np.where(warp_on_top, warp, weft)
        along = np.where(warp_on_top, np.sin(np.pi * fv), np.sin(np.pi * fu))
        fibres = np.where(warp_on_top, p.fields[0], p.fields[1])
        thread = (0.42 + 0.5 * profile * (0.7 + 0.3 * along) + 0.05 * fibres) * (profile > 0)
        if cut is not None:
            thread = thread * (1 - cut)
        backing = 0.2 + 0.03 * p.fields[0]
        level = np.where(thread > 0, thread, backing)  # (H, W)
        return level[..., None] * np.asarray(p.colour, np.float32)

    def defect(self, kind: str, p: TextureParams, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Paint one defect of `kind` on the clean render."""
        s, sup = p.size / 256, _full(p.size)
        margin = int(20 * s)
        if kind == "hole":
            centre = defects.pick_point(rng, sup, margin)
            cut = blob_alpha(rng, sup.shape, centre, rng.uniform(6, 11) * s, rough=0.6)
            return self.render(p, cut=cut)
        if kind == "stain":
            return defects.stain(clean, sup, rng, (0.35, 0.42, 0.62), (14 * s, 24 * s), margin)
        if kind == "contamination":
            return defects.fibre(clean, sup, rng, (40 * s, 90 * s), (35.0, 40.0, 48.0), margin)
        raise ValueError(kind)


class BrushedMetal:
    """Brushed stainless plate under a soft specular band."""

    name = "brushed_metal"
    defect_types: tuple[str, ...] = ("scratch", "pit", "stain")

    def sample(self, rng: np.random.Generator, size: int) -> TextureParams:
        """Draw the jitter of one good image."""
        s = size / 256
        shape = (size, size)
        angle = rng.uniform(-3.0, 3.0)
        fields = (streak_noise(rng, shape, int(90 * s), angle), streak_noise(rng, shape, int(9 * s), angle))
        colour = tuple(np.array([172.0, 168.0, 162.0]) * rng.uniform(0.96, 1.04))
        band = rng.uniform(0.2, 0.8) * size
        return TextureParams(
            size, float(np.deg2rad(angle)), float(70.0 * s * rng.uniform(0.8, 1.2)), (float(band), 0.0), colour, fields
        )

    def render(self, p: TextureParams) -> np.ndarray:
        """Render the plate."""
        xs, ys = coords((p.size, p.size))
        _, v = rotated(xs, ys, (0.0, p.phase[0]), p.angle)
        sheen = 0.78 + 0.22 * np.exp(-((v / p.period) ** 2))  # specular band across the brushing
        level = sheen + 0.05 * p.fields[0] + 0.025 * p.fields[1]  # (H, W)
        return level[..., None] * np.asarray(p.colour, np.float32)

    def defect(self, kind: str, p: TextureParams, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Paint one defect of `kind` on the clean render."""
        s, sup = p.size / 256, _full(p.size)
        margin = int(24 * s)
        if kind == "scratch":
            across = p.angle + np.pi / 2 + rng.uniform(-0.6, 0.6)
            brightness = rng.choice([110.0, -90.0])
            return defects.scratch(clean, sup, rng, (35 * s, 80 * s), brightness, margin, angle=across)
        if kind == "pit":
            return defects.pit(clean, sup, rng, (4 * s, 7 * s), margin)
        if kind == "stain":
            return defects.stain(clean, sup, rng, (0.55, 0.7, 0.92), (8 * s, 16 * s), margin)
        raise ValueError(kind)


class Wood:
    """Planed wood board with growth rings and pores."""

    name = "wood"
    defect_types: tuple[str, ...] = ("crack", "hole", "stain", "scratch")

    def sample(self, rng: np.random.Generator, size: int) -> TextureParams:
        """Draw the jitter of one good image."""
        s = size / 256
        shape = (size, size)
        angle = rng.uniform(-4.0, 4.0)
        fields = (
            aniso_noise(rng, shape, 2, 3),  # slow bends of the rings
            aniso_noise(rng, shape, 1, 12),  # uneven ring spacing across the grain
            streak_noise(rng, shape, int(28 * s), angle),  # pores
            streak_noise(rng, shape, int(90 * s), angle),  # fibre streaks
        )
        colour = tuple(np.array([112.0, 160.0, 208.0]) * rng.uniform(0.94, 1.06) * rng.uniform(0.98, 1.02, 3))
        period = float(24.0 * s * rng.uniform(0.9, 1.1))
        return TextureParams(size, float(np.deg2rad(angle)), period, (float(rng.uniform(0, 1)), 0.0), colour, fields)

    def render(self, p: TextureParams) -> np.ndarray:
        """Render the board: earlywood fading into a darker latewood band, then a sharp ring boundary."""
        xs, ys = coords((p.size, p.size))
        _, v = rotated(xs, ys, (0.0, 0.0), p.angle)
        bends, spacing, pores, fibres = p.fields
        phase = (v + (0.35 * bends + 0.3 * spacing) * p.period) / p.period + p.phase[0]
        t = phase % 1.0  # (H, W) position within a growth ring
        late = smoothstep(0.45, 0.85, t) * (1 - smoothstep(0.9, 1.0, t))
        pore = np.clip(pores - 1.3, 0, None)
        level = 1.0 - 0.2 * late - 0.1 * pore + 0.035 * fibres  # (H, W)
        darker = np.array([0.9, 0.84, 0.78], np.float32)
        return level[..., None] * np.asarray(p.colour, np.float32) * (1 - late[..., None] * (1 - darker))

    def defect(self, kind: str, p: TextureParams, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Paint one defect of `kind` on the clean render."""
        s, sup = p.size / 256, _full(p.size)
        margin = int(28 * s)
        if kind == "crack":
            along = p.angle + rng.choice([0.0, np.pi]) + rng.uniform(-0.2, 0.2)
            return defects.crack(clean, sup, rng, (45 * s, 95 * s), margin, angle=along)
        if kind == "hole":
            return defects.hole(clean, sup, rng, (3 * s, 6 * s), (28.0, 38.0, 52.0), margin)
        if kind == "stain":
            return defects.stain(clean, sup, rng, (0.45, 0.5, 0.6), (12 * s, 22 * s), margin)
        if kind == "scratch":
            across = p.angle + np.pi / 2 + rng.uniform(-0.5, 0.5)
            return defects.scratch(clean, sup, rng, (35 * s, 75 * s), 90.0, margin, angle=across)
        raise ValueError(kind)
