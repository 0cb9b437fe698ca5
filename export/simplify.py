"""Graph simplification with onnxsim (onnxslim as fallback), then checker + shape inference.

timm's `tf_` EfficientNets pad 'same' dynamically, which exports as hundreds of Shape/Gather/
Concat ops; folding them with the static export size leaves plain Conv/Pad chains.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lineside.errors import LinesideError, missing_extra

log = logging.getLogger(__name__)

_PROTOBUF_LIMIT = 2 * 1024**3  # onnxsim serialises through protobuf, which caps at 2 GiB


@dataclass(frozen=True)
class SimplifyResult:
    """Which tool simplified the graph and how the node count changed."""

    tool: str
    nodes_before: int
    nodes_after: int
    fallback_reason: str | None = None


def op_histogram(path: str | Path) -> dict[str, int]:
    """Op type -> count for an ONNX file."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(Counter(node.op_type for node in model.graph.node).most_common())


@contextmanager
def _output_silenced() -> Iterator[None]:
    """Silence stdout and stderr (Python and file descriptors): onnxsim's C++ core warns once per op it
    cannot fold; its failures still raise, and the fallback logs them."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in saved:
            os.dup2(devnull, fd)
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            yield
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def _onnxsim(model: Any) -> Any:
    import onnxsim

    with _output_silenced():
        simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise RuntimeError("onnxsim's own output check failed")
    return simplified


def _onnxslim(model: Any) -> Any:
    import onnxslim

    return onnxslim.slim(model)


def check_model(model: Any) -> Any:
    """Run `onnx.checker` (full) and strict shape inference; returns the shape-inferred model."""
    import onnx

    onnx.checker.check_model(model, full_check=True)
    return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)


def simplify(src: str | Path, dst: str | Path) -> SimplifyResult:
    """Simplify `src` into `dst`: onnxsim, or onnxslim when onnxsim fails or the model is over 2 GiB."""
    try:
        import onnx
    except ImportError as exc:
        raise missing_extra("onnx", "export") from exc
    model = onnx.load(str(src))
    before = len(model.graph.node)
    reason = None
    if Path(src).stat().st_size >= _PROTOBUF_LIMIT:
        reason = "model over 2 GiB"
    else:
        try:
            simplified, tool = _onnxsim(model), "onnxsim"
        except Exception as exc:  # onnxsim raises many types (RuntimeError, onnx errors, C++ exceptions)
            reason = f"onnxsim failed: {type(exc).__name__}: {str(exc)[:200]}"
    if reason is not None:
        log.warning("simplify: %s; using onnxslim", reason)
        simplified, tool = _onnxslim(model), "onnxslim"
    try:
        checked = check_model(simplified)
    except Exception as exc:  # onnx.checker.ValidationError, InferenceError
        raise LinesideError(f"the simplified graph ({tool}) fails onnx.checker: {exc}") from exc
    onnx.save(checked, str(dst))
    return SimplifyResult(tool, before, len(checked.graph.node), reason)
