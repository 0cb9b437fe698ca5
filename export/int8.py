"""INT8 with explicit Q/DQ (ORT `quantize_static`), in two flavours, with an accuracy-driven fallback.

- `s8s8`: symmetric int8 activations (zero point 0) and per-channel int8 weights, biases kept
  float (TensorRT rejects int32 DequantizeLinear): the graph TensorRT builds (`model.onnx`).
- `u8s8`: asymmetric uint8 activations, per-channel int8 weights: what ORT's x86 CPU kernels run
  fast (`model_cpu.onnx`); S8S8 Q/DQ is slower than FP32 there (DESIGN.md).
Calibration runs once; its tensor ranges are cached and reused by every quantization pass.
Sensitive nodes (pre-processing, first conv, softmax and what reads it, normalisation, the scoring
tail) stay float; if the I-AUROC drop is still above `max_drop`, the nodes with the largest
effect on the anomaly map (`sensitivity`) are given back to float, group by group, until it is within.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lineside.errors import LinesideError, missing_extra
from lineside.export.regions import Regions

log = logging.getLogger(__name__)

METHODS = ("minmax", "percentile", "entropy")
FLAVOURS = ("s8s8", "u8s8")
QUANT_OPS = (
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "Concat", "Clip", "Relu", "MaxPool", "AveragePool",
    "GlobalAveragePool", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Pad", "Split", "Slice",
)  # fmt: skip
_FLOAT_OPS = frozenset({"Softmax", "LayerNormalization", "InstanceNormalization", "BatchNormalization"})


def sensitive_nodes(model: Any, regions: Regions) -> list[str]:
    """Nodes never quantized: head, tail, first weighted op, softmax + its consumers, normalisation."""
    excluded = set(regions.head) | set(regions.tail)
    if regions.first_weighted:
        excluded.add(regions.first_weighted)
    softmax_outputs = set()
    for node in model.graph.node:
        if node.op_type in _FLOAT_OPS:
            excluded.add(node.name)
        if node.op_type == "Softmax":
            softmax_outputs.update(node.output)
    excluded.update(n.name for n in model.graph.node if softmax_outputs & set(n.input))
    return sorted(excluded)


def quantizable_nodes(model: Any, excluded: list[str]) -> list[str]:
    """Names of nodes ORT would quantize that are not excluded, in graph order."""
    skip = set(excluded)
    return [n.name for n in model.graph.node if n.op_type in QUANT_OPS and n.name not in skip]


@dataclass(frozen=True)
class QuantSpec:
    """How to quantize: calibration method, percentile, and the cache of calibrated ranges."""

    method: str
    cache: Path
    percentile: float = 99.999


def quantize(
    fp32_path: Path, out_path: Path, flavour: str, exclude: list[str], spec: QuantSpec, reader: Any | None = None
) -> Path:
    """One Q/DQ pass; calibrates with `reader` if `spec.cache` does not exist yet, else reuses the ranges."""
    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    except ImportError as exc:
        raise missing_extra("onnxruntime", "export") from exc
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown INT8 flavour {flavour!r}")
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
    methods["entropy"] = CalibrationMethod.Entropy
    symmetric = flavour == "s8s8"
    extra = {
        "ActivationSymmetric": symmetric,
        "WeightSymmetric": True,
        "QuantizeBias": False,
        "CalibPercentile": spec.percentile,
    }
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # ORT nags about pre-processing
    quantize_static(
        str(fp32_path),
        str(out_path),
        calibration_data_reader=reader,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(QUANT_OPS),
        per_channel=True,
        reduce_range=False,
        activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(exclude),
        calibrate_method=methods[spec.method],
        extra_options=extra,
        calibration_cache_path=str(spec.cache),
    )
    return out_path


@dataclass
class Attempt:
    """One fallback step: how many extra nodes stayed float and the I-AUROC drop per flavour (points)."""

    unquantized: int
    drop: dict[str, float]
    auroc: dict[str, float]


@dataclass
class Int8Result:
    """The accepted INT8 graphs and how they were reached."""

    paths: dict[str, Path]
    excluded: list[str]
    fallback_nodes: list[str]
    attempts: list[Attempt] = field(default_factory=list)


MAX_FALLBACK_FRACTION = 0.5  # beyond this the graph is mostly float: refuse rather than call it INT8


def _next_step(groups: list[list[str]], used: int) -> int:
    """Groups to keep float next (1, 2, 4, ...), or 0 once the float budget would be exceeded."""
    step = max(1, used * 2)
    budget = int(MAX_FALLBACK_FRACTION * sum(len(g) for g in groups))
    if step > len(groups) or sum(len(g) for g in groups[:step]) > budget:
        return 0
    return step


def quantize_with_fallback(
    fp32_path: Path,
    out_dir: Path,
    base_exclude: list[str],
    ranking: Callable[[], list[list[str]]],
    evaluate: Callable[[Path], float],
    fp32_auroc: float,
    spec: QuantSpec,
    reader: Any,
    max_drop: float,
) -> Int8Result:
    """Quantize both flavours; keep node groups float, most sensitive first, until both drops <= max_drop.

    `ranking()` is called only if the fully quantized graph misses `max_drop`; it returns node
    groups in fallback order, tried 1, 2, 4, ... at a time. `evaluate(path)` returns a graph's I-AUROC; drops are in points (x100).
    At most `MAX_FALLBACK_FRACTION` of the quantizable nodes are given back to float.
    """
    attempts: list[Attempt] = []
    groups: list[list[str]] | None = None
    used = 0
    while True:
        extra = [name for group in (groups or [])[:used] for name in group]
        paths, drops, aurocs = {}, {}, {}
        for flavour in FLAVOURS:  # s8s8 first: when it misses, u8s8 need not be measured
            paths[flavour] = quantize(
                fp32_path, out_dir / f"{flavour}.onnx", flavour, base_exclude + extra, spec, reader
            )
            aurocs[flavour] = evaluate(paths[flavour])
            drops[flavour] = 100.0 * (fp32_auroc - aurocs[flavour])
            if drops[flavour] > max_drop:
                break
        attempts.append(Attempt(len(extra), drops, aurocs))
        log.info("int8: %d nodes kept float -> I-AUROC drop %s", len(extra), drops)
        if len(drops) == len(FLAVOURS) and max(drops.values()) <= max_drop:
            return Int8Result(paths, base_exclude + extra, extra, attempts)
        if groups is None:
            groups = ranking()
        used = _next_step(groups, used)
        if used == 0:
            break
    tried = ", ".join(f"{a.unquantized} float: {max(a.drop.values()):.2f}" for a in attempts)
    raise LinesideError(
        f"INT8 cannot meet --max-drop {max_drop} I-AUROC points with up to half of the layers un-quantized "
        f"(attempts, nodes kept float: drop = {tried}); raise --max-drop, try --calib-method percentile or "
        "entropy, or export fp16"
    )
