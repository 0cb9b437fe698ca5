"""Bundle write/load round trip and every way a bundle can be broken on its way to the line."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from lineside.bundle import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    Manifest,
    TensorSpec,
    load_bundle,
    read_manifest,
    sha256_file,
    update_bundle,
    write_bundle,
)
from lineside.errors import LinesideError

MODEL = b"\x08\x07fake onnx graph bytes" * 100


def make_manifest(**changes: object) -> Manifest:
    manifest = Manifest(
        model="crr",
        preset="edge",
        classes=("screw", "wood"),
        input_size=(256, 256),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        precision="fp16",
        inputs=(TensorSpec("image", (1, 256, 256, 3), "uint8"),),
        outputs=(TensorSpec("anomaly_map", (1, 1, 256, 256), "float32"), TensorSpec("score", (1,), "float32")),
        thresholds={"screw": 0.41, "*": 0.5},
        training_metrics={"image_auroc": 0.97},
    )
    return dataclasses.replace(manifest, **changes)


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    source = tmp_path / "report.json"
    source.write_text('{"fp16_vs_fp32_cosine": 0.9999}')
    out = tmp_path / "bundle"
    write_bundle(out, make_manifest(), {"model.onnx": MODEL, "report.json": source})
    return out


def raw_manifest(bundle: Path) -> dict:
    return json.loads((bundle / MANIFEST_NAME).read_text())


def test_round_trip(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    expected = make_manifest()
    assert dataclasses.replace(bundle.manifest, files={}, created="") == expected
    assert bundle.manifest.files == {
        "model.onnx": hashlib.sha256(MODEL).hexdigest(),
        "report.json": sha256_file(bundle_dir / "report.json"),
    }
    assert bundle.manifest.model_sha256 == hashlib.sha256(MODEL).hexdigest()
    assert bundle.model_path.read_bytes() == MODEL
    assert bundle.manifest.created  # ISO time stamp filled in
    assert sorted(os.listdir(bundle_dir)) == ["manifest.json", "model.onnx", "report.json"]
    assert os.listdir(bundle_dir.parent) == ["bundle", "report.json"]  # no staging debris


def test_thresholds_per_class(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    assert bundle.threshold_for("screw") == 0.41
    assert bundle.threshold_for("wood") == 0.5  # falls back to "*"
    assert bundle.threshold_for(None) == 0.5
    single = write_bundle(bundle_dir.parent / "single", make_manifest(thresholds={"screw": 0.3}), {"model.onnx": MODEL})
    assert single.threshold_for(None) == 0.3
    assert single.threshold_for("wood") is None
    with pytest.raises(LinesideError, match="missing.bin is not part of bundle"):
        single.file("missing.bin")


def test_tampered_file(bundle_dir: Path) -> None:
    data = bytearray(MODEL)
    data[100] ^= 0x01
    (bundle_dir / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(LinesideError, match="corrupt or was modified: sha256 of model.onnx"):
        load_bundle(bundle_dir)
    assert load_bundle(bundle_dir, verify=False).manifest.model == "crr"


def test_truncated_file(bundle_dir: Path) -> None:
    (bundle_dir / "report.json").write_bytes((bundle_dir / "report.json").read_bytes()[:10])
    with pytest.raises(LinesideError, match="sha256 of report.json"):
        load_bundle(bundle_dir)


def test_missing_file(bundle_dir: Path) -> None:
    (bundle_dir / "report.json").unlink()
    with pytest.raises(LinesideError, match="incomplete: report.json is missing"):
        load_bundle(bundle_dir)


def test_missing_folder_and_manifest(tmp_path: Path, bundle_dir: Path) -> None:
    with pytest.raises(LinesideError, match="bundle folder not found"):
        load_bundle(tmp_path / "nowhere")
    (bundle_dir / MANIFEST_NAME).unlink()
    with pytest.raises(LinesideError, match="is not a bundle: manifest.json is missing"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"format": "lineside-bundle", ', "is corrupt"),
        (b"\xff\xfe\x00garbage", "is corrupt"),
        (b"[1, 2, 3]", "expected a JSON object"),
    ],
)
def test_corrupt_manifest(bundle_dir: Path, content: bytes, message: str) -> None:
    (bundle_dir / MANIFEST_NAME).write_bytes(content)
    with pytest.raises(LinesideError, match=message):
        load_bundle(bundle_dir)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format_version": FORMAT_VERSION + 1}, f"bundle format {FORMAT_VERSION + 1} is newer than this lineside"),
        ({"format_version": "one"}, "no valid format_version"),
        ({"format": "something-else"}, "not a lineside bundle manifest"),
        ({"classes": None}, "incomplete or malformed"),
        ({"input_size": [256]}, "incomplete or malformed"),
        ({"files": {"model.onnx": "0", "../../etc/passwd": "0"}}, "unsafe file name '../../etc/passwd'"),
        ({"model_file": "other.onnx"}, "lists no checksum for its model other.onnx"),
    ],
)
def test_bad_manifest_fields(bundle_dir: Path, change: dict, message: str) -> None:
    raw = raw_manifest(bundle_dir) | change
    (bundle_dir / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(LinesideError, match=re.escape(message)):
        load_bundle(bundle_dir)


def test_missing_field(bundle_dir: Path) -> None:
    raw = raw_manifest(bundle_dir)
    del raw["outputs"]
    (bundle_dir / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(LinesideError, match="incomplete or malformed: KeyError\\('outputs'\\)"):
        read_manifest(bundle_dir)


def test_refuses_overwrite_without_force(bundle_dir: Path) -> None:
    before = {name: (bundle_dir / name).read_bytes() for name in os.listdir(bundle_dir)}
    with pytest.raises(LinesideError, match="already exists: choose another --out or pass --force"):
        write_bundle(bundle_dir, make_manifest(precision="int8"), {"model.onnx": b"int8 graph"})
    assert {name: (bundle_dir / name).read_bytes() for name in os.listdir(bundle_dir)} == before
    replaced = write_bundle(bundle_dir, make_manifest(precision="int8"), {"model.onnx": b"int8 graph"}, force=True)
    assert load_bundle(bundle_dir).manifest == replaced.manifest
    assert load_bundle(bundle_dir).manifest.precision == "int8"
    assert sorted(os.listdir(bundle_dir)) == ["manifest.json", "model.onnx"]
    assert sorted(os.listdir(bundle_dir.parent)) == ["bundle", "report.json"]


def test_write_refusals_leave_nothing(tmp_path: Path) -> None:
    with pytest.raises(LinesideError, match="must include the model model.onnx"):
        write_bundle(tmp_path / "b", make_manifest(), {"report.json": b"{}"})
    for bad_name in ("../escape.onnx", ".hidden", MANIFEST_NAME, "sub/dir.bin"):
        with pytest.raises(ValueError, match="invalid bundle file name"):
            write_bundle(tmp_path / "b", make_manifest(), {"model.onnx": MODEL, bad_name: b"x"})
    assert os.listdir(tmp_path) == []


def test_update_bundle(bundle_dir: Path) -> None:
    updated = update_bundle(
        bundle_dir, thresholds={"screw": 0.7, "wood": 0.6}, replace_files={"report.json": b'{"calibrated": true}'}
    )
    loaded = load_bundle(bundle_dir)
    assert loaded.manifest == updated.manifest
    assert loaded.threshold_for("wood") == 0.6
    assert (bundle_dir / "report.json").read_bytes() == b'{"calibrated": true}'
    assert loaded.manifest.files["model.onnx"] == hashlib.sha256(MODEL).hexdigest()
    assert sorted(os.listdir(bundle_dir)) == ["manifest.json", "model.onnx", "report.json"]


def test_update_bundle_refusals(bundle_dir: Path) -> None:
    with pytest.raises(LinesideError, match="new.bin is not part of bundle"):
        update_bundle(bundle_dir, replace_files={"new.bin": b"x"})
    manifest_before = (bundle_dir / MANIFEST_NAME).read_bytes()
    (bundle_dir / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(LinesideError, match="corrupt or was modified"):
        update_bundle(bundle_dir, thresholds={"screw": 0.1})
    assert (bundle_dir / MANIFEST_NAME).read_bytes() == manifest_before
