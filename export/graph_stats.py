"""What a graph computes in which precision: node counts for the bundle report."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

_ELEM = {1: "float32", 10: "float16", 3: "int8", 2: "uint8", 6: "int32", 7: "int64", 9: "bool"}
_COMPUTE = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})


def precision_counts(path: str | Path) -> dict[str, object]:
    """Node totals, Q/DQ counts, compute ops (Conv/MatMul/Gemm) by precision, and output dtypes of all nodes.

    A compute op counts as int8 when its data input comes from a DequantizeLinear (explicit Q/DQ:
    TensorRT fuses the pair into an INT8 kernel), else as the dtype of its output.
    """
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    graph = model.graph
    dtype = {i.name: i.data_type for i in graph.initializer}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        dtype[info.name] = info.type.tensor_type.elem_type
    dequantized = {out for n in graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    outputs: Counter[str] = Counter()
    compute: Counter[str] = Counter()
    for node in graph.node:
        out_type = _ELEM.get(dtype.get(node.output[0], 0), "other") if node.output else "none"
        outputs[out_type] += 1
        if node.op_type in _COMPUTE:
            compute["int8" if node.input[0] in dequantized else out_type] += 1
    ops = Counter(n.op_type for n in graph.node)
    return {
        "nodes": len(graph.node),
        "quantize_linear": ops.get("QuantizeLinear", 0),
        "dequantize_linear": ops.get("DequantizeLinear", 0),
        "compute_ops_by_precision": dict(compute),
        "node_outputs_by_dtype": dict(outputs),
    }
