"""TensorRT backend: run a `lineside build` engine on the GPU (Jetson or any NVIDIA GPU).

The engine file's header is checked against the bundle, the library and the GPU before the plan
is deserialised. Pinned host and device buffers for every IO tensor are allocated once (for the
largest batch), bound with `set_tensor_address`, and reused: a frame is one host copy into pinned
memory, an async upload, `execute_async_v3` on the backend's stream, async downloads and one
stream synchronisation. Needs a GPU, TensorRT (or TensorRT-RTX) and pycuda or cuda-python.

The backend is opened on one thread and infers on another (the line's inference thread): every
method that touches the GPU runs inside `CudaMemory.activate()`, which makes the CUDA context
current on the thread calling it. Not run on a GPU in this repository's CI.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from lineside.bundle import Bundle
from lineside.cuda_device import current_gpu
from lineside.engine_file import EngineMetadata, check_compatible, import_tensorrt, read_engine
from lineside.errors import LinesideError
from lineside.runtime.backends.base import BackendError, InferenceBackend, InferenceResult
from lineside.runtime.backends.cuda_memory import CudaMemory, open_cuda

log = logging.getLogger(__name__)
OUTPUT_NAMES: tuple[str, str] = ("anomaly_map", "score")


class _Logger:
    """Forwards TensorRT's warnings and errors to `logging`."""

    @staticmethod
    def create(trt: Any) -> Any:
        class _Native(trt.ILogger):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: Any, msg: str) -> None:
                level = str(getattr(severity, "name", severity))
                if level.endswith("ERROR"):
                    log.error("tensorrt: %s", msg)
                elif level == "WARNING":
                    log.warning("tensorrt: %s", msg)

        return _Native()


def max_batch(metadata: EngineMetadata) -> tuple[int, bool]:
    """(largest batch, dynamic?) of an engine from its header."""
    first = metadata.inputs[0].shape[0]
    if isinstance(first, int):
        return first, False
    return int(metadata.build_options.get("max_batch") or 1), True


class TensorRTBackend(InferenceBackend):
    """A TensorRT engine with its execution context, stream and preallocated IO buffers."""

    name = "tensorrt"

    def __init__(self, bundle: Bundle, engine_path: str | Path, device: int = 0) -> None:
        metadata, plan = read_engine(engine_path)
        trt, library, version = import_tensorrt(metadata.library)
        gpu = current_gpu(device)
        check_compatible(
            metadata,
            library=library,
            library_version=version,
            compute_capability=gpu.compute_capability if gpu else None,
            gpu_name=gpu.name if gpu else None,
            bundle_model_sha256=bundle.manifest.model_sha256,
        )
        if gpu is None:
            raise LinesideError(
                "no NVIDIA GPU or driver found: a TensorRT engine needs one; run with --backend ort (ONNX Runtime) here"
            )
        self._limit, dynamic = max_batch(metadata)
        super().__init__(tuple(bundle.manifest.input_size), 0 if dynamic else self._limit)  # type: ignore[arg-type]
        self._cuda: CudaMemory | None = open_cuda(device)
        try:
            with self._cuda.activate():
                self._open(trt, plan, metadata, self._cuda)
        except BaseException:
            self.close()
            raise
        log.info("tensorrt backend: %s (%s %s) on %s via %s", engine_path, library, version, gpu.name, self._cuda.name)

    def _open(self, trt: Any, plan: bytes, metadata: EngineMetadata, cuda: CudaMemory) -> None:
        self._logger = _Logger.create(trt)
        self._runtime = trt.Runtime(self._logger)
        dla_core = metadata.build_options.get("dla_core")
        if dla_core is not None:
            self._runtime.DLA_core = int(dla_core)  # a DLA engine runs on the core it was built for
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise LinesideError("TensorRT could not deserialise the engine (see the log): rebuild it on this machine")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise LinesideError("TensorRT could not create an execution context (out of GPU memory?)")
        self._input = metadata.inputs[0].name
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, int] = {}
        names = [self._input, *OUTPUT_NAMES]
        present = {self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)}
        if not set(names) <= present:
            raise LinesideError(f"engine tensors are {sorted(present)}, expected {names}: rebuild it from the bundle")
        for name in names:
            shape = (self._limit, *(int(d) for d in self._engine.get_tensor_shape(name)[1:]))
            host = cuda.pinned(shape, np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))))
            self._host[name] = host
            self._device[name] = cuda.device(host.nbytes)
            if not self._context.set_tensor_address(name, self._device[name]):
                raise BackendError(f"set_tensor_address failed for {name}")

    def _run(self, images: np.ndarray) -> InferenceResult:
        cuda = self._cuda
        if cuda is None:
            raise BackendError("the TensorRT backend is closed")
        with cuda.activate():  # on the calling (inference) thread, not the one that opened the backend
            return self._enqueue(cuda, images)

    def _enqueue(self, cuda: CudaMemory, images: np.ndarray) -> InferenceResult:
        """Copy in, execute, copy out and wait, with the context current on this thread."""
        count = images.shape[0]
        if count > self._limit:
            raise BackendError(f"batch of {count} exceeds the engine's maximum {self._limit}: rebuild with --max-batch")
        if not self.batch_size and not self._context.set_input_shape(self._input, images.shape):
            raise BackendError(f"set_input_shape{images.shape} refused by the engine")
        host_in = self._host[self._input][:count]
        np.copyto(host_in, images)  # (N, H, W, 3) uint8 into pinned memory
        cuda.to_device(self._device[self._input], host_in)
        if not self._context.execute_async_v3(cuda.stream_handle):
            raise BackendError("execute_async_v3 failed (see the log)")
        for name in OUTPUT_NAMES:
            cuda.to_host(self._host[name][:count], self._device[name])
        cuda.synchronize()
        # copies: the pinned buffers are overwritten by the next frame while callers may keep results
        return InferenceResult(
            anomaly_map=self._host["anomaly_map"][:count].astype(np.float32, copy=True),  # (N, 1, H, W)
            score=self._host["score"][:count].astype(np.float32, copy=True),  # (N,)
        )

    def close(self) -> None:
        """Destroy the context and engine, then free the buffers and stream; safe to call twice."""
        cuda, self._cuda = getattr(self, "_cuda", None), None
        if cuda is None:
            return
        with cuda.activate():  # TensorRT frees its device memory in the context that owns it
            self._context = None
            self._engine = None
            self._runtime = None
        cuda.close()
