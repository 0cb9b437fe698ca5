"""Assemble the bundle: manifest from the checkpoint, the ONNX files, and report.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lineside.bundle import Bundle, Manifest, TensorSpec, write_bundle
from lineside.export.onnx_export import INPUT_NAME, OPSET

if TYPE_CHECKING:
    from lineside.export.pipeline import ExportOptions
    from lineside.train.checkpoint import LoadedCheckpoint

REPORT_NAME = "report.json"


def io_specs(size: tuple[int, int], dynamic_batch: bool) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Input (uint8 NHWC BGR image) and output (anomaly_map, score) specs of an exported graph."""
    from lineside.train.models.base import OUTPUT_NAMES

    batch: int | str = "batch" if dynamic_batch else 1
    height, width = size
    map_name, score_name = OUTPUT_NAMES
    inputs = (TensorSpec(INPUT_NAME, (batch, height, width, 3), "uint8"),)
    outputs = (
        TensorSpec(map_name, (batch, 1, height, width), "float32"),
        TensorSpec(score_name, (batch,), "float32"),
    )
    return inputs, outputs


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def write_export_bundle(
    loaded: LoadedCheckpoint, options: ExportOptions, files: dict[str, Path], report: dict[str, Any]
) -> Bundle:
    """Write manifest.json, the graphs and report.json atomically to `options.out`."""
    from lineside.export.graph_stats import precision_counts

    size = (int(loaded.input_size[0]), int(loaded.input_size[1]))
    inputs, outputs = io_specs(size, options.dynamic_batch)
    manifest = Manifest(
        model=loaded.model_name,
        preset=loaded.preset,
        classes=tuple(loaded.classes),
        input_size=size,
        mean=tuple(float(v) for v in loaded.mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in loaded.std),  # type: ignore[arg-type]
        precision=options.precision,
        inputs=inputs,
        outputs=outputs,
        model_file="model.onnx",
        cpu_model_file="model_cpu.onnx" if "model_cpu.onnx" in files else None,
        dynamic_batch=options.dynamic_batch,
        training_metrics=dict(loaded.metrics),
    )
    report = {
        **report,
        "model": loaded.model_name,
        "preset": loaded.preset,
        "precision": options.precision,
        "opset": OPSET,
        "checkpoint": str(loaded.path) if loaded.path else None,
        "file_sizes": {name: path.stat().st_size for name, path in files.items()},
        "nodes": {name: precision_counts(path) for name, path in files.items()},
        "versions": _versions(),
    }
    payload = json.dumps(report, indent=2, sort_keys=True, default=str).encode("utf-8") + b"\n"
    return write_bundle(options.out, manifest, {**files, REPORT_NAME: payload}, force=options.force)
