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

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lineside.errors import LinesideError, missing_extra
from lineside.export.regions import Regions

log = logging.getLogger(__name__)

METHODS = ("minmax", "percentile", "entropy")
HISTOGRAM_CHUNK = 8  # calibration images per ORT histogram pass
FLAVOURS = ("s8s8", "u8s8")
QUANT_OPS = (
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "Concat", "Clip", "Relu", "MaxPool", "AveragePool",
    "GlobalAveragePool", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Pad", "Split", "Slice",
)  # fmt: skip
_FLOAT_OPS = frozenset({"Softmax", "LayerNormalization", "InstanceNormalization", "BatchNormalization"})
_LOGITS_STEPS = frozenset({"Add", "Sub", "Mul", "Div", "Where"})  # between a q·k MatMul and its softmax
_LOGITS_DEPTH = 4
_SLOW_ON_CPU = frozenset({"AveragePool"})  # ORT's QLinearAveragePool is ~10x slower than the float pool


def sensitive_nodes(model: Any, regions: Regions) -> list[str]:
    """Nodes never quantized: head, tail, first weighted op, normalisation, softmax with its logits and consumers.

    A softmax's logits often carry an additive attention mask (-1e4 outside a window): one 8-bit
    range over [-1e4, 10] leaves no resolution for the logits themselves (RLR lost 20 I-AUROC points).
    """
    excluded = set(regions.head) | set(regions.tail)
    if regions.first_weighted:
        excluded.add(regions.first_weighted)
    producers = {output: node for node in model.graph.node for output in node.output}
    softmax_outputs = set()
    for node in model.graph.node:
        if node.op_type in _FLOAT_OPS:
            excluded.add(node.name)
        if node.op_type == "Softmax":
            softmax_outputs.update(node.output)
            excluded.update(n.name for n in _logits_path(node, producers))
    excluded.update(n.name for n in model.graph.node if softmax_outputs & set(n.input))
    return sorted(excluded)


def _logits_path(softmax: Any, producers: dict[str, Any]) -> list[Any]:
    """The nodes computing a softmax's logits: elementwise steps (mask, scale) back to the MatMul q·k.

    They stay float: the mask needs the range, and the q·k product reduces over one head's width only,
    so an INT8 MatMul saves little while requantizing its (L, L) output costs more than it saves.
    """
    path: list[Any] = []
    name = softmax.input[0]
    while name in producers and len(path) < _LOGITS_DEPTH:
        node = producers[name]
        if node.op_type not in _LOGITS_STEPS | {"MatMul"}:
            break
        path.append(node)
        if node.op_type == "MatMul":
            break
        name = next((i for i in node.input if i in producers), "")
    return path


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
    if spec.method != "minmax" and not spec.cache.exists():
        if reader is None:
            raise ValueError("a calibration data reader is needed when the range cache does not exist")
        calibrate_histogram(fp32_path, spec, reader)
    quantize_static(
        str(fp32_path),
        str(out_path),
        calibration_data_reader=reader,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=[op for op in QUANT_OPS if symmetric or op not in _SLOW_ON_CPU],
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


def calibrate_histogram(fp32_path: Path, spec: QuantSpec, reader: Any) -> None:
    """Percentile or entropy ranges of `fp32_path` into `spec.cache`, with ORT's calibrator.

    ORT keeps every intermediate tensor of every image it is given before binning them (12 GB for
    CRR edge at 64 images), so the images are fed `HISTOGRAM_CHUNK` at a time. Its histogram
    collector bins each tensor between its smallest and largest value; for a near-constant float32
    tensor (CRR's squared norm of unit vectors: 2 +- 1e-6) numpy cannot make 2048 distinct bins and
    calibration fails. Anchoring every tensor's histogram at 0 avoids that and changes no range:
    quantization ranges always include 0.
    """
    from onnxruntime.quantization.calibrate import (
        CalibrationMethod,
        HistogramCollector,
        create_calibrator,
        save_tensors_data,
    )

    class ZeroAnchoredCollector(HistogramCollector):  # type: ignore[misc]
        def collect(self, name_to_arr: dict[str, list[Any]]) -> Any:
            anchored = {}
            for name, arrays in name_to_arr.items():
                first = np.array(arrays[0], copy=True)
                if first.size:
                    first.flat[0] = 0
                anchored[name] = [first, *arrays[1:]]
            return super().collect(anchored)

    method = {"percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}[spec.method]
    with tempfile.TemporaryDirectory(prefix="lineside-calib-") as tmp:
        calibrator = create_calibrator(
            Path(fp32_path),
            list(QUANT_OPS),
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=method,
            extra_options={"percentile": spec.percentile},
        )
        calibrator.collector = ZeroAnchoredCollector(
            method=spec.method,
            symmetric=calibrator.symmetric,
            num_bins=calibrator.num_bins,
            num_quantized_bins=getattr(calibrator, "num_quantized_bins", 128),
            percentile=getattr(calibrator, "percentile", spec.percentile),
            scenario=getattr(calibrator, "scenario", "same"),
        )
        feeds = list(iter(reader.get_next, None))
        for start in range(0, len(feeds), HISTOGRAM_CHUNK):  # histograms merge across calls; memory stays bounded
            with contextlib.redirect_stdout(io.StringIO()):  # ORT prints a line per pass
                calibrator.collect_data(FeedReader(feeds[start : start + HISTOGRAM_CHUNK]))
        with contextlib.redirect_stdout(io.StringIO()):
            ranges = calibrator.compute_data()
        save_tensors_data(ranges, spec.cache)


class FeedReader:
    """A calibration data reader over a list of ready feeds (`{input name: array}` each)."""

    def __init__(self, feeds: list[dict[str, Any]]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, Any] | None:
        return next(self._feeds, None)


METRIC_NAMES = {"image_auroc": "I-AUROC", "pixel_auroc": "P-AUROC", "aupro": "AUPRO"}


@dataclass(frozen=True)
class Gate:
    """Largest accepted drop vs FP32 per metric, in points (x100), measured on the validation set."""

    reference: dict[str, float]  # FP32's metric values, 0..1
    limits: dict[str, float]  # metric -> points

    def drops(self, measured: dict[str, float]) -> dict[str, float]:
        """Drop in points of each gated metric that both graphs have."""
        return {
            m: 100.0 * (self.reference[m] - measured[m]) for m in self.limits if m in measured and m in self.reference
        }

    def passes(self, drops: dict[str, float]) -> bool:
        """All gated drops within their limits."""
        return all(drop <= self.limits[m] + 1e-9 for m, drop in drops.items())

    def describe(self) -> str:
        """'I-AUROC 0.5, P-AUROC 0.5, AUPRO 1.5' for messages."""
        return ", ".join(f"{METRIC_NAMES.get(m, m)} {limit:g}" for m, limit in self.limits.items())


@dataclass
class Attempt:
    """One fallback step: extra nodes kept float, and per flavour the metric values and drops (points)."""

    unquantized: int
    drop: dict[str, dict[str, float]]
    metrics: dict[str, dict[str, float]]
    passed: bool


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
    evaluate: Callable[[Path], dict[str, float]],
    gate: Gate,
    spec: QuantSpec,
    reader: Any,
) -> Int8Result:
    """Quantize both flavours; keep node groups float, most sensitive first, until both pass the gate.

    `ranking()` is called only if the fully quantized graph misses the gate; it returns node groups in
    fallback order, tried 1, 2, 4, ... at a time. `evaluate(path)` returns a graph's validation metrics.
    At most `MAX_FALLBACK_FRACTION` of the quantizable nodes are given back to float. Whole groups only:
    trimming an accepted set down to the nodes that just pass the validation gate lost 2-3 P-AUROC points
    on real test sets (docs/export.md).
    """
    attempts: list[Attempt] = []
    groups: list[list[str]] | None = None
    used = 0
    while True:
        extra = [name for group in (groups or [])[:used] for name in group]
        paths, drops, metrics = {}, {}, {}
        for flavour in FLAVOURS:  # s8s8 first: when it misses, u8s8 need not be measured
            paths[flavour] = quantize(
                fp32_path, out_dir / f"{flavour}.onnx", flavour, base_exclude + extra, spec, reader
            )
            metrics[flavour] = evaluate(paths[flavour])
            drops[flavour] = gate.drops(metrics[flavour])
            if not gate.passes(drops[flavour]):
                break
        passed = len(drops) == len(FLAVOURS) and all(gate.passes(d) for d in drops.values())
        attempts.append(Attempt(len(extra), drops, metrics, passed))
        log.info("int8: %d nodes kept float -> drops %s", len(extra), drops)
        if passed:
            return Int8Result(paths, base_exclude + extra, extra, attempts)
        if groups is None:
            groups = ranking()
        used = _next_step(groups, used)
        if used == 0:
            break
    raise LinesideError(
        f"INT8 cannot stay within the accuracy gate ({gate.describe()} points) with up to half of the layers "
        f"un-quantized (attempts: {_attempts_text(attempts)}); raise --max-drop / --max-pixel-drop / "
        "--max-aupro-drop, try --calib-method percentile or entropy, or export fp16"
    )


def _attempts_text(attempts: list[Attempt]) -> str:
    parts = []
    for attempt in attempts:
        worst = {m: max(d.get(m, 0.0) for d in attempt.drop.values()) for m in next(iter(attempt.drop.values()))}
        drops = ", ".join(f"{METRIC_NAMES.get(m, m)} {0.0 - v:+.2f}" for m, v in worst.items())  # change vs FP32
        parts.append(f"{attempt.unquantized} nodes float: {drops}")
    return "; ".join(parts)
