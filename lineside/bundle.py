"""Deploy bundles: a folder with `manifest.json`, the model ONNX files and a report.

The manifest records what every stage needs to agree on (model, classes, input layout,
normalisation, precision, output names, thresholds) and the sha256 of every other file.
`load_bundle` verifies all checksums, so a tampered or truncated bundle is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lineside import __version__
from lineside.atomic import atomic_directory, atomic_write_json
from lineside.errors import LinesideError
from lineside.validate import bounded_int, finite_float, mapping, sequence, show, text

BUNDLE_FORMAT = "lineside-bundle"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (ints, or a string for a dynamic axis) and numpy dtype name of a graph tensor."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    @classmethod
    def from_dict(cls, raw: Any, where: str = "tensor") -> TensorSpec:
        """Parse {"name", "shape", "dtype"}; LinesideError naming `where` on a wrong type or a dimension < 1."""
        raw = mapping(where, raw)
        dims = sequence(f"{where}.shape", raw["shape"])
        shape = tuple(
            text(f"{where}.shape", d, empty=False)
            if isinstance(d, str)
            else bounded_int(f"{where}.shape", d, at_least=1)
            for d in dims
        )
        return cls(
            name=text(f"{where}.name", raw["name"], empty=False),
            shape=shape,
            dtype=text(f"{where}.dtype", raw["dtype"]),
        )


BACKEND_FAMILIES = ("tensorrt", "ort-gpu", "ort-cpu")  # what runs a bundle's graph; each runs one flavour of it


@dataclass(frozen=True)
class CalibrationTarget:
    """What a class's threshold was calibrated for: the backend family and the graph file (name + sha256) it runs."""

    backend: str
    graph: str
    graph_sha256: str

    @classmethod
    def from_dict(cls, raw: Any) -> CalibrationTarget:
        if not isinstance(raw, dict):
            raise TypeError(f"calibrated_for entries must be objects, got {raw!r}")
        if raw.get("backend") not in BACKEND_FAMILIES:
            raise ValueError(f"calibrated_for backend {raw.get('backend')!r} is not one of {BACKEND_FAMILIES}")
        return cls(backend=raw["backend"], graph=str(raw["graph"]), graph_sha256=str(raw["graph_sha256"]))


@dataclass(frozen=True)
class Manifest:
    """Everything a runtime needs to know about a bundle; serialised as manifest.json.

    The input is always a uint8 NHWC BGR image of `input_size` (height, width); pre-processing
    (RGB, normalisation with `mean`/`std`, NCHW) lives inside the graph.
    """

    model: str
    preset: str
    classes: tuple[str, ...]
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    precision: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    model_file: str = "model.onnx"
    cpu_model_file: str | None = None
    dynamic_batch: bool = False
    thresholds: dict[str, float] = field(default_factory=dict)
    calibrated_for: dict[str, CalibrationTarget] = field(default_factory=dict)  # per threshold key
    training_metrics: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    lineside_version: str = __version__
    created: str = ""
    format: str = BUNDLE_FORMAT
    format_version: int = FORMAT_VERSION

    @property
    def model_sha256(self) -> str:
        """sha256 of the engine-facing ONNX; engines record it to detect a mismatched bundle."""
        return self.files[self.model_file]

    def graph_for(self, backend: str) -> str:
        """The graph file `backend` (one of BACKEND_FAMILIES) runs: ORT on CPU takes the CPU variant when there is one."""
        if backend not in BACKEND_FAMILIES:
            raise LinesideError(f"unknown backend family {backend!r}: choose one of {', '.join(BACKEND_FAMILIES)}")
        return self.cpu_model_file if backend == "ort-cpu" and self.cpu_model_file else self.model_file

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Manifest:
        """Parse a manifest dict; raises LinesideError on a foreign or newer format."""
        if raw.get("format") != BUNDLE_FORMAT:
            raise LinesideError(f"not a lineside bundle manifest (format={raw.get('format')!r})")
        version = raw.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise LinesideError(f"bundle manifest has no valid format_version (got {version!r}): re-export the bundle")
        if version > FORMAT_VERSION:
            raise LinesideError(
                f"bundle format {version} is newer than this lineside supports ({FORMAT_VERSION}): upgrade lineside"
            )
        thresholds = parse_thresholds(raw.get("thresholds", {}))
        try:
            classes = tuple(text("classes", c, empty=False) for c in sequence("classes", raw["classes"]))
            strays = [k for k in thresholds if k != "*" and classes and k not in classes and "*" not in classes]
            if strays:
                raise LinesideError(
                    f"bundle manifest has thresholds for {', '.join(map(repr, strays))}, not among its classes "
                    f"{', '.join(classes)}: re-run `lineside calibrate` on the bundle"
                )
            height, width = sequence("input_size", raw["input_size"], length=2)
            cpu_model_file = raw.get("cpu_model_file")
            return cls(
                model=text("model", raw["model"], empty=False),
                preset=text("preset", raw["preset"]),
                classes=classes,
                input_size=(_side("input_size", height), _side("input_size", width)),
                mean=_triple("mean", raw["mean"]),
                std=_triple("std", raw["std"], above=0.0),
                precision=_choice("precision", raw["precision"], PRECISIONS),
                inputs=tuple(TensorSpec.from_dict(t, "inputs") for t in sequence("inputs", raw["inputs"])),
                outputs=tuple(TensorSpec.from_dict(t, "outputs") for t in sequence("outputs", raw["outputs"])),
                model_file=text("model_file", raw.get("model_file", "model.onnx"), empty=False),
                cpu_model_file=None if cpu_model_file is None else text("cpu_model_file", cpu_model_file, empty=False),
                dynamic_batch=_flag("dynamic_batch", raw.get("dynamic_batch", False)),
                thresholds=thresholds,
                calibrated_for={
                    str(k): CalibrationTarget.from_dict(v) for k, v in dict(raw.get("calibrated_for", {})).items()
                },
                training_metrics=dict(mapping("training_metrics", raw.get("training_metrics", {}))),
                files={k: text("files", v, empty=False) for k, v in mapping("files", raw.get("files", {})).items()},
                lineside_version=text("lineside_version", raw.get("lineside_version", "")),
                created=text("created", raw.get("created", "")),
                format_version=version,
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise LinesideError(f"bundle manifest is incomplete or malformed: {exc!r}") from exc
        except LinesideError as exc:
            raise LinesideError(f"bundle manifest is incomplete or malformed: {exc} (re-export the bundle)") from exc


MAX_INPUT_SIDE = 16384  # pixels; larger model inputs are a corrupt manifest, not a model


def _side(name: str, value: Any) -> int:
    return bounded_int(name, value, at_least=1, at_most=MAX_INPUT_SIDE)


def _triple(name: str, value: Any, above: float | None = None) -> tuple[float, float, float]:
    first, second, third = (finite_float(name, v, above=above) for v in sequence(name, value, length=3))
    return first, second, third


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise LinesideError(f"{name} must be one of {', '.join(allowed)}, got {show(value)}")
    return str(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise LinesideError(f"{name} must be true or false, got {show(value)}")
    return value


def parse_thresholds(raw: Any) -> dict[str, float]:
    """Manifest thresholds {class: score}: each a finite number >= 0, else LinesideError (a NaN would pass every part)."""
    if not isinstance(raw, dict):
        raise LinesideError(
            f"bundle manifest thresholds must be an object {{class: threshold}}, got {show(raw)}: "
            "run `lineside calibrate` again"
        )
    thresholds = {}
    for key, value in raw.items():
        try:
            thresholds[key] = finite_float(f"bundle manifest threshold {show(key)}", value, at_least=0.0)
        except LinesideError as exc:
            raise LinesideError(f"{exc}: run `lineside calibrate` again or fix manifest.json") from None
    return thresholds


@dataclass(frozen=True)
class Bundle:
    """A loaded, checksum-verified bundle."""

    path: Path
    manifest: Manifest

    def file(self, name: str) -> Path:
        """Path of a file listed in the manifest."""
        if name not in self.manifest.files:
            raise LinesideError(f"{name} is not part of bundle {self.path}")
        return self.path / name

    @property
    def model_path(self) -> Path:
        return self.file(self.manifest.model_file)

    def threshold_for(self, class_name: str | None) -> float | None:
        """The calibrated reject threshold of a class (or the only class), None if uncalibrated."""
        thresholds = self.manifest.thresholds
        if class_name is None:
            if len(thresholds) == 1:
                return next(iter(thresholds.values()))
            return thresholds.get("*")
        return thresholds.get(class_name, thresholds.get("*"))


def read_manifest(path: str | Path) -> Manifest:
    """Read BUNDLE/manifest.json without verifying file checksums."""
    manifest_path = Path(path) / MANIFEST_NAME
    if not Path(path).is_dir():
        raise LinesideError(f"bundle folder not found: {path}")
    if not manifest_path.is_file():
        raise LinesideError(f"{path} is not a bundle: {MANIFEST_NAME} is missing")
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise LinesideError(f"{manifest_path} is corrupt: {exc} (re-export or re-copy the bundle)") from exc
    except OSError as exc:
        raise LinesideError(f"cannot read {manifest_path}: {exc.strerror}") from exc
    if not isinstance(raw, dict):
        raise LinesideError(f"{manifest_path} is corrupt: expected a JSON object")
    return Manifest.from_dict(raw)


def _is_plain_name(name: str) -> bool:
    """A file name directly inside the bundle folder: no folders, no '..', not hidden."""
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".")


def verify_files(path: str | Path, manifest: Manifest) -> None:
    """Check every listed file exists and matches its sha256; raises LinesideError otherwise."""
    root = Path(path)
    if manifest.model_file not in manifest.files:
        raise LinesideError(f"bundle {root} lists no checksum for its model {manifest.model_file}")
    unsafe = [name for name in manifest.files if not _is_plain_name(name)]
    if unsafe:
        raise LinesideError(f"bundle {root} manifest lists an unsafe file name {unsafe[0]!r}: re-export the bundle")
    for name, expected in manifest.files.items():
        file_path = root / name
        if not file_path.is_file():
            raise LinesideError(f"bundle {root} is incomplete: {name} is missing")
        actual = sha256_file(file_path)
        if actual != expected:
            raise LinesideError(
                f"bundle {root} is corrupt or was modified: sha256 of {name} is {actual[:12]}..., "
                f"manifest says {expected[:12]}... (re-export or re-copy the bundle)"
            )


def load_bundle(path: str | Path, *, verify: bool = True) -> Bundle:
    """Read and (by default) checksum-verify a bundle folder."""
    manifest = read_manifest(path)
    if verify:
        verify_files(path, manifest)
    return Bundle(path=Path(path), manifest=manifest)


def write_bundle(
    out: str | Path,
    manifest: Manifest,
    files: dict[str, str | Path | bytes],
    *,
    force: bool = False,
) -> Bundle:
    """Write a bundle atomically: files are staged, hashed, then the folder is moved into place.

    `files` maps names inside the bundle to source paths or bytes. An existing `out` is only
    replaced with `force`; without it LinesideError is raised and nothing is touched.
    """
    out = Path(out)
    if out.exists() and not force:
        raise LinesideError(f"{out} already exists: choose another --out or pass --force to replace it")
    if manifest.model_file not in files:
        raise LinesideError(f"bundle files must include the model {manifest.model_file}")
    with atomic_directory(out, overwrite=force) as staging:
        hashes: dict[str, str] = {}
        for name, source in files.items():
            if name == MANIFEST_NAME or not _is_plain_name(name):
                raise ValueError(f"invalid bundle file name {name!r}")
            destination = staging / name
            if isinstance(source, bytes):
                destination.write_bytes(source)
            else:
                shutil.copyfile(source, destination)
            hashes[name] = sha256_file(destination)
        final = dataclasses.replace(
            manifest,
            files=hashes,
            created=manifest.created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        Manifest.from_dict(final.to_dict())  # refuse to write what load_bundle would refuse to read
        atomic_write_json(staging / MANIFEST_NAME, final.to_dict())
    return Bundle(path=out, manifest=final)


def update_bundle(path: str | Path, *, replace_files: dict[str, bytes] | None = None, **changes: Any) -> Bundle:
    """Change manifest fields (e.g. thresholds) and optionally rewrite listed files, atomically.

    The bundle is verified first. Each replaced file is written atomically before the manifest, so
    an interruption leaves either the old manifest (and a checksum error naming the file) or the new one.
    """
    from lineside.atomic import atomic_write_bytes

    bundle = load_bundle(path)
    hashes = dict(bundle.manifest.files)
    for name, data in (replace_files or {}).items():
        if name not in hashes:
            raise LinesideError(f"{name} is not part of bundle {path}")
        atomic_write_bytes(bundle.path / name, data)
        hashes[name] = hashlib.sha256(data).hexdigest()
    manifest = dataclasses.replace(bundle.manifest, files=hashes, **changes)
    Manifest.from_dict(manifest.to_dict())  # e.g. a NaN threshold is refused before anything is written
    atomic_write_json(bundle.path / MANIFEST_NAME, manifest.to_dict())
    return Bundle(path=bundle.path, manifest=manifest)
