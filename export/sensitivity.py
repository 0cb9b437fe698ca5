"""Which quantized nodes hurt most: local quantization noise from calibrated ranges and FP32 activations.

For each quantizable node, the noise-to-signal ratio its Q/DQ adds is measured directly: FP32
activations of its float inputs (a few calibration images) are quantized with the calibrated
symmetric int8 scale, weights per output channel; the ratios are summed. Nodes are ranked
noisiest first, which is the order the INT8 fallback un-quantizes them in.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from lineside.export.ort_run import cpu_session


def _symmetric_noise(values: np.ndarray, scale: np.ndarray | float) -> tuple[float, float]:
    """(noise energy, signal energy) of int8 symmetric Q/DQ of `values` with `scale`."""
    quantized = np.clip(np.round(values / scale), -128, 127) * scale
    return float(np.sum((values - quantized) ** 2)), float(np.sum(values**2))


def weight_noise(weight: np.ndarray, axis: int) -> float:
    """Noise-to-signal ratio of per-channel (along `axis`) symmetric int8 weight quantization."""
    moved = np.moveaxis(weight, axis, 0).reshape(weight.shape[axis], -1)  # (C_out, rest)
    scale = np.maximum(np.abs(moved).max(axis=1, keepdims=True), 1e-12) / 127.0  # (C_out, 1)
    noise, signal = _symmetric_noise(moved, scale)
    return noise / max(signal, 1e-30)


def _weight_axis(node: Any) -> int:
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return -1 if node.op_type == "MatMul" else 0


def _load_ranges(cache: Path) -> dict[str, float]:
    from onnxruntime.quantization.calibrate import load_tensors_data

    data = load_tensors_data(cache)
    ranges = {}
    for name in data:
        low, high = (float(np.asarray(v).max()) for v in data[name].range_value)
        ranges[name] = max(abs(low), abs(high))
    return ranges


def rank_nodes(
    fp32_path: Path, nodes: list[str], cache: Path, images: list[np.ndarray], *, threads: int = 2
) -> list[tuple[str, float]]:
    """(node, noise-to-signal ratio) for `nodes`, noisiest first, using `images` (H, W, 3) uint8."""
    import onnx

    model = onnx.load(str(fp32_path))
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    chosen = [n for n in model.graph.node if n.name in set(nodes)]
    ranges = _load_ranges(cache)
    watched = sorted({name for n in chosen for name in n.input if name in ranges and name not in initializers})
    outputs = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in watched if name not in outputs)
    augmented = fp32_path.with_name(fp32_path.stem + ".sensitivity.onnx")
    onnx.save(model, str(augmented))
    session = cpu_session(augmented, threads=threads)
    names = [o.name for o in session.get_outputs()]
    energy: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for image in images:
        values = dict(zip(names, session.run(None, {session.get_inputs()[0].name: image[None]}), strict=True))
        for name in watched:
            noise, signal = _symmetric_noise(values[name], max(ranges[name], 1e-12) / 127.0)
            energy[name][0] += noise
            energy[name][1] += signal
    augmented.unlink(missing_ok=True)
    scores = []
    for node in chosen:
        ratio = sum(energy[i][0] / max(energy[i][1], 1e-30) for i in node.input if i in energy)
        if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and node.input[1] in initializers:
            ratio += weight_noise(initializers[node.input[1]], _weight_axis(node))
        scores.append((node.name, ratio))
    return sorted(scores, key=lambda item: -item[1])
