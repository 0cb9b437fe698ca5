"""Layer/precision report of an engine: from the parsed network on any machine, from EngineInspector on a GPU.

Deserialising a plan (and so EngineInspector) needs a GPU driver. On a CPU-only build machine the
report comes from the parsed, strongly typed `INetworkDefinition`: every layer's type and output
dtype, and a compute layer (convolution, matrix multiply) fed by DequantizeLinear on all its
operands counts as INT8, since TensorRT fuses such Q/DQ pairs into INT8 kernels. Where a GPU is
present, EngineInspector's per-layer formats and tactics of the built engine are added.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

PRECISIONS = ("int8", "fp16", "bf16", "fp32", "other")
_COMPUTE = {"CONVOLUTION", "DECONVOLUTION", "MATRIX_MULTIPLY"}
_SKIPPED = {"CONSTANT"}  # weights and scales, not work
_QDQ = {"QUANTIZE", "DEQUANTIZE", "DYNAMIC_QUANTIZE"}
_DTYPES = {"FLOAT": "fp32", "HALF": "fp16", "BF16": "bf16", "INT8": "int8"}


@dataclass(frozen=True)
class LayerInfo:
    """One network layer: its name, TensorRT layer type and the precision it is expected to run in."""

    name: str
    type: str
    precision: str  # one of PRECISIONS, or "qdq" for Quantize/Dequantize layers
    output_dtypes: tuple[str, ...]


@dataclass
class LayerReport:
    """Per-layer list plus counts; `engine_layers` is filled from EngineInspector where a GPU exists."""

    source: str  # "network" (CPU) or "network+inspector" (GPU)
    layers: list[LayerInfo] = field(default_factory=list)
    int8_tensors: int = 0
    engine_layers: list[dict[str, Any]] | None = None
    inspector_note: str = ""

    @property
    def counts(self) -> dict[str, int]:
        """Layers per precision (Q/DQ layers listed as "qdq"; constants excluded)."""
        counts = Counter(layer.precision for layer in self.layers)
        return {key: counts[key] for key in (*PRECISIONS, "qdq") if counts[key]}

    @property
    def engine_counts(self) -> dict[str, int] | None:
        """Built-engine layers per precision, from EngineInspector (None without a GPU)."""
        if self.engine_layers is None:
            return None
        counts = Counter(layer["precision"] for layer in self.engine_layers)
        return {key: counts[key] for key in PRECISIONS if counts[key]}

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "counts": self.counts,
            "int8_tensors": self.int8_tensors,
            "by_type": self.by_type(),
            "layers": [vars(layer) | {"output_dtypes": list(layer.output_dtypes)} for layer in self.layers],
            "engine_counts": self.engine_counts,
            "engine_layers": self.engine_layers,
            "inspector_note": self.inspector_note,
        }

    def by_type(self) -> dict[str, dict[str, int]]:
        """Counts per layer type and precision, e.g. {"CONVOLUTION": {"int8": 40}}."""
        table: dict[str, Counter[str]] = {}
        for layer in self.layers:
            table.setdefault(layer.type, Counter())[layer.precision] += 1
        return {kind: dict(counter) for kind, counter in sorted(table.items())}


def _enum_name(value: Any) -> str:
    return str(getattr(value, "name", value)).split(".")[-1]


def network_report(network: Any) -> LayerReport:
    """Report from a parsed TensorRT INetworkDefinition (works without a GPU)."""
    producers: dict[str, str] = {}
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        for out in range(layer.num_outputs):
            producers[layer.get_output(out).name] = _enum_name(layer.type)
    report = LayerReport(source="network")
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        kind = _enum_name(layer.type)
        dtypes = tuple(_enum_name(layer.get_output(out).dtype) for out in range(layer.num_outputs))
        report.int8_tensors += sum(dtype == "INT8" for dtype in dtypes)
        if kind in _SKIPPED:
            continue
        report.layers.append(LayerInfo(layer.name, kind, _layer_precision(layer, kind, dtypes, producers), dtypes))
    return report


def _layer_precision(layer: Any, kind: str, dtypes: tuple[str, ...], producers: dict[str, str]) -> str:
    if kind in _QDQ:
        return "qdq"
    if kind in _COMPUTE:
        # a conv whose kernel is a plain weight (one input) has float weights, so it cannot run INT8
        operands = [layer.get_input(i) for i in range(2)] if layer.num_inputs >= 2 else []
        if operands and all(t is not None and producers.get(t.name) == "DEQUANTIZE" for t in operands):
            return "int8"
    return _DTYPES.get(dtypes[0], "other") if dtypes else "other"


def inspector_layers(engine_json: str) -> list[dict[str, Any]]:
    """Per-layer name, type, precision and tactic from EngineInspector's JSON (DETAILED verbosity)."""
    layers = json.loads(engine_json).get("Layers", [])
    rows = []
    for layer in layers:
        if not isinstance(layer, dict):  # LAYER_NAMES_ONLY verbosity gives bare strings
            rows.append({"name": str(layer), "type": "?", "precision": "other", "tactic": ""})
            continue
        tensors = [*layer.get("Inputs", []), *layer.get("Outputs", [])]
        formats = [str(t.get("Format/Datatype", "")) for t in tensors if isinstance(t, dict)]
        rows.append(
            {
                "name": str(layer.get("Name", "")),
                "type": str(layer.get("LayerType", "")),
                "precision": format_precision(formats[0]) if formats else "other",
                "tactic": str(layer.get("TacticName", layer.get("TacticValue", ""))),
            }
        )
    return rows


def format_precision(text: str) -> str:
    """Map an EngineInspector "Format/Datatype" string ("... Int8 format", "Row major linear FP16") to a precision."""
    lowered = text.lower()
    if "int8" in lowered:
        return "int8"
    if "fp16" in lowered or "half" in lowered:
        return "fp16"
    if "bf16" in lowered:
        return "bf16"
    if "fp32" in lowered or "float" in lowered:
        return "fp32"
    return "other"


def format_table(report: LayerReport) -> str:
    """A short text table: layer types x precisions, then totals."""
    columns = [p for p in (*PRECISIONS, "qdq") if report.counts.get(p)]
    by_type = report.by_type()
    width = max([len("layer type"), *(len(kind) for kind in by_type)])
    lines = [f"{'layer type':<{width}}  " + "  ".join(f"{c:>5}" for c in columns)]
    for kind, counts in by_type.items():
        lines.append(f"{kind:<{width}}  " + "  ".join(f"{counts.get(c, 0):>5}" for c in columns))
    lines.append(f"{'total':<{width}}  " + "  ".join(f"{report.counts.get(c, 0):>5}" for c in columns))
    if report.engine_counts is not None:
        built = ", ".join(f"{k} {v}" for k, v in report.engine_counts.items())
        lines.append(f"built engine (EngineInspector): {built}")
    elif report.inspector_note:
        lines.append(report.inspector_note)
    return "\n".join(lines)
