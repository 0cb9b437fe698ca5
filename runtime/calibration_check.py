"""Were the line's thresholds calibrated for the graph and backend it runs? Checked once at start-up.

`lineside calibrate --for BACKEND` scores the graph that backend family runs (an INT8 bundle has two:
S8S8 `model.onnx` for TensorRT and ORT on GPU, U8S8 `model_cpu.onnx` for ORT on CPU; they score
differently) and records it per class in the manifest's `calibrated_for`. A line running another graph,
or another backend family, gets a loud warning and the start event records it: its false-reject bound
does not hold.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from lineside.bundle import Bundle, CalibrationTarget
from lineside.runtime.backends.base import InferenceBackend


def running_target(bundle: Bundle, backend: InferenceBackend) -> CalibrationTarget:
    """The backend family and graph file (name + sha256) this line runs."""
    if backend.name == "tensorrt":
        family = "tensorrt"
    else:
        cpu_only = list(getattr(backend, "providers", ["CPUExecutionProvider"])) == ["CPUExecutionProvider"]
        family = "ort-cpu" if cpu_only else "ort-gpu"
    graph = bundle.manifest.graph_for(family)
    return CalibrationTarget(family, graph, bundle.manifest.files[graph])


def threshold_key(bundle: Bundle, class_name: str | None) -> str | None:
    """The manifest key of the threshold `Bundle.threshold_for(class_name)` returns."""
    thresholds = bundle.manifest.thresholds
    if class_name is None:
        return next(iter(thresholds)) if len(thresholds) == 1 else ("*" if "*" in thresholds else None)
    return class_name if class_name in thresholds else ("*" if "*" in thresholds else None)


def calibration_mismatch(bundle: Bundle, running: CalibrationTarget, class_name: str | None) -> str | None:
    """Why the bundle threshold does not fit what runs (None when it does, or when nothing can tell)."""
    key = threshold_key(bundle, class_name)
    made_for = bundle.manifest.calibrated_for.get(key) if key is not None else None
    fix = f"re-run `lineside calibrate {bundle.path} --good DIR --for {running.backend}`"
    if made_for is None:
        if bundle.manifest.cpu_model_file is None:
            return None  # one graph: every backend runs the graph the threshold was scored on
        return (
            f"the threshold of class {key!r} does not record the graph it was calibrated on (calibrated before "
            f"lineside recorded it: then on {bundle.manifest.cpu_model_file}), and this line runs {running.graph} "
            f"on {running.backend}: {fix}"
        )
    if made_for == running:
        return None
    return (
        f"the threshold of class {key!r} was calibrated for {made_for.backend} on {made_for.graph} "
        f"(sha256 {made_for.graph_sha256[:12]}), but this line runs {running.backend} on {running.graph} "
        f"(sha256 {running.graph_sha256[:12]}): the false-reject rate it was set for does not hold; {fix}"
    )


def calibration_record(bundle: Bundle, backend: InferenceBackend, class_name: str | None) -> dict[str, Any]:
    """What the start event records: the target the threshold was made for, what runs, and any mismatch."""
    running = running_target(bundle, backend)
    key = threshold_key(bundle, class_name)
    made_for = bundle.manifest.calibrated_for.get(key) if key is not None else None
    return {
        "calibrated_for": asdict(made_for) if made_for else None,
        "running": asdict(running),
        "mismatch": calibration_mismatch(bundle, running, class_name),
    }
