"""Checkpoints: a plain dict of tensors, strings, numbers and lists (loads with weights_only=True).

A checkpoint carries everything export and eval need without the training code's arguments:
model name, preset, config, class names, input size, normalisation, weights, metrics, and the
training state for `--resume`.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lineside.atomic import atomic_write_bytes
from lineside.errors import LinesideError
from lineside.train.models.base import AnomalyModel

FORMAT = "lineside-checkpoint/1"


@dataclass
class LoadedCheckpoint:
    """A checkpoint read back: the model (eval mode, CPU unless mapped) and its metadata."""

    model: AnomalyModel
    model_name: str
    preset: str
    config: Any  # the model's frozen config dataclass
    classes: list[str]
    input_size: tuple[int, int]  # (H, W)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    metrics: dict[str, Any] = field(default_factory=dict)
    train_state: dict[str, Any] | None = None
    path: Path | None = None
    held_out: dict[str, list[str]] | None = None  # {category: file names} of the validation split; None: older file


def checkpoint_dict(
    model: AnomalyModel, metrics: dict[str, Any] | None = None, train_state: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The dict that `save_checkpoint` writes."""
    return {
        "format": FORMAT,
        "model_name": model.name,
        "preset": model.preset,
        "config": dataclasses.asdict(model.config),
        "classes": list(model.classes),
        "input_size": list(model.input_size),
        "mean": list(model.mean),
        "std": list(model.std),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metrics": metrics or {},
        "train_state": train_state,
        "held_out": model.held_out,
    }


def save_checkpoint(
    path: str | Path,
    model: AnomalyModel,
    *,
    metrics: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
) -> None:
    """Write the model (+ metrics and resumable training state) atomically to `path`."""
    buffer = io.BytesIO()
    torch.save(checkpoint_dict(model, metrics, train_state), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, validated; LinesideError for missing or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise LinesideError(f"checkpoint {path} does not exist: pass RUN/model.pt written by 'lineside train'")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad user file
        raise LinesideError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise LinesideError(f"{path} is not a lineside checkpoint ({FORMAT}): pass RUN/model.pt from 'lineside train'")
    return data


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model from a checkpoint (no backbone weights file needed) in eval mode."""
    from lineside.train.models import MODELS
    from lineside.train.models.base import config_from_dict

    data = read_checkpoint(path, map_location)
    name = data["model_name"]
    if name not in MODELS:
        raise LinesideError(f"checkpoint {path} holds unknown model {name!r}: upgrade lineside")
    cls = MODELS[name]
    config = config_from_dict(cls.config_cls, data["config"])
    model = cls(config, data["classes"], random_init_backbone=True)
    model.load_state_dict(data["state_dict"], strict=True)
    model.preset = data["preset"]
    model.held_out = data.get("held_out")
    model.to(map_location).eval()
    return LoadedCheckpoint(
        model=model,
        model_name=name,
        preset=data["preset"],
        config=config,
        classes=list(data["classes"]),
        input_size=tuple(data["input_size"]),
        mean=tuple(data["mean"]),
        std=tuple(data["std"]),
        metrics=dict(data["metrics"]),
        train_state=data["train_state"],
        path=Path(path),
        held_out=data.get("held_out"),
    )
