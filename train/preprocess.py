"""In-graph pre-processing: uint8 NHWC BGR frames -> normalised float NCHW RGB.

Used by the training data pipeline and fused in front of the model at export, so the
runtime only resizes frames (`lineside.preprocess.resize_for_model`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Preprocess(nn.Module):
    """(B, H, W, 3) uint8 BGR -> (B, 3, H, W) float32 RGB, `(x / 255 - mean) / std` per channel."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std_t), persistent=False)  # (1, 3, 1, 1)
        self.register_buffer("shift", -mean_t / std_t, persistent=False)  # (1, 3, 1, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # (B, H, W, 3) uint8 -> (B, 3, H, W) float32
        rgb = frames.float().permute(0, 3, 1, 2).flip(1)  # (B, 3, H, W) BGR -> RGB; cast first (no uint8 ops in TRT)
        return rgb * self.scale + self.shift
