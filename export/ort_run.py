"""Run a bundle graph with ONNX Runtime on CPU: sessions, batched inference, outputs as numpy."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lineside.errors import LinesideError, missing_extra

DEFAULT_THREADS = 2


def cpu_session(path: str | Path, *, threads: int = DEFAULT_THREADS) -> Any:
    """An ORT CPU InferenceSession with a fixed intra-op thread count and full graph optimisation."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise missing_extra("onnxruntime", "export") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise LinesideError(f"ONNX Runtime cannot load {path}: {exc}") from exc


@dataclass(frozen=True)
class Outputs:
    """Stacked graph outputs over a set of images."""

    maps: np.ndarray  # (N, 1, H, W) float32
    scores: np.ndarray  # (N,) float32


def run_images(session: Any, images: Iterable[np.ndarray]) -> Outputs:
    """Run (H, W, 3) uint8 BGR images one at a time (batch 1) and stack the outputs."""
    input_name = session.get_inputs()[0].name
    maps: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    for image in images:
        anomaly_map, score = session.run(None, {input_name: image[None]})  # (1, 1, H, W), (1,)
        maps.append(anomaly_map[0])
        scores.append(score.reshape(-1)[:1])
    if not maps:
        raise LinesideError("no images to run")
    return Outputs(np.stack(maps).astype(np.float32), np.concatenate(scores).astype(np.float32))


def calibration_batches(images: Iterable[np.ndarray], input_name: str) -> Iterator[dict[str, np.ndarray]]:
    """Feeds `{input_name: (1, H, W, 3) uint8}` for each image."""
    for image in images:
        yield {input_name: np.ascontiguousarray(image[None])}
