"""Graph regions that decide precision: the pre-processing head, the compute body, the scoring tail.

- head: nodes not downstream of any weighted op (uint8 cast, BGR->RGB, normalisation, constants);
- tail: everything downstream of the channel-collapsing reductions that compute distances (cosine /
  MSE maps; reductions that rescale their own input, like F.normalize, are normalisation, not
  distances), widened backwards over the elementwise ops that feed them and over MatMuls against a
  constant that only the tail reads (a memory bank's x.b), so distance maps, upsampling, blur and
  top-k scoring stay FP32;
- body: the rest (encoder, bottleneck, decoder), where FP16 and INT8 apply.
The rule is structural, so it needs no knowledge of how a model names its modules.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
_REDUCE_OPS = frozenset({"ReduceSum", "ReduceMean", "ReduceL2", "ReduceSumSquare"})
_DISTANCE_OPS = frozenset({"Mul", "Sub", "Pow", "Abs"})  # a*b, (a-b)**2, |a-b| feeding a reduction
_WIDEN_OPS = _DISTANCE_OPS | {"Transpose"}  # ... and the channels-last permutes of the compared maps
_WIDEN_DEPTH = 2
_NORM_DEPTH = 5
_FEEDER_DEPTH = 6


@dataclass(frozen=True)
class Regions:
    """Node names per region, plus the first weighted op (kept out of INT8)."""

    head: frozenset[str]
    body: frozenset[str]
    tail: frozenset[str]
    first_weighted: str | None
    tail_feeders: frozenset[str] = frozenset()  # body nodes that compute the tensors the distances compare


def ensure_node_names(model: Any) -> None:
    """Give every unnamed node a unique name (quantizers and block lists address nodes by name)."""
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_auto_{index}"
        seen.add(node.name)


def _rank_of(model: Any) -> dict[str, int]:
    ranks: dict[str, int] = {}
    for info in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        if info.type.tensor_type.HasField("shape"):
            ranks[info.name] = len(info.type.tensor_type.shape.dim)
    return ranks


def _constant_ints(name: str, model: Any) -> list[int] | None:
    """Values of an int initializer or Constant output (e.g. ReduceSum's axes input), None if not constant."""
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return [int(v) for v in numpy_helper.to_array(init).reshape(-1)]
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            return None if value is None else [int(v) for v in numpy_helper.to_array(value).reshape(-1)]
    return None


def _channels_last(name: str, producers: dict[str, Any]) -> bool:
    """True when tensor `name` is a (B, C, H, W) map permuted to channels-last (B, H, W, C)."""
    node = producers.get(name)
    return (
        node is not None
        and node.op_type == "Transpose"
        and any(a.name == "perm" and list(a.ints) == [0, 2, 3, 1] for a in node.attribute)
    )


def _reads_channels_last(node: Any, producers: dict[str, Any]) -> bool:
    """True when a reduction reads channels-last maps, directly or through a distance op (a * b, (a - b)^2)."""
    source = producers.get(node.input[0])
    inputs = source.input if source is not None and source.op_type in _DISTANCE_OPS else [node.input[0]]
    return all(_channels_last(name, producers) for name in inputs if name in producers)


def _reduces_channels(node: Any, ranks: dict[str, int], model: Any, producers: dict[str, Any]) -> bool:
    """True for a reduction over the channels of (B, C, H, W) or its channels-last permutation, or of (B, N, C)."""
    if node.op_type not in _REDUCE_OPS:
        return False
    rank = ranks.get(node.input[0])
    axes = next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = _constant_ints(node.input[1], model)  # ReduceSum-13 and every Reduce op from opset 18
    if axes is None or rank is None:
        return False
    normalised = sorted(a % rank for a in axes)
    if rank == 4 and normalised == [3]:
        return _reads_channels_last(node, producers)
    return (rank == 4 and normalised == [1]) or (rank == 3 and normalised == [2])


def _is_normalisation(node: Any, producers: dict[str, Any], consumers: dict[str, list[Any]]) -> bool:
    """True when the reduction rescales its own input (x / ||x||, x * rsqrt(mean(x^2))): not a distance."""
    bases = {node.input[0]}
    producer = producers.get(node.input[0])
    if producer is not None and producer.op_type in ("Mul", "Pow") and producer.input[0] in producer.input[1:]:
        bases.add(producer.input[0])
    if producer is not None and producer.op_type == "Pow":
        bases.add(producer.input[0])
    frontier, seen = [node], set[str]()
    for _ in range(_NORM_DEPTH):
        frontier = [c for n in frontier for out in n.output for c in consumers.get(out, []) if c.name not in seen]
        seen.update(n.name for n in frontier)
        if any(n.op_type in ("Div", "Mul") and bases & set(n.input) for n in frontier):
            return True
    return False


def _descendants(starts: list[Any], consumers: dict[str, list[Any]]) -> set[str]:
    seen: set[str] = set()
    stack = list(starts)
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        for out in node.output:
            stack.extend(consumers.get(out, []))
    return seen


def find_regions(model: Any) -> Regions:
    """Split a shape-inferred, topologically sorted graph into head / body / tail (see module doc)."""
    ensure_node_names(model)
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    weighted = [n for n in graph.node if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in initializers]
    after_weights = _descendants(weighted, consumers)
    head = {n.name for n in graph.node if n.name not in after_weights}
    ranks = _rank_of(model)
    reductions = [
        n
        for n in graph.node
        if n.name in after_weights
        and _reduces_channels(n, ranks, model, producers)
        and not _is_normalisation(n, producers, consumers)
    ]
    tail = _descendants(reductions, consumers)
    constants = initializers | {out for n in graph.node if n.op_type == "Constant" for out in n.output}
    tail |= _constant_products_into(tail, graph.node, constants, consumers)
    frontier = [(node, 0) for node in reductions]
    while frontier:  # widen backwards over the elementwise ops that compute the distance
        node, depth = frontier.pop()
        for name in node.input:
            producer = producers.get(name)
            if producer is not None and producer.op_type in _WIDEN_OPS and depth < _WIDEN_DEPTH:
                tail.add(producer.name)
                frontier.append((producer, depth + 1))
    body = {n.name for n in graph.node} - head - tail
    first = next((n.name for n in graph.node if n in weighted), None) if weighted else None
    feeders = _tail_feeders(graph.node, tail, body, producers)
    return Regions(frozenset(head), frozenset(body), frozenset(tail), first, frozenset(feeders))


def _constant_products_into(
    tail: set[str], nodes: Any, constants: set[str], consumers: dict[str, list[Any]]
) -> set[str]:
    """MatMuls with a constant operand whose output only the tail reads: x.b of ||x||^2 - 2 x.b + ||b||^2.

    Such a product is a term of the distance itself (a memory bank's nearest-neighbour search), and the
    distance is a small difference of large terms, so it belongs to the float tail.
    """
    found = set()
    for node in nodes:
        readers = [c for out in node.output for c in consumers.get(out, [])]
        if node.op_type == "MatMul" and constants & set(node.input) and readers:
            if all(c.name in tail for c in readers):
                found.add(node.name)
    return found


def _tail_feeders(nodes: Any, tail: set[str], body: set[str], producers: dict[str, Any]) -> set[str]:
    """Body nodes within `_FEEDER_DEPTH` hops before the tail, each path stopping at its first weighted op.

    These produce the encoder features and reconstructions that the distance maps compare; computing them
    in FP32 keeps FP16 rounding out of small feature distances (the last layers stay in higher precision).
    """
    feeders: set[str] = set()
    frontier = [(producers[i], 0) for n in nodes if n.name in tail for i in n.input if i in producers]
    while frontier:
        node, depth = frontier.pop()
        if node.name not in body or node.name in feeders or depth >= _FEEDER_DEPTH:
            continue
        feeders.add(node.name)
        if node.op_type not in WEIGHTED_OPS:
            frontier.extend((producers[i], depth + 1) for i in node.input if i in producers)
    return feeders
