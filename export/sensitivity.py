"""Which parts of the network suffer most from INT8: leave-one-group-out on the anomaly map.

Quantizable nodes are grouped by their module scope (e.g. one encoder block, one decoder layer),
and neighbouring scopes are merged down to at most `MAX_GROUPS` groups.
For each group, the graph is quantized with only that group kept float, and the anomaly maps of a
few calibration images are compared with FP32. The groups whose float-keeping removes the most
error come first: that is the order the INT8 fallback un-quantizes them in. The anomaly map is
what the line decides on, so it is measured directly rather than through per-layer noise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lineside.export.ort_run import Outputs, cpu_session, run_images

GROUP_DEPTH = 4  # scope components kept: /model/encoder/blocks.3/blocks.3.1 -> one group per block
MAX_GROUPS = 12  # consecutive scopes are merged down to this many groups: one probe export each


def _scope(name: str) -> str | None:
    parts = [p for p in name.split("/") if p][:-1]  # drop the op name itself
    return "/" + "/".join(parts[:GROUP_DEPTH]) if parts else None


def node_groups(model: Any, nodes: list[str]) -> dict[str, list[str]]:
    """Group `nodes` by module scope; unscoped nodes (renamed by the simplifier) join their producer's group."""
    producers = {out: n for n in model.graph.node for out in n.output}
    chosen = set(nodes)
    scope_of: dict[str, str] = {}
    for node in model.graph.node:
        scope = _scope(node.name)
        if scope is None:
            producer = next((producers[i] for i in node.input if i in producers), None)
            scope = scope_of.get(producer.name, "/other") if producer is not None else "/other"
        scope_of[node.name] = scope
    scopes: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.name in chosen:
            scopes.setdefault(scope_of[node.name], []).append(node.name)
    return _merge_consecutive(scopes, MAX_GROUPS)


def _merge_consecutive(scopes: dict[str, list[str]], limit: int) -> dict[str, list[str]]:
    """Merge neighbouring scopes (graph order) into at most `limit` groups of similar size."""
    target = sum(len(members) for members in scopes.values()) / limit
    groups: dict[str, list[str]] = {}
    first, members = "", []
    for scope, nodes in scopes.items():
        first, members = first or scope, members + nodes
        if len(members) >= target:
            groups[first if first == scope else f"{first} .. {scope}"] = members
            first, members = "", []
    if members:
        groups[first] = members
    return groups


def map_error(out: Outputs, reference: Outputs) -> float:
    """Relative L2 error of the anomaly maps against the reference."""
    return float(np.linalg.norm(out.maps - reference.maps)) / max(float(np.linalg.norm(reference.maps)), 1e-12)


def rank_groups(
    fp32_path: Path,
    groups: dict[str, list[str]],
    quantize_without: Callable[[list[str]], Path],
    images: list[np.ndarray],
    *,
    threads: int = 2,
) -> list[tuple[str, float]]:
    """(group, error removed by keeping it float) for every group, most helpful first.

    `quantize_without(extra_excluded)` writes a quantized graph and returns its path.
    """
    reference = run_images(cpu_session(fp32_path, threads=threads), images)

    def error(excluded: list[str]) -> float:
        return map_error(run_images(cpu_session(quantize_without(excluded), threads=threads), images), reference)

    baseline = error([])
    gains = [(name, baseline - error(members)) for name, members in groups.items()]
    return sorted(gains, key=lambda item: -item[1])
