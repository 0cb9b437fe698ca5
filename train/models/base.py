"""The contract every anomaly model follows, and the one model registry.

A model is a plain `nn.Module` plus a frozen dataclass config. In eval mode `forward` maps a
normalised RGB batch (B, 3, H, W) to an `AnomalyOutput`; it contains no data-dependent Python
control flow, so the same module exports to ONNX. Training-only behaviour (noise, dropout,
feature masking, synthetic defects) is gated on `self.training`.

Training is shared code (`lineside.train.loop`): a model only says which parameters each
stage optimises and how a batch becomes a loss (`training_stages`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import torch
from torch import nn

if TYPE_CHECKING:
    from lineside.train.features import PreparedSet


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
    features: list[torch.Tensor] | None = None  # model.encode(images), cached by the loop if model.cache_features
    defect_images: torch.Tensor | None = None  # (B, 3, H, W) synthetic defects of `images` if model.needs_defects
    defect_masks: torch.Tensor | None = None  # (B, 1, H, W) float {0, 1} masks of the synthetic defects
    defect_features: list[torch.Tensor] | None = None  # model.encode(defect_images), cached like `features`


@dataclass
class TrainingStage:
    """One optimisation stage (CRR: reconstruction+repair, then segmentation head)."""

    name: str
    parameters: list[nn.Parameter]
    epochs: int
    lr: float
    loss: Callable[[TrainBatch], dict[str, torch.Tensor]]  # must contain "loss"; other keys are logged


class AnomalyModel(nn.Module):
    """Base class: subclasses set `name`, hold `config`, implement `forward` and `training_stages`.

    Constructor contract (used by `build_model` and `load_checkpoint`):
    `cls(config, classes, backbone_weights=None, random_init_backbone=False)`; the instance keeps
    `config` (a frozen dataclass of `config_cls`), `classes`, and exposes `input_size` (H, W),
    `mean` and `std` (RGB normalisation of its encoder).
    """

    name: ClassVar[str]
    config_cls: ClassVar[type]
    presets: ClassVar[dict[str, Any]] = {}  # preset name -> frozen config instance
    needs_defects: ClassVar[bool] = False  # the loop synthesises defects into TrainBatch.defect_*
    cache_features: ClassVar[bool] = False  # the loop caches `encode()` of (frozen-encoder) inputs
    config: Any
    classes: list[str]
    preset: str = "custom"
    held_out: dict[str, list[str]] | None = None  # validation images kept out of training, {category: file names}
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def _setup_encoder(
        self, config: Any, classes: Sequence[str], backbone_weights: str | None, random_init_backbone: bool
    ) -> None:
        """Set config, classes, input size, the frozen encoder (`config.backbone`) and its normalisation."""
        from lineside.train.backbones import build_backbone

        self.config, self.classes = config, list(classes)
        self.input_size = tuple(config.input_size)
        self.encoder = build_backbone(config.backbone, self.input_size, backbone_weights, random_init_backbone)
        self.mean, self.std = self.encoder.spec.mean, self.encoder.spec.std

    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Frozen-encoder features of (B, 3, H, W) images; only needed when `cache_features`."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> AnomalyOutput:  # (B, 3, H, W) -> maps, scores
        raise NotImplementedError

    def training_stages(self) -> list[TrainingStage]:
        raise NotImplementedError

    def fit_memory(self, prepared: PreparedSet, seed: int, progress: bool = True) -> dict[str, Any] | None:
        """Gradient-free fitting before the stages (PatchCore builds its bank); returns a log record, None: nothing."""
        return None

    def fit_statistics(self, prepared: PreparedSet, progress: bool = True) -> dict[str, Any] | None:
        """Gradient-free fitting after the stages (RLR: good-image map statistics); a log record, None: nothing."""
        return None

    def inference_form(self) -> AnomalyModel:
        """The module to export: same outputs as eval-mode `forward`, possibly a cheaper graph (default: self)."""
        return self


MODELS: dict[str, type[AnomalyModel]] = {}


def register_model(cls: type[AnomalyModel]) -> type[AnomalyModel]:
    """Class decorator adding a model to `MODELS` under `cls.name`."""
    if cls.name in MODELS:
        raise ValueError(f"model {cls.name!r} registered twice")
    MODELS[cls.name] = cls
    return cls


def config_from_dict(config_cls: type, values: dict[str, Any]) -> Any:
    """Rebuild a frozen config dataclass from `dataclasses.asdict` output (lists back to tuples)."""
    known = {f.name for f in fields(config_cls)}
    return config_cls(**{k: _tuples(v) for k, v in values.items() if k in known})


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def build_model(
    name: str,
    preset: str,
    classes: Sequence[str],
    *,
    backbone_weights: str | None = None,
    random_init_backbone: bool = False,
    **overrides: Any,
) -> AnomalyModel:
    """A model from the registry: preset config with `overrides` replaced (e.g. epochs=5)."""
    from lineside.errors import LinesideError

    if name not in MODELS:
        raise LinesideError(f"unknown model {name!r}: choose one of {', '.join(sorted(MODELS))}")
    cls = MODELS[name]
    if preset not in cls.presets:
        raise LinesideError(f"model {name} has no preset {preset!r}: choose one of {', '.join(cls.presets)}")
    known = {f.name for f in fields(cls.config_cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise LinesideError(f"unknown {name} config field(s) {unknown}: known fields are {sorted(known)}")
    config = replace(cls.presets[preset], **overrides)
    model = cls(config, list(classes), backbone_weights=backbone_weights, random_init_backbone=random_init_backbone)
    model.preset = preset
    return model
