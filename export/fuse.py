"""Fusion: one inference-only `nn.Module` = pre-processing + anomaly model.

The fused module maps the runtime's input, a uint8 NHWC BGR image batch, straight to the
model's `AnomalyOutput`; everything after the host-side resize lives in the graph. This module
is torch code by nature, so it imports torch at the top; the CLI imports it lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from lineside.train.models.base import AnomalyOutput

if TYPE_CHECKING:
    from lineside.train.checkpoint import LoadedCheckpoint

# Module types whose behaviour differs between train and eval mode.
_MODE_DEPENDENT = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "BatchNorm1d", "BatchNorm2d")


class FusedModel(nn.Module):
    """uint8 (B, H, W, 3) BGR image -> AnomalyOutput(anomaly_map (B, 1, H, W), score (B,))."""

    def __init__(self, preprocess: nn.Module, model: nn.Module) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.model = model

    def forward(self, image: torch.Tensor) -> AnomalyOutput:  # (B, H, W, 3) uint8
        # Cast first: TensorRT rejects Transpose/Slice on uint8, and pixel values 0..255 are exact in float32.
        normalised = self.preprocess(image.float())  # (B, 3, H, W) float32
        return AnomalyOutput(*self.model(normalised))


def fuse(preprocess: nn.Module, model: nn.Module) -> FusedModel:
    """Wrap pre-processing and model into one module, frozen and in eval mode."""
    fused = FusedModel(preprocess, model)
    fused.eval()
    for parameter in fused.parameters():
        parameter.requires_grad_(False)
    return fused


def fuse_checkpoint(loaded: LoadedCheckpoint) -> FusedModel:
    """Fused module for a loaded checkpoint, using the training pipeline's own `Preprocess`."""
    from lineside.train.preprocess import Preprocess

    return fuse(Preprocess(mean=loaded.mean, std=loaded.std), loaded.model)


@dataclass(frozen=True)
class InferenceCheck:
    """Evidence that training-only behaviour is off in the fused module."""

    modules_in_train_mode: tuple[str, ...]
    mode_dependent_modules: int
    repeat_max_abs_diff: float

    @property
    def ok(self) -> bool:
        return not self.modules_in_train_mode and self.repeat_max_abs_diff == 0.0


def check_inference_only(fused: nn.Module, image: torch.Tensor) -> InferenceCheck:
    """Prove the fused module is deterministic inference: no module in train mode, two forwards identical.

    `image` is a (B, H, W, 3) uint8 batch. Dropout, noise and feature masking are gated on
    `training`, so a module left in train mode or a random op would make the two forwards differ.
    """
    in_train = tuple(name or "<root>" for name, module in fused.named_modules() if module.training)
    mode_dependent = sum(type(m).__name__ in _MODE_DEPENDENT for m in fused.modules())
    return InferenceCheck(in_train, mode_dependent, max_abs_diff(fused, fused, image))


def max_abs_diff(first: nn.Module, second: nn.Module, image: torch.Tensor) -> float:
    """Largest absolute difference between the outputs of two modules on the same input."""
    with torch.no_grad():
        outputs = first(image), second(image)
    return max(float((a - b).abs().max()) for a, b in zip(*outputs, strict=True))
