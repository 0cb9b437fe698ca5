"""The one inference interface every backend implements, and `open_backend` that picks one.

A backend takes camera-ready frames, a uint8 (N, H, W, 3) BGR batch already resized to the
bundle's `input_size`, and returns the bundle's two outputs. Pre-processing (RGB, normalise,
NCHW) lives inside the graph, so a backend only moves bytes in and floats out.

Backends:
    "ort"       ONNX Runtime (CPU, CUDA or TensorRT execution provider), `backends/onnxruntime.py`.
    "tensorrt"  a TensorRT engine built by `lineside build`, `backends/tensorrt.py`; its class is
                `TensorRTBackend(bundle, engine_path)` and subclasses `InferenceBackend`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from lineside.bundle import Bundle
from lineside.errors import LinesideError

BACKEND_KINDS: tuple[str, ...] = ("auto", "ort", "tensorrt")
DEFAULT_ENGINE_NAME = "model.engine"


class BackendError(RuntimeError):
    """An inference call failed at run time (device error, bad output); the line rejects the part."""


@dataclass(frozen=True)
class InferenceResult:
    """The graph's outputs for one batch."""

    anomaly_map: np.ndarray  # (N, 1, H, W) float32, higher = more anomalous
    score: np.ndarray  # (N,) float32 image anomaly score


class InferenceBackend(ABC):
    """Runs a bundle's model on uint8 BGR frames; use as a context manager or call `close()`."""

    name: str = "base"

    def __init__(self, input_size: tuple[int, int], batch_size: int = 1) -> None:
        self.input_size = input_size  # (height, width) the graph expects
        self.batch_size = batch_size  # fixed batch of a static graph; 0 = dynamic

    @abstractmethod
    def _run(self, images: np.ndarray) -> InferenceResult:
        """Backend-specific inference on a validated (N, H, W, 3) uint8 batch."""

    @abstractmethod
    def close(self) -> None:
        """Release sessions, engines and device buffers; safe to call twice."""

    def infer(self, images: np.ndarray) -> InferenceResult:
        """Score a (N, H, W, 3) uint8 BGR batch; raises BackendError when the backend fails."""
        self.check_batch(images)
        try:
            result = self._run(np.ascontiguousarray(images))
        except BackendError:
            raise
        except Exception as exc:  # any backend failure becomes one typed error the pipeline handles
            raise BackendError(f"{self.name} inference failed: {type(exc).__name__}: {exc}") from exc
        return check_result(result, images.shape[0], self.input_size)

    def check_batch(self, images: np.ndarray) -> None:
        """Raise ValueError unless `images` is a uint8 (N, H, W, 3) batch this backend accepts."""
        height, width = self.input_size
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (height, width, 3):
            raise ValueError(f"expected uint8 (N, {height}, {width}, 3) BGR images, got {images.dtype} {images.shape}")
        if self.batch_size and images.shape[0] != self.batch_size:
            raise ValueError(f"this model takes batches of {self.batch_size}, got {images.shape[0]}")

    def warmup(self, iterations: int = 3) -> float:
        """Run `iterations` inferences on blank frames; returns the last latency in milliseconds.

        A failure here (an error, a NaN score, a wrong shape) is the bundle's or the device's, found before
        the first part: LinesideError, so the line never starts with a backend that cannot judge parts.
        """
        height, width = self.input_size
        blank = np.zeros((self.batch_size or 1, height, width, 3), np.uint8)
        elapsed = 0.0
        for _ in range(max(1, iterations)):
            start = time.perf_counter()
            try:
                self.infer(blank)
            except BackendError as exc:
                raise LinesideError(f"{self.name} failed its warm-up on a blank frame: {exc}") from exc
            elapsed = (time.perf_counter() - start) * 1000.0
        return elapsed

    def __enter__(self) -> InferenceBackend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def check_result(result: InferenceResult, batch: int, input_size: tuple[int, int]) -> InferenceResult:
    """Validate output shapes/dtypes and that scores are finite; raises BackendError otherwise."""
    amap = np.asarray(result.anomaly_map, dtype=np.float32)
    score = np.asarray(result.score, dtype=np.float32).reshape(-1)
    if amap.ndim != 4 or amap.shape[0] != batch or amap.shape[1] != 1:
        raise BackendError(f"anomaly_map has shape {amap.shape}, expected ({batch}, 1, H, W)")
    if amap.shape[2:] != tuple(input_size):
        raise BackendError(f"anomaly_map is {amap.shape[2:]}, expected the input size {tuple(input_size)}")
    if score.shape != (batch,):
        raise BackendError(f"score has shape {score.shape}, expected ({batch},)")
    if not np.all(np.isfinite(score)):
        raise BackendError(f"backend returned a non-finite score {score.tolist()}")
    return InferenceResult(anomaly_map=amap, score=score)


def _engine_for(bundle: Bundle, engine_path: str | Path | None) -> Path | None:
    """The engine file to use: the one given, else BUNDLE/model.engine when it exists."""
    if engine_path is not None:
        path = Path(engine_path)
        if not path.is_file():
            raise LinesideError(f"engine file not found: {path} (build it with `lineside build {bundle.path}`)")
        return path
    default = bundle.path / DEFAULT_ENGINE_NAME
    return default if default.is_file() else None


def open_backend(
    bundle: Bundle,
    kind: str = "auto",
    engine_path: str | Path | None = None,
    providers: list[str] | None = None,
    threads: int | None = None,
) -> InferenceBackend:
    """Open the inference backend for `bundle`.

    Args:
        bundle: a loaded, verified bundle.
        kind: "ort", "tensorrt", or "auto" (TensorRT when an engine is given or BUNDLE/model.engine
            exists, else ONNX Runtime). An engine that exists but cannot be opened is an error, never a
            silent fall back to another backend.
        engine_path: TensorRT engine file (default BUNDLE/model.engine).
        providers: ONNX Runtime execution providers in order of preference (default: best available).
        threads: ONNX Runtime intra-op threads (default: ONNX Runtime's choice).
    """
    if kind not in BACKEND_KINDS:
        raise LinesideError(f"unknown backend {kind!r}: choose one of {', '.join(BACKEND_KINDS)}")
    engine = _engine_for(bundle, engine_path)
    if kind == "tensorrt" or (kind == "auto" and engine is not None):
        if engine is None:
            raise LinesideError(f"no TensorRT engine: pass --engine or build one with `lineside build {bundle.path}`")
        from lineside.runtime.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(bundle, engine)
    from lineside.runtime.backends.onnxruntime import OrtBackend

    return OrtBackend(bundle, providers=providers, threads=threads)
