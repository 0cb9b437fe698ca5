"""ONNX Runtime backend: CPU, or the CUDA / TensorRT execution providers where installed.

On a CPU-only session the bundle's `cpu_model_file` (the U8S8 INT8 variant, about 2x faster than
FP32 on x86, see DESIGN.md) is used when the bundle has one; GPU providers get `model_file`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType

import numpy as np

from lineside.bundle import Bundle
from lineside.errors import LinesideError, missing_extra
from lineside.runtime.backends.base import InferenceBackend, InferenceResult

log = logging.getLogger(__name__)

PREFERRED_PROVIDERS: tuple[str, ...] = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)
OUTPUT_NAMES: tuple[str, str] = ("anomaly_map", "score")


def _import_ort() -> ModuleType:
    try:
        import onnxruntime
    except ImportError as exc:
        raise missing_extra("onnxruntime", "ort") from exc
    return onnxruntime


def resolve_providers(requested: list[str] | None, available: list[str]) -> list[str]:
    """Providers to use: the requested ones (all must be available) or the best available ones."""
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise LinesideError(
                f"ONNX Runtime provider(s) {', '.join(missing)} not available here; available: {', '.join(available)}"
            )
        return list(requested)
    return [p for p in PREFERRED_PROVIDERS if p in available] or list(available)


def model_for(bundle: Bundle, providers: list[str]) -> Path:
    """The bundle's CPU variant for a CPU-only session when it has one, else the main model."""
    cpu_only = providers == ["CPUExecutionProvider"]
    if cpu_only and bundle.manifest.cpu_model_file:
        return bundle.file(bundle.manifest.cpu_model_file)
    return bundle.model_path


class OrtBackend(InferenceBackend):
    """A bundle's ONNX model in an ONNX Runtime InferenceSession."""

    name = "ort"

    def __init__(self, bundle: Bundle, providers: list[str] | None = None, threads: int | None = None) -> None:
        ort = _import_ort()
        chosen = resolve_providers(providers, list(ort.get_available_providers()))
        self.model_path = model_for(bundle, chosen)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle intra-op workers sleep instead of spinning: a spinning pool holds the cores the line's own
        # capture, decision and actuation threads need between two inferences (the runtime overhead tail).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(self.model_path), sess_options=options, providers=chosen)
        except Exception as exc:  # ORT raises its own exception types for unreadable graphs
            raise LinesideError(f"ONNX Runtime cannot load {self.model_path}: {exc}") from exc
        self.providers: list[str] = list(self._session.get_providers())
        graph_input = self._session.get_inputs()[0]
        self._input_name = graph_input.name
        self._output_names = self._pick_outputs()
        batch = graph_input.shape[0] if isinstance(graph_input.shape[0], int) else 0
        super().__init__(tuple(bundle.manifest.input_size), batch)  # type: ignore[arg-type]
        self._check_input(graph_input.shape)
        log.info("ort backend: %s on %s", self.model_path.name, ", ".join(self.providers))

    def _pick_outputs(self) -> list[str]:
        names = [o.name for o in self._session.get_outputs()]
        if not set(OUTPUT_NAMES) <= set(names):
            raise LinesideError(f"{self.model_path} outputs {names}, expected {list(OUTPUT_NAMES)}: re-export it")
        return list(OUTPUT_NAMES)

    def _check_input(self, shape: list[int | str]) -> None:
        height, width = self.input_size
        if (
            len(shape) != 4
            or shape[3] != 3
            or [d for d in shape[1:3] if isinstance(d, int)] not in ([height, width], [])
        ):
            raise LinesideError(
                f"{self.model_path} takes input {shape}, but the manifest says (N, {height}, {width}, 3): re-export it"
            )

    def _run(self, images: np.ndarray) -> InferenceResult:
        amap, score = self._session.run(self._output_names, {self._input_name: images})
        return InferenceResult(anomaly_map=amap, score=score)

    def close(self) -> None:
        """Drop the session (ORT frees it with the last reference)."""
        self._session = None  # type: ignore[assignment]
