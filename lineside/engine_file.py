"""The lineside engine file: a small header with JSON metadata, then the serialized TensorRT plan.

Layout (little endian)::

    8 bytes   magic b"LSENGINE"
    4 bytes   uint32 header format version
    8 bytes   uint64 length L of the JSON metadata
    L bytes   UTF-8 JSON (EngineMetadata)
    rest      the plan exactly as TensorRT / TensorRT-RTX serialized it

The runtime reads this without TensorRT or torch, refuses a corrupt or truncated file (the
metadata holds the plan's size and sha256) and refuses an engine built for another GPU, library
version or bundle with a one-line message that says what to rebuild.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lineside import __version__
from lineside.atomic import atomic_write_bytes, atomic_write_json
from lineside.bundle import PRECISIONS, TensorSpec
from lineside.errors import LinesideError
from lineside.validate import bounded_int, finite_float, mapping, sequence, show, text

MAGIC = b"LSENGINE"
ENGINE_FORMAT = "lineside-engine"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIQ")  # magic, format version, JSON length
_MAX_JSON = 16 << 20
DEFAULT_ENGINE_NAME = "model.engine"  # BUNDLE/model.engine: the runtime's default engine
LIBRARIES = ("tensorrt", "tensorrt-rtx")
TARGETS = ("sm75", "sm80", "sm86", "sm89", "sm120", "sm121")  # TensorRT-RTX ahead-of-time compute capabilities


@dataclass(frozen=True)
class EngineMetadata:
    """What an engine was built from, with what, and for which GPU."""

    library: str  # "tensorrt" or "tensorrt-rtx"
    library_version: str
    compute_capabilities: tuple[str, ...]  # ("8.6",); empty = TensorRT-RTX portable default
    gpu_name: str | None  # the GPU TensorRT built on; None for an ahead-of-time TensorRT-RTX build
    precision: str  # the bundle's precision: fp32, fp16 or int8
    model: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    bundle_model_sha256: str
    plan_sha256: str = ""
    plan_bytes: int = 0
    build_options: dict[str, Any] = field(default_factory=dict)
    layer_counts: dict[str, int] = field(default_factory=dict)
    build_seconds: float = 0.0
    created: str = ""
    lineside_version: str = __version__
    format: str = ENGINE_FORMAT
    format_version: int = FORMAT_VERSION

    @property
    def target(self) -> str:
        """Short tag of the target: "sm86", "sm80+sm86", or "portable" (TensorRT-RTX default)."""
        if not self.compute_capabilities:
            return "portable"
        return "+".join("sm" + cc.replace(".", "") for cc in self.compute_capabilities)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EngineMetadata:
        """Parse metadata JSON; raises LinesideError on a foreign, newer or malformed header."""
        if raw.get("format") != ENGINE_FORMAT:
            raise LinesideError(f"not a lineside engine (format={show(raw.get('format'))})")
        try:
            gpu_name = raw.get("gpu_name")
            layer_counts = mapping("layer_counts", raw.get("layer_counts", {}))
            return cls(
                library=_choice("library", raw["library"], LIBRARIES),
                library_version=text("library_version", raw["library_version"], empty=False),
                compute_capabilities=tuple(
                    text("compute_capabilities", cc, empty=False)
                    for cc in sequence("compute_capabilities", raw["compute_capabilities"])
                ),
                gpu_name=None if gpu_name is None else text("gpu_name", gpu_name, empty=False),
                precision=_choice("precision", raw["precision"], PRECISIONS),
                model=text("model", raw["model"], empty=False),
                inputs=tuple(TensorSpec.from_dict(t, "inputs") for t in sequence("inputs", raw["inputs"])),
                outputs=tuple(TensorSpec.from_dict(t, "outputs") for t in sequence("outputs", raw["outputs"])),
                bundle_model_sha256=_sha256("bundle_model_sha256", raw["bundle_model_sha256"]),
                plan_sha256=_sha256("plan_sha256", raw["plan_sha256"]),
                plan_bytes=bounded_int("plan_bytes", raw["plan_bytes"], at_least=0),
                build_options=dict(mapping("build_options", raw.get("build_options", {}))),
                layer_counts={k: bounded_int("layer_counts", v, at_least=0) for k, v in layer_counts.items()},
                build_seconds=finite_float("build_seconds", raw.get("build_seconds", 0.0), at_least=0.0),
                created=text("created", raw.get("created", "")),
                lineside_version=text("lineside_version", raw.get("lineside_version", "")),
                format_version=bounded_int("format_version", raw["format_version"], at_least=1, at_most=FORMAT_VERSION),
            )
        except KeyError as exc:
            raise LinesideError(f"engine metadata is incomplete or malformed: {exc!r} (rebuild the engine)") from exc
        except LinesideError as exc:
            raise LinesideError(f"engine metadata is incomplete or malformed: {exc} (rebuild the engine)") from exc


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise LinesideError(f"{name} must be one of {', '.join(allowed)}, got {show(value)}")
    return str(value)


def _sha256(name: str, value: Any) -> str:
    digest = text(name, value)
    if len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise LinesideError(f"{name} must be a sha256 hex digest, got {show(value)}")
    return digest


def encode_engine(metadata: EngineMetadata, plan: bytes) -> bytes:
    """Header + JSON + plan; fills in the plan's size and sha256."""
    final = dataclasses.replace(metadata, plan_bytes=len(plan), plan_sha256=hashlib.sha256(plan).hexdigest())
    text = json.dumps(final.to_dict(), sort_keys=True).encode("utf-8")
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, len(text)) + text + plan


def write_engine(path: str | Path, metadata: EngineMetadata, plan: bytes) -> EngineMetadata:
    """Write an engine file atomically; returns the metadata as written (with plan size and hash)."""
    data = encode_engine(metadata, plan)
    atomic_write_bytes(path, data)
    return _decode(data, Path(path))[0]


def write_plain(plan_path: str | Path, metadata: EngineMetadata, plan: bytes) -> Path:
    """Write a bare plan (for trtexec / DeepStream) and its metadata as a sidecar `<plan>.json`."""
    plan_path = Path(plan_path)
    final = dataclasses.replace(metadata, plan_bytes=len(plan), plan_sha256=hashlib.sha256(plan).hexdigest())
    atomic_write_bytes(plan_path, plan)
    sidecar = plan_path.with_name(plan_path.name + ".json")
    atomic_write_json(sidecar, final.to_dict())
    return sidecar


def read_metadata(path: str | Path) -> EngineMetadata:
    """Read and validate an engine file's metadata (the plan is hashed, not returned)."""
    return read_engine(path)[0]


def read_engine(path: str | Path) -> tuple[EngineMetadata, bytes]:
    """Read an engine file; refuses a missing, foreign, corrupt or truncated one."""
    path = Path(path)
    if not path.is_file():
        raise LinesideError(f"engine file not found: {path} (build it with 'lineside build BUNDLE')")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LinesideError(f"cannot read engine file {path}: {exc.strerror}") from exc
    return _decode(data, path)


def _decode(data: bytes, path: Path) -> tuple[EngineMetadata, bytes]:
    rebuild = "rebuild it with 'lineside build BUNDLE'"
    if len(data) < _PREFIX.size:
        raise LinesideError(f"{path} is truncated or not a lineside engine ({len(data)} bytes): {rebuild}")
    magic, version, length = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise LinesideError(
            f"{path} is not a lineside engine (a bare TensorRT plan has no metadata): {rebuild} "
            "or use the engine file it came with"
        )
    if version < 1:
        raise LinesideError(f"{path} has an invalid engine format version {version}: {rebuild}")
    if version > FORMAT_VERSION:
        raise LinesideError(
            f"{path} uses engine format {version}, newer than this lineside ({FORMAT_VERSION}): upgrade lineside or {rebuild}"
        )
    end = _PREFIX.size + length
    if length > _MAX_JSON or end > len(data):
        raise LinesideError(f"{path} is truncated (metadata cut short): {rebuild}")
    try:
        raw = json.loads(data[_PREFIX.size : end].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise LinesideError(f"{path} has corrupt metadata ({exc}): {rebuild}") from exc
    if not isinstance(raw, dict):
        raise LinesideError(f"{path} has corrupt metadata (not a JSON object): {rebuild}")
    metadata = EngineMetadata.from_dict(raw)
    plan = data[end:]
    if len(plan) != metadata.plan_bytes:
        raise LinesideError(
            f"{path} is truncated or padded: plan has {len(plan)} bytes, header says {metadata.plan_bytes}: {rebuild}"
        )
    if hashlib.sha256(plan).hexdigest() != metadata.plan_sha256:
        raise LinesideError(f"{path} is corrupt: the plan's sha256 does not match its header: {rebuild}")
    return metadata, plan


def check_compatible(
    metadata: EngineMetadata,
    *,
    library: str,
    library_version: str,
    compute_capability: str | None,
    gpu_name: str | None,
    bundle_model_sha256: str | None,
) -> None:
    """Refuse an engine that was built for another library, version, GPU or bundle.

    Args:
        metadata: the engine's header.
        library: "tensorrt" or "tensorrt-rtx", the library that will deserialize it.
        library_version: that library's version string.
        compute_capability: the running GPU's compute capability, e.g. "8.7" (None: not checked).
        gpu_name: the running GPU's name, e.g. "Orin" (None: not checked).
        bundle_model_sha256: sha256 of the bundle model the engine must come from (None: not checked).
    """
    built = f"built with {metadata.library} {metadata.library_version} for {metadata.gpu_name or metadata.target}"
    rebuild = "rebuild the engine on this machine with 'lineside build BUNDLE'"
    if metadata.library != library or metadata.library_version != library_version:
        raise LinesideError(f"engine {built}, but this machine runs {library} {library_version}: {rebuild}")
    if bundle_model_sha256 is not None and metadata.bundle_model_sha256 != bundle_model_sha256:
        raise LinesideError(
            f"engine was built from another bundle model (sha256 {metadata.bundle_model_sha256[:12]}..., "
            f"bundle has {bundle_model_sha256[:12]}...): rebuild it from this bundle with 'lineside build BUNDLE'"
        )
    if compute_capability and metadata.compute_capabilities and compute_capability not in metadata.compute_capabilities:
        raise LinesideError(
            f"engine {built}, but this GPU ({gpu_name}) is compute capability {compute_capability}: {rebuild}"
        )
    if gpu_name and metadata.gpu_name is not None and metadata.gpu_name != gpu_name:
        raise LinesideError(f"engine {built}, but this GPU is {gpu_name} (TensorRT plans are per GPU model): {rebuild}")


def describe(metadata: EngineMetadata) -> str:
    """Human-readable multi-line summary for `lineside build --inspect`."""
    io = [f"  in  {t.name} {list(t.shape)} {t.dtype}" for t in metadata.inputs]
    io += [f"  out {t.name} {list(t.shape)} {t.dtype}" for t in metadata.outputs]
    counts = ", ".join(f"{k} {v}" for k, v in sorted(metadata.layer_counts.items())) or "not recorded"
    options = ", ".join(f"{k}={v}" for k, v in sorted(metadata.build_options.items()) if v is not None) or "defaults"
    lines = [
        f"engine format {metadata.format_version}, lineside {metadata.lineside_version}, created {metadata.created}",
        f"library       {metadata.library} {metadata.library_version}",
        f"target        {metadata.gpu_name or 'ahead-of-time'} ({metadata.target})",
        f"model         {metadata.model} {metadata.precision}, bundle model sha256 {metadata.bundle_model_sha256}",
        f"plan          {metadata.plan_bytes} bytes, sha256 {metadata.plan_sha256}",
        f"build         {metadata.build_seconds:.2f} s, {options}",
        f"layers        {counts}",
        "io",
        *io,
    ]
    return "\n".join(lines)


def import_tensorrt(library: str | None = None) -> tuple[Any, str, str]:
    """Import TensorRT (tried first) or TensorRT-RTX; returns (module, library name, version).

    Args:
        library: "tensorrt" or "tensorrt-rtx" to require one; None tries TensorRT, then TensorRT-RTX.
    """
    if library is not None and library not in LIBRARIES:
        raise LinesideError(f"unknown library {library!r}: choose one of {', '.join(LIBRARIES)}")
    wanted = [library] if library else list(LIBRARIES)
    for name in wanted:
        try:
            if name == "tensorrt":
                import tensorrt as trt  # type: ignore[import-not-found]
            else:
                import tensorrt_rtx_bindings as trt  # type: ignore[import-not-found]
        except ImportError:
            continue
        return trt, name, str(trt.__version__)
    if library == "tensorrt-rtx":
        raise LinesideError(
            "TensorRT-RTX is not installed: pip install 'lineside[tensorrt-rtx]' "
            "(tensorrt-rtx-cu13-libs tensorrt-rtx-cu13-bindings)"
        )
    if library == "tensorrt":
        raise LinesideError(
            "TensorRT is not installed: on a Jetson it comes with JetPack; else pip install 'lineside[tensorrt]'"
        )
    raise LinesideError(
        "neither TensorRT nor TensorRT-RTX is installed: pip install 'lineside[tensorrt-rtx]' "
        "(tensorrt-rtx-cu13-libs tensorrt-rtx-cu13-bindings; builds ahead of time without a GPU), "
        "or on an NVIDIA GPU / Jetson pip install 'lineside[tensorrt]'"
    )
