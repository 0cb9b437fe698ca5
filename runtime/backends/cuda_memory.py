"""CUDA memory for the TensorRT backend: one stream, page-locked host and device buffers, all owned and released.

Two implementations of the same small interface: pycuda (the card's choice) and, where pycuda is
missing, NVIDIA cuda-python (`cuda.bindings.runtime`). Every CUDA call is checked: a failing call
raises BackendError naming the call and CUDA's message. Everything allocated is freed by `close()`
(or leaving the `with` block), never by `__del__`.

A CUDA context is current per *thread*: the line opens the backend on the main thread but infers on
its inference thread. So no method makes the context current by itself; the caller wraps every use in
`with memory.activate():`, on the thread that does the work (pycuda pushes the device's primary
context there and pops it after; cuda-python binds the device, so the runtime API makes its primary
context current on that thread). Not run on a GPU in this repository's CI (no GPU there): a test with
a stand-in driver checks that the context is pushed on the inferring thread.
"""

from __future__ import annotations

import contextlib
import ctypes
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import numpy as np

from lineside.errors import LinesideError
from lineside.runtime.backends.base import BackendError


class CudaMemory(ABC):
    """A CUDA stream plus the pinned host and device buffers allocated through it."""

    name: str = "cuda"

    @property
    @abstractmethod
    def stream_handle(self) -> int:
        """The stream as an integer handle for `execute_async_v3`."""

    @abstractmethod
    def activate(self) -> contextlib.AbstractContextManager[None]:
        """Make the device's context current on the calling thread for the `with` block."""

    @abstractmethod
    def pinned(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        """A page-locked host array, freed by `close()`."""

    @abstractmethod
    def device(self, nbytes: int) -> int:
        """A device allocation's address, freed by `close()`."""

    @abstractmethod
    def to_device(self, address: int, host: np.ndarray) -> None:
        """Queue a copy of contiguous `host` to `address` on the stream."""

    @abstractmethod
    def to_host(self, host: np.ndarray, address: int) -> None:
        """Queue a copy from `address` into contiguous `host` on the stream."""

    @abstractmethod
    def synchronize(self) -> None:
        """Wait for everything queued on the stream."""

    @abstractmethod
    def close(self) -> None:
        """Free every buffer and the stream; safe to call twice."""

    def __enter__(self) -> CudaMemory:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class CudaPythonMemory(CudaMemory):
    """cuda-python runtime API (`cuda.bindings.runtime`, or `cuda.cudart` in cuda-python < 12.6)."""

    name = "cuda-python"

    def __init__(self, device: int = 0) -> None:
        self._rt = _import_cudart()
        self._ordinal = device
        self._host: list[int] = []
        self._device: list[int] = []
        self._stream: Any = None
        with self.activate():
            self._stream = self._check("cudaStreamCreate", self._rt.cudaStreamCreate())

    @contextmanager
    def activate(self) -> Iterator[None]:
        """Bind the device on this thread: the runtime API then makes its primary context current here."""
        self._check("cudaSetDevice", self._rt.cudaSetDevice(self._ordinal))
        yield

    def _check(self, call: str, result: Any) -> Any:
        """Raise BackendError unless a cuda-python result tuple starts with cudaSuccess; return the value."""
        error, *values = result if isinstance(result, tuple) else (result,)
        if error != self._rt.cudaError_t.cudaSuccess:
            _, message = self._rt.cudaGetErrorString(error)
            raise BackendError(f"{call} failed: {getattr(error, 'name', error)}: {message.decode(errors='replace')}")
        return values[0] if len(values) == 1 else None

    @property
    def stream_handle(self) -> int:
        return int(self._stream)

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        address = int(self._check("cudaMallocHost", self._rt.cudaMallocHost(nbytes)))
        self._host.append(address)
        raw = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(address))
        return raw.view(dtype).reshape(shape)

    def device(self, nbytes: int) -> int:
        address = int(self._check("cudaMalloc", self._rt.cudaMalloc(nbytes)))
        self._device.append(address)
        return address

    def to_device(self, address: int, host: np.ndarray) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(
            "cudaMemcpyAsync", self._rt.cudaMemcpyAsync(address, host.ctypes.data, host.nbytes, kind, self._stream)
        )

    def to_host(self, host: np.ndarray, address: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(
            "cudaMemcpyAsync", self._rt.cudaMemcpyAsync(host.ctypes.data, address, host.nbytes, kind, self._stream)
        )

    def synchronize(self) -> None:
        self._check("cudaStreamSynchronize", self._rt.cudaStreamSynchronize(self._stream))

    def close(self) -> None:
        with self.activate():
            if self._stream is not None:
                self._check("cudaStreamSynchronize", self._rt.cudaStreamSynchronize(self._stream))
            while self._device:
                self._check("cudaFree", self._rt.cudaFree(self._device.pop()))
            while self._host:
                self._check("cudaFreeHost", self._rt.cudaFreeHost(self._host.pop()))
            if self._stream is not None:
                stream, self._stream = self._stream, None
                self._check("cudaStreamDestroy", self._rt.cudaStreamDestroy(stream))


class PyCudaMemory(CudaMemory):
    """pycuda on the device's primary context (the one TensorRT uses); pycuda raises on every failed call.

    The context is current on a thread only inside `activate()` (pushed on entry, popped on exit), so
    the thread that opened the backend and the thread that infers each push it for their own work.
    """

    name = "pycuda"

    def __init__(self, device: int = 0) -> None:
        import pycuda.driver as cuda  # type: ignore[import-not-found]

        self._cuda = cuda
        cuda.init()
        self._context: Any = cuda.Device(device).retain_primary_context()
        self._buffers: list[Any] = []  # pagelocked arrays and DeviceAllocations
        with self.activate():
            self._stream: Any = cuda.Stream()

    @contextmanager
    def activate(self) -> Iterator[None]:
        """Push the primary context on the calling thread; pop it when the block ends."""
        if self._context is None:
            raise BackendError("the CUDA context is closed")
        self._context.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    @property
    def stream_handle(self) -> int:
        return int(self._stream.handle)

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        array = self._cuda.pagelocked_empty(shape, dtype)
        self._buffers.append(array)
        return array

    def device(self, nbytes: int) -> int:
        allocation = self._cuda.mem_alloc(nbytes)
        self._buffers.append(allocation)
        return int(allocation)

    def to_device(self, address: int, host: np.ndarray) -> None:
        self._cuda.memcpy_htod_async(address, host, self._stream)

    def to_host(self, host: np.ndarray, address: int) -> None:
        self._cuda.memcpy_dtoh_async(host, address, self._stream)

    def synchronize(self) -> None:
        self._stream.synchronize()

    def close(self) -> None:
        if self._context is None:
            return
        with self.activate():
            self._stream.synchronize()
            for buffer in reversed(self._buffers):
                if hasattr(buffer, "free"):
                    buffer.free()  # DeviceAllocation
                elif hasattr(buffer, "base") and hasattr(buffer.base, "free"):
                    buffer.base.free()  # pagelocked host array
            self._buffers.clear()
            self._stream = None
        self._context = None


def _import_cudart() -> Any:
    try:
        from cuda.bindings import runtime  # type: ignore[import-not-found]
    except ImportError:
        from cuda import cudart as runtime  # type: ignore[import-not-found, no-redef]
    return runtime


def open_cuda(device: int = 0) -> CudaMemory:
    """pycuda if installed, else cuda-python; LinesideError naming the extra when neither is."""
    try:
        import pycuda.driver  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        pass
    else:
        return PyCudaMemory(device)
    try:
        _import_cudart()
    except ImportError as exc:
        raise LinesideError(
            "neither pycuda nor cuda-python is installed: pip install 'lineside[tensorrt]' (pycuda) or cuda-python"
        ) from exc
    return CudaPythonMemory(device)
