"""The CUDA context is current on the thread that infers, not only on the one that opened the backend.

No GPU here, so this one test stands in for the GPU driver only (pycuda.driver cannot run without one): a
minimal driver that, like CUDA, keeps a context stack per thread and fails any call made on a thread with
no current context. TensorRT's execution context, also GPU-only, is the smallest stand-in that checks the
same. Everything else (PyCudaMemory, TensorRTBackend.infer, the thread hand-off) is the real code.
"""

from __future__ import annotations

import sys
import threading
import types
from typing import Any

import numpy as np
import pytest

from lineside.runtime.backends.base import InferenceBackend
from lineside.runtime.backends.cuda_memory import PyCudaMemory, open_cuda
from lineside.runtime.backends.tensorrt import TensorRTBackend


class _Driver(types.ModuleType):
    """Stand-in for `pycuda.driver`: per-thread context stacks; every call needs a current context."""

    def __init__(self) -> None:
        super().__init__("pycuda.driver")
        self.local = threading.local()
        self.pushed_on: list[str] = []
        driver = self

        class Context:
            def push(self) -> None:
                driver.stack().append(self)
                driver.pushed_on.append(threading.current_thread().name)

            @staticmethod
            def pop() -> None:
                driver.stack().pop()

        class Device:
            def __init__(self, ordinal: int) -> None:
                self.context = Context()

            def retain_primary_context(self) -> Context:
                return self.context

        class Stream:
            handle = 1

            def synchronize(self) -> None:
                driver.require()

        self.Context, self.Device, self.Stream = Context, Device, Stream

    def stack(self) -> list[Any]:
        if not hasattr(self.local, "stack"):
            self.local.stack = []
        return self.local.stack

    def require(self) -> None:
        if not self.stack():
            raise RuntimeError("cuMemcpyHtoDAsync failed: invalid device context")

    def init(self) -> None:
        pass

    def pagelocked_empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        self.require()
        return np.zeros(shape, dtype)

    def mem_alloc(self, nbytes: int) -> int:
        self.require()
        return 4096

    def memcpy_htod_async(self, address: int, host: np.ndarray, stream: Any) -> None:
        self.require()

    def memcpy_dtoh_async(self, host: np.ndarray, address: int, stream: Any) -> None:
        self.require()


class _ExecutionContext:
    """Stand-in for TensorRT's IExecutionContext: enqueues on the current context of the calling thread."""

    def __init__(self, driver: _Driver) -> None:
        self.driver = driver
        self.ran_on: list[str] = []

    def execute_async_v3(self, stream: int) -> bool:
        self.driver.require()
        self.ran_on.append(threading.current_thread().name)
        return True


@pytest.fixture
def driver(monkeypatch: pytest.MonkeyPatch) -> _Driver:
    fake = _Driver()
    package = types.ModuleType("pycuda")
    package.driver = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", fake)
    return fake


def _backend(driver: _Driver) -> TensorRTBackend:
    """A TensorRTBackend over PyCudaMemory with a 1 x 4 x 4 engine's buffers, opened on the calling thread."""
    memory = open_cuda(0)
    assert isinstance(memory, PyCudaMemory)
    backend = TensorRTBackend.__new__(TensorRTBackend)
    InferenceBackend.__init__(backend, (4, 4), 1)
    backend._cuda, backend._limit, backend._input = memory, 1, "image"
    shapes = {"image": ((1, 4, 4, 3), np.uint8), "anomaly_map": ((1, 1, 4, 4), np.float32), "score": ((1,), np.float32)}
    driver.stack().append(memory._context)  # as TensorRTBackend.__init__ has it current while it allocates
    try:
        backend._host = {name: memory.pinned(shape, np.dtype(dtype)) for name, (shape, dtype) in shapes.items()}
        backend._device = {name: memory.device(host.nbytes) for name, host in backend._host.items()}
    finally:
        driver.stack().pop()
    backend._context = _ExecutionContext(driver)
    return backend


def test_fake_cuda_driver_context_is_pushed_on_the_inferring_thread(driver: _Driver) -> None:
    backend = _backend(driver)  # opened on the main thread, as `lineside run` does
    outcome: dict[str, Any] = {}

    def infer() -> None:
        try:
            outcome["score"] = backend.infer(np.zeros((1, 4, 4, 3), np.uint8)).score
        except Exception as exc:  # the assertion below shows it
            outcome["error"] = exc
        outcome["left_current"] = len(driver.stack())

    for _ in range(2):
        thread = threading.Thread(target=infer, name="lineside-inference")
        thread.start()
        thread.join(10)
        assert "error" not in outcome, outcome.get("error")
    assert backend._context.ran_on == ["lineside-inference"] * 2
    assert driver.pushed_on.count("lineside-inference") == 2 and outcome["left_current"] == 0  # pushed, then popped
    assert driver.stack() == []  # nor does the opening thread keep it current
    backend.close()  # on the main thread again: pushed there for the frees
    assert driver.stack() == [] and driver.pushed_on[-1] == "MainThread"
