"""TorchScript-based ONNX export of a fused model: opset 17, static size, optional dynamic batch."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from lineside.errors import missing_extra

if TYPE_CHECKING:
    from torch import nn

OPSET = 17
INPUT_NAME = "image"


def output_names() -> tuple[str, ...]:
    """The ONNX output names, taken from the model contract (`AnomalyOutput`)."""
    from lineside.train.models.base import OUTPUT_NAMES

    return OUTPUT_NAMES


def export_onnx(
    fused: nn.Module, path: str | Path, input_size: tuple[int, int], *, dynamic_batch: bool = False
) -> Path:
    """Export `fused` (uint8 (1, H, W, 3) BGR in) to `path` with `torch.onnx.export(dynamo=False)`."""
    try:
        import torch
    except ImportError as exc:
        raise missing_extra("torch", "train") from exc
    height, width = input_size
    dummy = torch.zeros((1, height, width, 3), dtype=torch.uint8)  # (B, H, W, 3) uint8 BGR
    names = output_names()
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in names}}
    path = Path(path)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        torch.onnx.export(
            fused,
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=list(names),
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    return path
