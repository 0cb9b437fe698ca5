"""Atomic writes: readers see the old file or the new one, failures leave the old one and no debris."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from lineside import atomic
from lineside.atomic import atomic_directory, atomic_write_bytes, atomic_write_json, atomic_write_text


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_creates_parents_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "log.txt"
    atomic_write_text(target, "héllo\n")
    assert target.read_bytes() == "héllo\n".encode()
    assert os.listdir(target.parent) == ["log.txt"]


def test_new_files_get_normal_permissions_and_replacements_keep_theirs(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    atomic_write_json(target, {"b": 1, "a": [1, 2]})
    assert mode(target) == 0o666 & ~current_umask()  # not mkstemp's 0600
    assert target.read_text() == json.dumps({"a": [1, 2], "b": 1}, indent=2) + "\n"
    target.chmod(0o640)
    atomic_write_bytes(target, b"new")
    assert (target.read_bytes(), mode(target)) == (b"new", 0o640)


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "thresholds.json"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["thresholds.json"]


def test_reader_never_sees_half_a_file(tmp_path: Path) -> None:
    target = tmp_path / "big.bin"
    versions = (b"A" * 300_000, b"B" * 200_000)
    atomic_write_bytes(target, versions[0])
    seen: set[bytes] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(target.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    for index in range(40):
        atomic_write_bytes(target, versions[index % 2])
    stop.set()
    reader.join()
    assert seen <= set(versions)
    assert os.listdir(tmp_path) == ["big.bin"]


def test_directory_appears_complete(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    with atomic_directory(target) as staging:
        (staging / "model.onnx").write_bytes(b"graph")
        assert not target.exists()
    assert (target / "model.onnx").read_bytes() == b"graph"
    assert mode(target) == 0o777 & ~current_umask()  # not mkdtemp's 0700
    assert os.listdir(tmp_path) == ["bundle"]


@pytest.mark.parametrize("error", [RuntimeError("export failed"), KeyboardInterrupt()])
def test_exception_inside_keeps_the_old_directory(tmp_path: Path, error: BaseException) -> None:
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "model.onnx").write_bytes(b"old graph")
    with pytest.raises(type(error)):
        with atomic_directory(target, overwrite=True) as staging:
            (staging / "model.onnx").write_bytes(b"half a new gra")
            raise error
    assert (target / "model.onnx").read_bytes() == b"old graph"
    assert os.listdir(tmp_path) == ["bundle"]
    assert os.listdir(target) == ["model.onnx"]


def test_exception_inside_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        with atomic_directory(tmp_path / "bundle") as staging:
            (staging / "x").write_bytes(b"x")
            raise ValueError("bad")
    assert os.listdir(tmp_path) == []


def test_existing_directory_needs_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "keep").write_text("old")
    with pytest.raises(FileExistsError):
        with atomic_directory(target):
            pytest.fail("the block must not run")
    with atomic_directory(target, overwrite=True) as staging:
        (staging / "new").write_text("new")
    assert os.listdir(target) == ["new"]
    assert os.listdir(tmp_path) == ["bundle"]


def test_failed_final_rename_puts_the_old_directory_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: the disk refuses the rename of the new folder (cannot be provoked for real here)."""
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "model.onnx").write_bytes(b"old graph")
    real_replace = os.replace

    def flaky_replace(source: os.PathLike[str], destination: os.PathLike[str]) -> None:
        if Path(source).name.endswith(".partial"):
            raise OSError(28, "No space left on device")
        real_replace(source, destination)

    monkeypatch.setattr(atomic.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="No space"):
        with atomic_directory(target, overwrite=True) as staging:
            (staging / "model.onnx").write_bytes(b"new graph")
    assert (target / "model.onnx").read_bytes() == b"old graph"
    assert os.listdir(tmp_path) == ["bundle"]
