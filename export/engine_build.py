"""Build a TensorRT / TensorRT-RTX engine from a bundle's ONNX, against the API both libraries share.

`tensorrt` (>= 8.5; Jetson JetPack 6 ships 10.3) is tried first, then TensorRT-RTX
(`tensorrt_rtx_bindings`), which also builds ahead of time on a CPU-only machine for a named
compute capability. Networks are strongly typed (precision comes from the ONNX: FP16 casts,
INT8 Q/DQ); only TensorRT 8.x, which has no strongly typed networks, gets FP16/INT8 builder flags.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lineside.atomic import atomic_write_bytes, atomic_write_json
from lineside.bundle import Bundle, TensorSpec
from lineside.cuda_device import current_gpu
from lineside.engine_file import (
    DEFAULT_ENGINE_NAME,
    TARGETS,
    EngineMetadata,
    import_tensorrt,
    write_engine,
    write_plain,
)
from lineside.errors import LinesideError
from lineside.export.engine_report import LayerReport, inspector_layers, network_report
from lineside.export.engine_trt import (
    NO_GPU_FOR_TENSORRT,
    BuildLogger,
    build_progress,
    configure_target,
    dtype_name,
    parse_onnx,
)


@dataclass(frozen=True)
class BuildOptions:
    """How to build; None means the library's default."""

    target: str | None = None  # "sm86": TensorRT-RTX ahead-of-time build for that compute capability
    workspace_mb: int | None = None
    opt_level: int | None = None  # builder optimisation level 0..5
    timing_cache: Path | None = None
    dla_core: int | None = None  # Jetson DLA core (TensorRT only)
    max_batch: int | None = None  # profile 1..max_batch for a dynamic-batch bundle
    library: str | None = None  # "tensorrt" or "tensorrt-rtx"; None: TensorRT first

    def to_dict(self) -> dict[str, Any]:
        raw = {k: getattr(self, k) for k in self.__dataclass_fields__}
        raw["timing_cache"] = None if self.timing_cache is None else str(self.timing_cache)
        return raw


@dataclass
class BuiltEngine:
    """A serialized plan, its metadata (plan hash filled in when written) and the layer report."""

    plan: bytes
    metadata: EngineMetadata
    report: LayerReport
    warnings: list[str] = field(default_factory=list)


def validate_options(options: BuildOptions) -> None:
    """Range checks that need no library."""
    if options.target is not None and options.target not in TARGETS:
        raise LinesideError(f"unknown --target {options.target!r}: choose one of {', '.join(TARGETS)}")
    if options.workspace_mb is not None and options.workspace_mb <= 0:
        raise LinesideError(f"--workspace must be a positive number of MB, got {options.workspace_mb}")
    if options.opt_level is not None and not 0 <= options.opt_level <= 5:
        raise LinesideError(f"--opt-level must be 0..5, got {options.opt_level}")
    if options.dla_core is not None and options.dla_core < 0:
        raise LinesideError(f"--dla-core must be 0 or more, got {options.dla_core}")
    if options.max_batch is not None and options.max_batch < 1:
        raise LinesideError(f"--max-batch must be 1 or more, got {options.max_batch}")
    if options.target is not None and options.library == "tensorrt":
        raise LinesideError("--target needs TensorRT-RTX (ahead-of-time build); TensorRT builds for the GPU it runs on")


def build_engine(bundle: Bundle, options: BuildOptions) -> BuiltEngine:
    """Parse the bundle's engine ONNX, configure the builder and build a serialized plan."""
    validate_options(options)
    library = options.library or ("tensorrt-rtx" if options.target else None)
    trt, name, version = import_tensorrt(library)
    gpu = current_gpu()
    if name == "tensorrt" and gpu is None:  # TensorRT's builder needs the GPU it builds for
        raise LinesideError(NO_GPU_FOR_TENSORRT)
    logger = BuildLogger(trt)
    builder = trt.Builder(logger.native)
    if builder is None:
        raise LinesideError(f"{name} could not create a builder: {logger.summary()}")
    network, strongly_typed = _create_network(trt, builder)
    parser = parse_onnx(trt, network, logger, bundle.model_path)  # owns the weights until the build ends
    config = builder.create_builder_config()
    warnings: list[str] = []
    gpu_name, capabilities = configure_target(trt, name, config, options.target, gpu)
    build_flags = _configure(trt, builder, config, network, options, bundle.manifest.precision, strongly_typed)
    if options.dla_core is not None:
        _configure_dla(trt, name, builder, config, options.dla_core, bundle.manifest.precision)
    cache = _load_timing_cache(config, options.timing_cache, name, warnings)
    start = time.perf_counter()
    with build_progress(trt, config):
        serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise LinesideError(f"engine build failed for {bundle.model_path}: {logger.summary()}{_hint(logger.errors)}")
    if cache is not None and options.timing_cache is not None:
        atomic_write_bytes(options.timing_cache, bytes(config.get_timing_cache().serialize()))
    plan = bytes(serialized)
    report = network_report(network)
    del parser  # the network no longer needs the weights it owns
    warnings += _precision_warnings(bundle.manifest.precision, report)
    _add_inspector(trt, plan, report, logger)
    metadata = EngineMetadata(
        library=name,
        library_version=version,
        compute_capabilities=capabilities,
        gpu_name=gpu_name,
        precision=bundle.manifest.precision,
        model=bundle.manifest.model,
        inputs=_io_specs(network, inputs=True),
        outputs=_io_specs(network, inputs=False),
        bundle_model_sha256=bundle.manifest.model_sha256,
        build_options=options.to_dict() | {"strongly_typed": strongly_typed, "builder_flags": build_flags},
        layer_counts=report.counts,
        build_seconds=round(seconds, 3),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return BuiltEngine(plan=plan, metadata=metadata, report=report, warnings=warnings + logger.warnings)


def _precision_warnings(precision: str, report: LayerReport) -> list[str]:
    """Say loudly when the network does not run in the precision the bundle claims."""
    expected = {"fp16": "fp16", "int8": "int8"}.get(precision)
    if expected is None or report.counts.get(expected, 0) > 0:
        return []
    return [f"the bundle says {precision} but no layer of its network runs {expected}: check the export"]


def _hint(errors: list[str]) -> str:
    """What to do about build errors we know."""
    if any("FP32 GEMM is not supported" in e for e in errors):
        return " (TensorRT-RTX has no FP32 matrix multiply on Turing: build an fp16 bundle for sm75)"
    return ""


def _create_network(trt: Any, builder: Any) -> tuple[Any, bool]:
    """A strongly typed network where the library has them (TensorRT >= 9, RTX), else explicit batch (8.x)."""
    flags = trt.NetworkDefinitionCreationFlag
    if hasattr(flags, "STRONGLY_TYPED"):
        return builder.create_network(1 << int(flags.STRONGLY_TYPED)), True
    return builder.create_network(1 << int(flags.EXPLICIT_BATCH)), False


def _configure(
    trt: Any, builder: Any, config: Any, network: Any, options: BuildOptions, precision: str, strongly_typed: bool
) -> list[str]:
    """Workspace, optimisation level, profiling detail, batch profile, and 8.x precision flags."""
    if options.workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    if options.opt_level is not None:
        if not hasattr(config, "builder_optimization_level"):
            raise LinesideError("--opt-level needs TensorRT >= 8.6: drop it or upgrade JetPack")
        config.builder_optimization_level = options.opt_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # EngineInspector per-layer formats
    _batch_profile(builder, config, network, options.max_batch)
    flags: list[str] = []
    if not strongly_typed:  # TensorRT 8.x: precision from builder flags; Q/DQ scales come from the graph
        wanted = {"fp16": ["FP16"], "int8": ["INT8", "FP16"]}.get(precision, [])
        for flag in wanted:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        flags = wanted
    return flags


def _batch_profile(builder: Any, config: Any, network: Any, max_batch: int | None) -> None:
    image = network.get_input(0)
    shape = tuple(image.shape)
    dynamic = shape[0] == -1
    if dynamic and max_batch is None:
        raise LinesideError("the bundle has a dynamic batch: pass --max-batch N for the engine's batch range 1..N")
    if not dynamic and max_batch is not None:
        raise LinesideError(
            f"the bundle has a static batch of {shape[0]}: drop --max-batch or export with dynamic batch"
        )
    if not dynamic:
        return
    if any(dim == -1 for dim in shape[1:]):
        raise LinesideError(f"only the batch axis may be dynamic, the bundle input is {shape}: re-export it")
    profile = builder.create_optimization_profile()
    rest = shape[1:]
    profile.set_shape(image.name, (1, *rest), (max_batch, *rest), (max_batch, *rest))
    config.add_optimization_profile(profile)


def _configure_dla(trt: Any, library: str, builder: Any, config: Any, core: int, precision: str) -> None:
    if library != "tensorrt":
        raise LinesideError(
            "--dla-core needs TensorRT on a Jetson with DLA (AGX Orin, Orin NX, Xavier); TensorRT-RTX has none"
        )
    available = int(builder.num_DLA_cores)
    if core >= available:
        raise LinesideError(
            f"--dla-core {core}: this device has {available} DLA cores (Jetson AGX Orin / Orin NX have 2)"
        )
    if precision == "fp32":
        raise LinesideError("DLA runs FP16 and INT8 only: build an fp16 or int8 bundle for --dla-core")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def _load_timing_cache(config: Any, path: Path | None, library: str, warnings: list[str]) -> Any:
    if path is None:
        return None
    if library == "tensorrt-rtx":
        warnings.append(f"--timing-cache {path} ignored: TensorRT-RTX has no timing cache (it tunes at run time)")
        return None
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, False):
        raise LinesideError(f"timing cache {path} was made by another GPU or TensorRT version: delete it and rebuild")
    return cache


def _add_inspector(trt: Any, plan: bytes, report: LayerReport, logger: BuildLogger) -> None:
    """Add EngineInspector's per-layer info where the plan can be deserialised (needs a GPU)."""
    if current_gpu() is None:
        report.inspector_note = (
            "no GPU here: per-layer tactics need EngineInspector on a GPU (counts are from the network)"
        )
        return
    with logger.quiet():
        engine = trt.Runtime(logger.native).deserialize_cuda_engine(plan)
    if engine is None:
        report.inspector_note = "EngineInspector unavailable: this GPU cannot load the plan (built for another target)"
        return
    inspector = engine.create_engine_inspector()
    report.engine_layers = inspector_layers(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    report.source = "network+inspector"


def _io_specs(network: Any, *, inputs: bool) -> tuple[TensorSpec, ...]:
    count = network.num_inputs if inputs else network.num_outputs
    tensors = [network.get_input(i) if inputs else network.get_output(i) for i in range(count)]
    return tuple(
        TensorSpec(name=t.name, shape=tuple(int(d) if d >= 0 else "batch" for d in t.shape), dtype=dtype_name(t.dtype))
        for t in tensors
    )


@dataclass(frozen=True)
class SavedEngine:
    """Where `save_engine` wrote things."""

    engine: Path
    layers: Path
    plan: Path | None = None
    sidecar: Path | None = None


def default_engine_path(bundle: Bundle) -> Path:
    """BUNDLE/model.engine, where the runtime looks (not listed in the manifest, so not checksummed)."""
    return bundle.path / DEFAULT_ENGINE_NAME


def save_engine(built: BuiltEngine, out: Path, *, plain: bool = False) -> SavedEngine:
    """Write the engine file, its layer report (<out>.layers.json) and, with `plain`, a bare plan + sidecar JSON."""
    metadata = write_engine(out, built.metadata, built.plan)
    built.metadata = metadata
    layers = out.with_suffix(".layers.json")
    atomic_write_json(layers, {"engine": out.name, "target": metadata.target} | built.report.to_dict())
    if not plain:
        return SavedEngine(engine=out, layers=layers)
    plan_path = out.with_suffix(".plan")
    sidecar = write_plain(plan_path, metadata, built.plan)
    return SavedEngine(engine=out, layers=layers, plan=plan_path, sidecar=sidecar)
