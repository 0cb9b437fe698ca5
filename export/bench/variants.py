"""What the bench times: one variant per backend x precision x graph, opened from a serialisable spec.

A `BackendSpec` names a backend and its file; `open_runner` turns it into a callable that maps a
uint8 (N, H, W, 3) BGR batch to the graph's (anomaly_map, score). The same spec opens the model
in a child process to measure its memory (`memory.py`), so parent and child run the same code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lineside.errors import LinesideError, missing_extra

Outputs = tuple[np.ndarray, np.ndarray]  # anomaly_map (N, 1, H, W) float32, score (N,) float32
Runner = Callable[[np.ndarray], Outputs]  # (N, H, W, 3) uint8 BGR -> outputs


@dataclass(frozen=True)
class BackendSpec:
    """How to open one model: backend kind, its file (ONNX, checkpoint or engine), threads, bundle folder."""

    kind: str
    path: str
    threads: int
    bundle: str | None = None  # the bundle a TensorRT engine belongs to

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Opened:
    """An opened model: its runner and the batch sizes it accepts."""

    run: Runner
    dynamic_batch: bool
    max_batch: int | None = None  # largest batch of a dynamic model; None = no limit
    input_size: tuple[int, int] | None = None  # (H, W) where the file says it (a checkpoint)


@dataclass
class Variant:
    """One timed model plus everything measured on it."""

    name: str
    model: str
    backend: str
    precision: str
    spec: BackendSpec
    opened: Opened
    size_bytes: int | None = None
    latencies_ms: list[float] = field(default_factory=list)  # inference, batch 1, one per round
    end_to_end_ms: list[float] = field(default_factory=list)  # decode .. actuation in the same round
    batch_ms: dict[int, list[float]] = field(default_factory=dict)  # batch size -> per-batch latencies
    accuracy: dict[str, Any] | None = None
    memory: dict[str, Any] | None = None

    def accepts(self, batch: int) -> bool:
        """Whether this model runs a batch of `batch` images."""
        if batch == 1:
            return True
        return self.opened.dynamic_batch and (self.opened.max_batch is None or batch <= self.opened.max_batch)


def preload(kind: str) -> None:
    """Import a backend's libraries (so a memory baseline can be taken after imports)."""
    if kind == "ort":
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise missing_extra("onnxruntime", "ort") from exc
    elif kind == "torch":
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            raise missing_extra("torch", "train") from exc
        import lineside.export.fuse  # noqa: F401
        import lineside.train.checkpoint  # noqa: F401
    elif kind == "tensorrt":
        import lineside.runtime.backends.tensorrt  # noqa: F401
    else:
        raise LinesideError(f"unknown backend {kind!r}: choose from torch, ort, tensorrt")


def open_runner(spec: BackendSpec, stack: contextlib.ExitStack) -> Opened:
    """Open `spec`; anything that must be released (a TensorRT engine) is closed by `stack`."""
    preload(spec.kind)
    if spec.kind == "ort":
        return _open_ort(spec)
    if spec.kind == "torch":
        return _open_torch(spec)
    return _open_tensorrt(spec, stack)


def _open_ort(spec: BackendSpec) -> Opened:
    from lineside.export.ort_run import cpu_session

    session = cpu_session(spec.path, threads=spec.threads)
    graph_input = session.get_inputs()[0]
    name, batch = graph_input.name, graph_input.shape[0]
    if isinstance(batch, int) and batch != 1:
        raise LinesideError(f"{spec.path} has a fixed batch of {batch}: bench takes batch-1 or dynamic-batch graphs")

    def run(images: np.ndarray) -> Outputs:
        anomaly_map, score = session.run(["anomaly_map", "score"], {name: images})
        return anomaly_map, score

    return Opened(run, dynamic_batch=not isinstance(batch, int))


def _open_torch(spec: BackendSpec) -> Opened:
    import torch

    from lineside.export.fuse import fuse_checkpoint
    from lineside.train.checkpoint import load_checkpoint

    torch.set_num_threads(spec.threads)
    loaded = load_checkpoint(spec.path)
    fused = fuse_checkpoint(loaded)

    def run(images: np.ndarray) -> Outputs:
        with torch.inference_mode():
            out = fused(torch.from_numpy(images))
        return out.anomaly_map.numpy(), out.score.numpy()

    return Opened(run, dynamic_batch=True, input_size=tuple(loaded.input_size))  # type: ignore[arg-type]


def _open_tensorrt(spec: BackendSpec, stack: contextlib.ExitStack) -> Opened:
    from lineside.bundle import load_bundle
    from lineside.engine_file import read_engine
    from lineside.runtime.backends.tensorrt import TensorRTBackend, max_batch

    if spec.bundle is None:
        raise LinesideError(f"engine {spec.path}: the bench needs the bundle it was built from")
    limit, dynamic = max_batch(read_engine(spec.path)[0])
    backend = stack.enter_context(TensorRTBackend(load_bundle(spec.bundle), spec.path))

    def run(images: np.ndarray) -> Outputs:
        result = backend.infer(images)
        return result.anomaly_map, result.score

    return Opened(run, dynamic_batch=dynamic, max_batch=limit if dynamic else 1)


def variant(model: str, precision: str, spec: BackendSpec, stack: contextlib.ExitStack, flavour: str = "") -> Variant:
    """Open `spec` as a named variant: '<model> <backend> <precision>[ <flavour>]'."""
    name = " ".join(part for part in (model, spec.kind, precision, flavour) if part)
    size = Path(spec.path).stat().st_size if spec.kind != "torch" else None
    return Variant(name, model, spec.kind, precision, spec, open_runner(spec, stack), size_bytes=size)
