"""The contract every anomaly model follows, and the one model registry.

A model is a plain `nn.Module` plus a frozen dataclass config. In eval mode `forward` maps a
normalised RGB batch (B, 3, H, W) to an `AnomalyOutput`; it contains no data-dependent Python
control flow, so the same module exports to ONNX. Training-only behaviour (noise, dropout,
feature masking, synthetic defects) is gated on `self.training`.

Training is shared code (`lineside.train.loop`): a model only says which parameters each
stage optimises and how a batch becomes a loss (`training_stages`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import nn


class AnomalyOutput(NamedTuple):
    """What every model returns; the field names are the ONNX output names."""

    anomaly_map: torch.Tensor  # (B, 1, H, W) float32, higher = more anomalous
    score: torch.Tensor  # (B,) float32 image anomaly score


OUTPUT_NAMES: tuple[str, ...] = AnomalyOutput._fields


@dataclass
class TrainBatch:
    """One training batch as the shared loop hands it to a model's loss."""

    images: torch.Tensor  # (B, 3, H, W) float32, normalised with the model's mean/std
    class_ids: torch.Tensor  # (B,) int64 index into the run's class names


@dataclass
class TrainingStage:
    """One optimisation stage (CRR: reconstruction+repair, then segmentation head)."""

    name: str
    parameters: list[nn.Parameter]
    epochs: int
    lr: float
    loss: Callable[[TrainBatch], dict[str, torch.Tensor]]  # must contain "loss"; other keys are logged


class AnomalyModel(nn.Module):
    """Base class: subclasses set `name`, hold `config`, implement `forward` and `training_stages`."""

    name: ClassVar[str]

    def forward(self, images: torch.Tensor) -> AnomalyOutput:  # (B, 3, H, W) -> maps, scores
        raise NotImplementedError

    def training_stages(self) -> list[TrainingStage]:
        raise NotImplementedError


MODELS: dict[str, type[AnomalyModel]] = {}


def register_model(cls: type[AnomalyModel]) -> type[AnomalyModel]:
    """Class decorator adding a model to `MODELS` under `cls.name`."""
    if cls.name in MODELS:
        raise ValueError(f"model {cls.name!r} registered twice")
    MODELS[cls.name] = cls
    return cls
