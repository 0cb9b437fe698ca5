"""Deterministic synthetic inspection scenes with exact defect masks (numpy + OpenCV only).

`generate_dataset(out, ...)` writes an MVTec-AD layout data set; `render_sample(...)` renders one
image with its defect-free twin and mask; `CATEGORIES` lists the categories and their defect types.
"""

from lineside.synth.generate import SynthSummary, generate_dataset, resolve_categories
from lineside.synth.scene import CATEGORIES, RenderedSample, render_sample

__all__ = ["CATEGORIES", "RenderedSample", "SynthSummary", "generate_dataset", "render_sample", "resolve_categories"]
