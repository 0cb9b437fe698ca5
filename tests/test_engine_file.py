"""The engine file format: header round trip, refusal of corrupt/truncated/foreign files, compatibility checks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from pathlib import Path

import pytest

from lineside.bundle import TensorSpec
from lineside.cli import main
from lineside.engine_file import (
    MAGIC,
    EngineMetadata,
    check_compatible,
    describe,
    read_engine,
    read_metadata,
    write_engine,
    write_plain,
)
from lineside.errors import LinesideError

PLAN = bytes(range(256)) * 64  # any bytes: the format does not interpret the plan


def _metadata(**changes: object) -> EngineMetadata:
    base = EngineMetadata(
        library="tensorrt",
        library_version="10.3.0",
        compute_capabilities=("8.7",),
        gpu_name="Orin",
        precision="int8",
        model="crr",
        inputs=(TensorSpec("image", (1, 256, 256, 3), "uint8"),),
        outputs=(TensorSpec("anomaly_map", (1, 1, 256, 256), "float32"), TensorSpec("score", (1,), "float32")),
        bundle_model_sha256="ab" * 32,
        build_options={"workspace_mb": 512, "dla_core": None},
        layer_counts={"int8": 40, "fp32": 12},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_round_trip(tmp_path: Path) -> None:
    written = write_engine(tmp_path / "m.engine", _metadata(), PLAN)
    metadata, plan = read_engine(tmp_path / "m.engine")
    assert plan == PLAN and metadata == written
    assert metadata.plan_bytes == len(PLAN) and metadata.plan_sha256 == hashlib.sha256(PLAN).hexdigest()
    assert metadata.inputs[0].shape == (1, 256, 256, 3) and metadata.layer_counts == {"int8": 40, "fp32": 12}
    data = (tmp_path / "m.engine").read_bytes()
    magic, version, length = struct.unpack_from("<8sIQ", data)
    assert (magic, version) == (MAGIC, 1) and data[20 + length :] == PLAN
    assert json.loads(data[20 : 20 + length])["library_version"] == "10.3.0"
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary behind


def test_plain_plan_and_sidecar(tmp_path: Path) -> None:
    sidecar = write_plain(tmp_path / "m.plan", _metadata(), PLAN)
    assert (tmp_path / "m.plan").read_bytes() == PLAN
    raw = json.loads(sidecar.read_text())
    assert sidecar.name == "m.plan.json" and raw["plan_sha256"] == hashlib.sha256(PLAN).hexdigest()
    assert EngineMetadata.from_dict(raw).gpu_name == "Orin"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d[:-1], "truncated or padded"),
        (lambda d: d + b"\0", "truncated or padded"),
        (lambda d: d[:30], r"truncated \(metadata cut short\)"),
        (lambda d: d[:10], "truncated or not a lineside engine"),
        (lambda d: d[:-5] + bytes(5), "is corrupt: the plan's sha256"),
        (lambda d: b"ftrt" + d[4:], "not a lineside engine"),
        (lambda d: d[:8] + struct.pack("<I", 99) + d[12:], "newer than this lineside"),
        (lambda d: d[:20] + b"#" + d[21:], "corrupt metadata"),
    ],
)
def test_damaged_files_are_refused(tmp_path: Path, damage, message: str) -> None:  # noqa: ANN001
    path = tmp_path / "m.engine"
    write_engine(path, _metadata(), PLAN)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(LinesideError, match=message) as info:
        read_engine(path)
    assert "\n" not in str(info.value) and "lineside build" in str(info.value)


def test_missing_file_and_bare_plan(tmp_path: Path) -> None:
    with pytest.raises(LinesideError, match="engine file not found"):
        read_metadata(tmp_path / "nope.engine")
    (tmp_path / "bare.plan").write_bytes(PLAN)
    with pytest.raises(LinesideError, match="a bare TensorRT plan has no metadata"):
        read_metadata(tmp_path / "bare.plan")


def _check(metadata: EngineMetadata, **changes: object) -> None:
    running: dict[str, object] = {
        "library": "tensorrt",
        "library_version": "10.3.0",
        "compute_capability": "8.7",
        "gpu_name": "Orin",
        "bundle_model_sha256": "ab" * 32,
    }
    check_compatible(metadata, **(running | changes))  # type: ignore[arg-type]


def test_compatible_engine_passes() -> None:
    _check(_metadata())
    _check(_metadata(), compute_capability=None, gpu_name=None, bundle_model_sha256=None)  # nothing to compare


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"library_version": "10.7.0"}, "built with tensorrt 10.3.0 for Orin, but this machine runs tensorrt 10.7.0"),
        ({"library": "tensorrt-rtx"}, "this machine runs tensorrt-rtx"),
        ({"compute_capability": "8.6", "gpu_name": "NVIDIA RTX A2000"}, "is compute capability 8.6"),
        ({"gpu_name": "Orin (nvgpu) other"}, "TensorRT plans are per GPU model"),
        ({"bundle_model_sha256": "cd" * 32}, "built from another bundle model"),
    ],
)
def test_mismatched_engine_is_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(LinesideError, match=message) as info:
        _check(_metadata(), **changes)
    assert "rebuild" in str(info.value) and "\n" not in str(info.value)


def test_rtx_portable_and_aot_targets() -> None:
    aot = _metadata(library="tensorrt-rtx", library_version="1.7.1.116", compute_capabilities=("8.6",), gpu_name=None)
    rtx = {"library": "tensorrt-rtx", "library_version": "1.7.1.116"}
    _check(aot, **rtx, compute_capability="8.6", gpu_name="NVIDIA GeForce RTX 3060")
    with pytest.raises(LinesideError, match="compute capability 8.9"):
        _check(aot, **rtx, compute_capability="8.9", gpu_name="NVIDIA GeForce RTX 4060")
    assert aot.target == "sm86" and _metadata(compute_capabilities=()).target == "portable"


def test_inspect_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_engine(tmp_path / "m.engine", _metadata(), PLAN)
    assert main(["build", "--inspect", str(tmp_path / "m.engine")]) == 0
    out = capsys.readouterr().out
    assert out.strip() == describe(read_metadata(tmp_path / "m.engine"))
    assert "tensorrt 10.3.0" in out and "Orin (sm87)" in out and "int8 40" in out and "workspace_mb=512" in out
    (tmp_path / "bad.engine").write_bytes(b"garbage")
    assert main(["build", "--inspect", str(tmp_path / "bad.engine")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_build_needs_a_bundle(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build"]) == 2
    assert "give a BUNDLE folder" in capsys.readouterr().err


def test_inspect_takes_no_build_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_engine(tmp_path / "m.engine", _metadata(), PLAN)
    assert main(["build", "--inspect", str(tmp_path / "m.engine"), "--target", "sm86", "--plain"]) == 2
    assert "--inspect only reads an engine: drop --target --plain" in capsys.readouterr().err
