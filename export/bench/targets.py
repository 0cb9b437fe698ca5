"""From command-line targets to the variants to time: bundles, a run (exported first), backends that apply.

Targets are bundle folders of one model and/or one checkpoint (RUN/ or RUN/model.pt). A checkpoint
alone is exported at every requested precision (a refused precision is recorded and the rest go on);
next to bundles it adds torch eager. Backends not asked for explicitly are used where they apply, and
where one cannot run here the reason is recorded, never dropped silently.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lineside.bench_options import BenchOptions
from lineside.bundle import Bundle, load_bundle
from lineside.errors import LinesideError
from lineside.export.bench.variants import BackendSpec, Variant, variant

ENGINE_NAME = "model.engine"  # where `lineside build` writes and the runtime looks


@dataclass
class Plan:
    """The variants to time, what was skipped and why, and the common input size."""

    variants: list[Variant] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    input_size: tuple[int, int] = (0, 0)
    bundles: list[Bundle] = field(default_factory=list)

    def skip(self, what: str, reason: str, say: Callable[[str], None]) -> None:
        self.skipped.append({"what": what, "reason": reason})
        say(f"skipped {what}: {reason}")


def checkpoint_of(target: Path) -> Path | None:
    """RUN/model.pt for a run folder or a .pt file; None for anything else (a bundle)."""
    if target.is_file() and target.suffix == ".pt":
        return target
    if target.is_dir() and (target / "model.pt").is_file() and not (target / "manifest.json").exists():
        return target / "model.pt"
    return None


def split_targets(targets: list[Path]) -> tuple[Path | None, list[Path]]:
    """(checkpoint or None, bundle folders); at most one checkpoint."""
    for target in targets:
        if not target.exists():
            raise LinesideError(f"{target} not found: pass bundle folders and/or a run folder (RUN/model.pt)")
    checkpoints = [c for c in map(checkpoint_of, targets) if c is not None]
    if len(checkpoints) > 1:
        raise LinesideError("pass at most one run folder / model.pt: bench compares the variants of one model")
    bundles = [t for t in targets if checkpoint_of(t) is None]
    return (checkpoints[0] if checkpoints else None), bundles


def export_run(
    checkpoint: Path, options: BenchOptions, folder: Path, plan: Plan, say: Callable[[str], None]
) -> list[Path]:
    """Export `checkpoint` at each precision into `folder`; a refused precision is recorded, the rest go on."""
    from lineside.export.pipeline import ExportOptions, export_bundle

    if "int8" in options.precisions and options.data is None:
        raise LinesideError("benchmarking int8 from a run exports it first, which needs --data DIR")
    written = []
    for precision in options.precisions:
        say(f"exporting {precision} -> {folder / precision}")
        export = ExportOptions(
            out=folder / precision,
            precision=precision,
            data=options.data,
            eval_limit=options.eval_limit,
            threads=options.threads,
            force=True,
        )
        try:
            export_bundle(checkpoint, export)
        except (LinesideError, RuntimeError) as exc:  # export refuses a precision that fails its accuracy gate
            plan.skip(f"{precision} export", f"refused: {exc}", say)
            continue
        written.append(folder / precision)
    return written


def _wanted(backend: str, backends: tuple[str, ...] | None) -> bool:
    return backends is None or backend in backends


def _ort_variants(bundle: Bundle, threads: int, stack: contextlib.ExitStack) -> list[Variant]:
    manifest = bundle.manifest
    spec = BackendSpec("ort", str(bundle.model_path), threads)
    if manifest.precision == "int8" and manifest.cpu_model_file:
        cpu_spec = BackendSpec("ort", str(bundle.file(manifest.cpu_model_file)), threads)
        return [
            variant(manifest.model, "int8", cpu_spec, stack, "u8s8"),
            variant(manifest.model, "int8", spec, stack, "s8s8"),
        ]
    return [variant(manifest.model, manifest.precision, spec, stack)]


def _tensorrt_variant(
    bundle: Bundle, threads: int, explicit: bool, plan: Plan, stack: contextlib.ExitStack, say: Callable[[str], None]
) -> None:
    manifest = bundle.manifest
    what = f"{manifest.model} tensorrt {manifest.precision}"
    engine = bundle.path / ENGINE_NAME
    if not engine.is_file():
        if explicit:
            raise LinesideError(f"no TensorRT engine {engine}: build it with `lineside build {bundle.path}`")
        plan.skip(what, f"no {ENGINE_NAME} in {bundle.path} (`lineside build {bundle.path}` on the target)", say)
        return
    spec = BackendSpec("tensorrt", str(engine), threads, bundle=str(bundle.path))
    try:
        plan.variants.append(variant(manifest.model, manifest.precision, spec, stack))
    except LinesideError as exc:  # no GPU / TensorRT here: the engine exists but cannot run on this machine
        if explicit:
            raise
        plan.skip(what, str(exc), say)


def bundle_variants(
    bundles: list[Bundle],
    backends: tuple[str, ...] | None,
    threads: int,
    plan: Plan,
    stack: contextlib.ExitStack,
    say: Callable[[str], None],
) -> None:
    """ORT variants (both INT8 flavours) and TensorRT engines of `bundles`, added to `plan`."""
    ort_here = importlib.util.find_spec("onnxruntime") is not None
    if backends is not None and "ort" in backends and not ort_here:
        raise LinesideError("onnxruntime is not installed: pip install 'lineside[ort]', or --backends tensorrt")
    if backends is None and not ort_here:
        plan.skip("ort", "onnxruntime is not installed (pip install 'lineside[ort]')", say)
    for bundle in bundles:
        if _wanted("ort", backends) and ort_here:
            plan.variants += _ort_variants(bundle, threads, stack)
        if _wanted("tensorrt", backends):
            _tensorrt_variant(bundle, threads, backends is not None, plan, stack, say)


def load_bundles(paths: list[Path], precisions: tuple[str, ...]) -> list[Bundle]:
    """Verified bundles with a precision in `precisions`, all of one input size."""
    bundles = [b for b in map(load_bundle, paths) if b.manifest.precision in precisions]
    if not bundles:
        raise LinesideError(f"no bundle among the targets has a precision in --precisions {','.join(precisions)}")
    models = sorted({b.manifest.model for b in bundles})
    sizes = sorted({tuple(b.manifest.input_size) for b in bundles})
    if len(models) > 1 or len(sizes) > 1:
        raise LinesideError(f"bundles of {models} at sizes {sizes}: bench the bundles of one model together")
    precisions_seen = [b.manifest.precision for b in bundles]
    repeated = sorted({p for p in precisions_seen if precisions_seen.count(p) > 1})
    if repeated:
        raise LinesideError(f"more than one {'/'.join(repeated)} bundle: bench one bundle per precision")
    return bundles
