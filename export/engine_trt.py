"""Small adapters over the TensorRT / TensorRT-RTX Python API: logger, ONNX parsing, target, progress."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lineside.cuda_device import GpuInfo
from lineside.errors import LinesideError

NO_GPU_FOR_TENSORRT = (
    "TensorRT builds on the GPU it targets and no GPU was found: build on the target (Jetson), "
    "or install TensorRT-RTX (pip install 'lineside[tensorrt-rtx]') and pass --target"
)
_NUMPY_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
}


def dtype_name(dtype: Any) -> str:
    """numpy-style name of a TensorRT DataType ("float32", "uint8", ...)."""
    key = str(getattr(dtype, "name", dtype)).split(".")[-1]
    return _NUMPY_DTYPES.get(key, key.lower())


class BuildLogger:
    """Collects TensorRT's errors and warnings; `native` is the trt.ILogger handed to TensorRT."""

    def __init__(self, trt: Any) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self._quiet = False
        owner = self

        class _Native(trt.ILogger):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: Any, msg: str) -> None:
                owner.record(str(getattr(severity, "name", severity)), msg)

        self.native = _Native()

    def record(self, severity: str, message: str) -> None:
        """Keep errors and warnings (dropped while quiet); info and verbose are ignored."""
        if self._quiet:
            return
        line = " ".join(message.split())
        if severity.endswith("ERROR"):
            self.errors.append(line)
        elif severity == "WARNING":
            self.warnings.append(line)

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """Drop messages inside the block (expected failures, e.g. deserialising without a GPU)."""
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False

    def summary(self, last: int = 3) -> str:
        """The last few errors on one line."""
        if not self.errors:
            return "TensorRT reported no error message"
        return " | ".join(self.errors[-last:])[:800]


def parse_onnx(trt: Any, network: Any, logger: BuildLogger, path: Path) -> Any:
    """Parse an ONNX file into `network`; returns the parser, which owns the weights: keep it until built.

    Parser errors are reported with the failing node's name and operator.
    """
    parser = trt.OnnxParser(network, logger.native)
    if parser.parse_from_file(str(path)):
        return parser
    problems = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        if hasattr(error, "node_name") and error.node_name():
            where = f"node {error.node_name()} ({error.node_operator()})"
        else:
            where = f"node #{error.node()}" if error.node() >= 0 else "model"
        problems.append(f"{where}: {' '.join(str(error.desc()).split())}")
    raise LinesideError(
        f"TensorRT cannot parse {path}: {'; '.join(problems)[:800]} "
        "(re-export the bundle; INT8 graphs need S8S8 Q/DQ with float biases)"
    )


def capability_of(target: str) -> str:
    """ "sm86" -> "8.6", "sm120" -> "12.0"."""
    digits = target.removeprefix("sm")
    return f"{digits[:-1]}.{digits[-1]}"


def configure_target(
    trt: Any, library: str, config: Any, target: str | None, gpu: GpuInfo | None
) -> tuple[str | None, tuple[str, ...]]:
    """Set the build target; returns (GPU name or None, compute capabilities the engine runs on)."""
    if library == "tensorrt":
        if gpu is None:
            raise LinesideError(NO_GPU_FOR_TENSORRT)
        return gpu.name, (gpu.compute_capability,)
    if target is None:
        if gpu is None:
            raise LinesideError("no GPU found: pass --target sm75|sm80|sm86|sm89|sm120 to build ahead of time for it")
        config.num_compute_capabilities = 1
        config.set_compute_capability(trt.ComputeCapability.CURRENT, 0)
        return None, (gpu.compute_capability,)
    enum = getattr(trt.ComputeCapability, target.upper(), None)
    if enum is None:
        known = [n.lower() for n in trt.ComputeCapability.__members__ if n.startswith("SM")]
        raise LinesideError(f"this TensorRT-RTX cannot target {target}: choose one of {', '.join(known)}")
    config.num_compute_capabilities = 1
    config.set_compute_capability(enum, 0)
    return None, (capability_of(target),)


@contextmanager
def build_progress(trt: Any, config: Any) -> Iterator[None]:
    """tqdm bars for the builder's top-level phases while the block runs (IProgressMonitor; none on TensorRT 8.x)."""
    if not hasattr(trt, "IProgressMonitor"):
        yield
        return
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    class _Monitor(trt.IProgressMonitor):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            if parent_phase is None:
                bars[phase_name] = tqdm(total=num_steps, desc=f"build: {phase_name}", leave=False, disable=None)

        def step_complete(self, phase_name: str, step: int) -> bool:
            if phase_name in bars:
                bars[phase_name].update(1)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            bar = bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    monitor = _Monitor()
    config.progress_monitor = monitor
    try:
        yield
    finally:
        config.progress_monitor = None
        for bar in bars.values():
            bar.close()
