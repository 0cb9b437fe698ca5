"""One image-suffix list and one decoder for every reader (issue 16, finding 9 and "Also").

Before: four drifted suffix lists (calibrate skipped .webp that run inspects) and bare cv2.imread in
folder replay and texture loading, which fills a truncated JPEG with grey instead of failing, so a
truncated image of a part was inspected (and could PASS) instead of being an ERROR.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from runtime_support import make_bundle, render_part

from lineside.calibration import thresholds_scoring
from lineside.cli import main
from lineside.data import images
from lineside.data.images import IMAGE_SUFFIXES, decode_image, list_images, load_image
from lineside.errors import LinesideError
from lineside.runtime.sources.folder import ImageFolderSource
from lineside.train import synthesis

ROOT = Path(__file__).resolve().parents[1]


def _encode(image: np.ndarray, suffix: str) -> bytes:
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


def _one_of_each(folder: Path) -> list[str]:
    """An image per suffix (one in upper case), plus files no reader may take; returns the image names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"part_{s[1:]}{s}" for s in sorted(IMAGE_SUFFIXES)] + ["upper.WEBP"]
    picture = render_part(False, 0)
    for name in names:
        (folder / name).write_bytes(_encode(picture, Path(name).suffix.lower()))
    (folder / "notes.txt").write_text("not an image")
    (folder / "._part.jpg").write_bytes(b"macOS resource fork")  # hidden: skipped by every reader
    return sorted(names)


def test_every_reader_lists_the_same_images_webp_included(tmp_path: Path) -> None:
    names = _one_of_each(tmp_path / "good")
    assert ".webp" in IMAGE_SUFFIXES
    assert [p.name for p in ImageFolderSource.list_images(tmp_path / "good")] == names  # lineside run
    assert [p.name for p in thresholds_scoring.list_images(tmp_path / "good")] == names  # lineside calibrate
    good, _ = thresholds_scoring.good_and_defect_paths(tmp_path / "good", None)
    assert [p.name for p in good] == names
    textures = synthesis.load_textures(tmp_path, (32, 32))  # lineside train --textures (recursive)
    assert len(textures) == len(names) and all(t.shape == (32, 32, 3) for t in textures)


def test_no_reader_keeps_its_own_suffix_list_or_imread() -> None:
    readers = ["runtime/sources/folder.py", "calibration/thresholds_scoring.py", "train/synthesis.py"]
    for name in readers:
        source = (ROOT / name).read_text()
        assert '".tiff"' not in source and "cv2.imread" not in source, name
    assert thresholds_scoring.IMAGE_SUFFIXES is images.IMAGE_SUFFIXES
    assert synthesis.IMAGE_SUFFIXES is images.IMAGE_SUFFIXES


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
@pytest.mark.parametrize("keep", [0.3, 0.7, 0.98])
def test_truncated_jpeg_and_png_are_refused(tmp_path: Path, suffix: str, keep: float) -> None:
    data = _encode(render_part(True, 1, size=(240, 320)), suffix)
    cut = data[: int(len(data) * keep)]
    with pytest.raises(LinesideError, match="truncated") as info:
        decode_image(cut, f"camera{suffix}")
    assert "\n" not in str(info.value)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(cut)
    with pytest.raises(LinesideError, match="truncated"):
        load_image(path)
    assert decode_image(data, "whole").shape == (240, 320, 3)  # the complete file decodes


@pytest.mark.parametrize(
    "data", [b"", b"\x00" * 64, b"GIF89a not really", b"\xff\xd8\xff\xe0 junk \xff\xda x \xff\xd9"]
)
def test_empty_and_corrupt_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(LinesideError, match="empty|cannot decode|truncated"):
        decode_image(data, "bad.jpg")


def test_list_images_is_sorted_and_optionally_recursive(tmp_path: Path) -> None:
    _one_of_each(tmp_path / "b")
    _one_of_each(tmp_path / "a" / "deeper")
    assert list_images(tmp_path) == []  # no images directly in tmp_path
    found = list_images(tmp_path, recursive=True)
    assert found == sorted(found) and len(found) == 2 * (len(IMAGE_SUFFIXES) + 1)


def test_textures_refuse_a_truncated_image(tmp_path: Path) -> None:
    data = _encode(render_part(False, 2), ".jpg")
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(LinesideError, match="truncated"):
        synthesis.load_textures(tmp_path, (32, 32))


def test_folder_replay_turns_a_truncated_image_into_an_error_decision(tmp_path: Path) -> None:
    """Replay of 4 parts: good, truncated JPEG of a good part, corrupt file, defect -> PASS, ERROR, ERROR, REJECT."""
    parts = tmp_path / "parts"
    parts.mkdir()
    cv2.imwrite(str(parts / "p0.png"), render_part(False, 0))
    whole = _encode(render_part(False, 1), ".jpg")
    (parts / "p1.jpg").write_bytes(whole[: len(whole) * 6 // 10])  # cv2.imread would give a grey-filled good part
    (parts / "p2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    cv2.imwrite(str(parts / "p3.png"), render_part(True, 3))
    bundle = make_bundle(tmp_path / "bundle")
    log, summary = tmp_path / "results.jsonl", tmp_path / "summary.json"
    argv = ["run", str(bundle.path), "--source", str(parts), "--log", str(log), "--summary", str(summary), "--quiet"]
    assert main(argv) == 0
    records = {r["part_id"]: r for r in map(json.loads, log.read_text().splitlines()) if r.get("type") == "part"}
    assert [records[i]["verdict"] for i in range(4)] == ["PASS", "ERROR", "ERROR", "REJECT"]
    assert "truncated" in records[1]["reason"] and "p1.jpg" in records[1]["reason"]
    assert "p2.png" in records[2]["reason"]
    done = json.loads(summary.read_text())
    assert done["verdicts"] == {"PASS": 1, "REJECT": 1, "ERROR": 2} and done["pulses"] == 3  # fail-safe: 3 ejected
