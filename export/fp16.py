"""FP16 conversion of a chosen set of nodes, with explicit Casts at every FP32/FP16 boundary.

Only the body (encoder, bottleneck, decoder) runs in FP16; graph IO, pre-processing and the
scoring tail (distance maps, blur, top-k) stay FP32 (see `regions`). Each converted node reads
FP16 initializers (copied, so FP32 users keep theirs) and every tensor that crosses a boundary
gets one Cast, so no node ever sees mixed float types (the failure mode of onnxconverter-common
that DESIGN.md records).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from lineside.errors import missing_extra

# Inputs that must stay float32 whatever the data type (Resize roi / scales).
_KEEP_FP32_INPUTS = {"Resize": {1, 2}}


def _float_tensors(model: Any) -> set[str]:
    import onnx

    float_type = onnx.TensorProto.FLOAT
    names = {i.name for i in model.graph.initializer if i.data_type == float_type}
    for info in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        if info.type.tensor_type.elem_type == float_type:
            names.add(info.name)
    return names


class _Converter:
    """Rewrites one graph in place; see `convert_to_fp16`."""

    def __init__(self, model: Any, fp16_nodes: frozenset[str]) -> None:
        import onnx

        self.onnx = onnx
        self.graph = model.graph
        self.fp16_nodes = fp16_nodes
        self.floats = _float_tensors(model)
        self.initializers = {i.name: i for i in self.graph.initializer}
        self.constants = {n.output[0]: n for n in self.graph.node if n.op_type == "Constant"}
        self.cache: dict[tuple[str, int], str] = {}
        self.new_nodes: list[Any] = []

    def _half_constant(self, name: str) -> str:
        key = (name, self.onnx.TensorProto.FLOAT16)
        if key not in self.cache:
            source = self.initializers.get(name)
            if source is None:
                source = next(a.t for a in self.constants[name].attribute if a.name == "value")
            array = self.onnx.numpy_helper.to_array(source).astype(np.float16)
            self.graph.initializer.append(self.onnx.numpy_helper.from_array(array, f"{name}__fp16"))
            self.cache[key] = f"{name}__fp16"
        return self.cache[key]

    def _cast(self, name: str, to: int, suffix: str) -> str:
        key = (name, to)
        if key not in self.cache:
            out = f"{name}__{suffix}"
            self.new_nodes.append(self.onnx.helper.make_node("Cast", [name], [out], name=f"{out}_cast", to=to))
            self.cache[key] = out
        return self.cache[key]

    def convert(self) -> None:
        half, single = self.onnx.TensorProto.FLOAT16, self.onnx.TensorProto.FLOAT
        half_outputs: set[str] = set()
        for node in self.graph.node:
            if node.name not in self.fp16_nodes or node.op_type == "Constant":
                continue
            skip = _KEEP_FP32_INPUTS.get(node.op_type, set())
            for index, name in enumerate(node.input):
                if not name or index in skip or name not in self.floats or name in half_outputs:
                    continue
                if name in self.initializers or name in self.constants:
                    node.input[index] = self._half_constant(name)
                else:
                    node.input[index] = self._cast(name, half, "fp16")
            for attr in node.attribute:
                if node.op_type == "Cast" and attr.name == "to" and attr.i == single:
                    attr.i = half
                if node.op_type == "ConstantOfShape" and attr.name == "value" and attr.t.data_type == single:
                    value = self.onnx.numpy_helper.to_array(attr.t).astype(np.float16)
                    attr.t.CopyFrom(self.onnx.numpy_helper.from_array(value))
            half_outputs.update(out for out in node.output if out in self.floats or node.op_type == "Cast")
        self._restore_fp32_consumers(half_outputs, single)

    def _restore_fp32_consumers(self, half_outputs: set[str], single: int) -> None:
        for node in self.graph.node:
            if node.name in self.fp16_nodes:
                continue
            for index, name in enumerate(node.input):
                if name in half_outputs:
                    node.input[index] = self._cast(name, single, "fp32")
        graph_outputs = {o.name for o in self.graph.output}
        for node in self.graph.node:
            for index, name in enumerate(node.output):
                if name in half_outputs and name in graph_outputs:
                    node.output[index] = f"{name}__fp16out"
                    self.new_nodes.append(
                        self.onnx.helper.make_node("Cast", [node.output[index]], [name], name=f"{name}_cast", to=single)
                    )


def convert_to_fp16(model: Any, fp16_nodes: frozenset[str]) -> Any:
    """Return a copy of a shape-inferred `model` with `fp16_nodes` computing in FP16; IO stays FP32."""
    try:
        import onnx
    except ImportError as exc:
        raise missing_extra("onnx", "export") from exc
    converted = onnx.ModelProto()
    converted.CopyFrom(model)
    converter = _Converter(converted, fp16_nodes)
    converter.convert()
    converted.graph.node.extend(converter.new_nodes)
    _drop_unused_constants(converted.graph)
    _topological_sort(converted.graph)
    del converted.graph.value_info[:]
    used = {name for node in converted.graph.node for name in node.input}
    kept = [init for init in converted.graph.initializer if init.name in used]
    del converted.graph.initializer[:]
    converted.graph.initializer.extend(kept)
    return onnx.shape_inference.infer_shapes(converted, check_type=True, strict_mode=True)


def _drop_unused_constants(graph: Any) -> None:
    """Remove Constant nodes whose FP32 value was replaced by an FP16 copy everywhere."""
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [node for node in graph.node if node.op_type != "Constant" or node.output[0] in used]
    del graph.node[:]
    graph.node.extend(kept)


def _topological_sort(graph: Any) -> None:
    """Re-order nodes so every input is produced before it is read (Casts were appended at the end)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    waiting: dict[str, list[int]] = defaultdict(list)
    nodes = list(graph.node)
    missing = [sum(name not in available for name in set(node.input)) for node in nodes]
    for index, node in enumerate(nodes):
        for name in set(node.input):
            if name not in available:
                waiting[name].append(index)
    ready = [i for i, count in enumerate(missing) if count == 0]
    ordered: list[Any] = []
    while ready:
        index = ready.pop(0)
        ordered.append(nodes[index])
        for out in nodes[index].output:
            for consumer in waiting.pop(out, []):
                missing[consumer] -= 1
                if missing[consumer] == 0:
                    ready.append(consumer)
    if len(ordered) != len(nodes):
        raise ValueError("graph has a cycle or a dangling input after FP16 conversion")
    del graph.node[:]
    graph.node.extend(ordered)
