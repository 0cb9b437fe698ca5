"""load_image / load_mask on real encoded files: every conversion and every kind of broken file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from lineside.data import load_image, load_mask
from lineside.errors import LinesideError

RNG = np.random.default_rng(7)
BGR = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)


def _write(path: Path, image: np.ndarray) -> Path:
    ok, data = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def test_bgr_png_round_trips_exactly(tmp_path):
    out = load_image(_write(tmp_path / "a.png", BGR))
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
    np.testing.assert_array_equal(out, BGR)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = BGR[..., 0]
    out = load_image(_write(tmp_path / "g.png", gray))
    assert out.shape == (24, 32, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_grayscale_jpeg_is_read(tmp_path):
    gray = np.tile(np.arange(32, dtype=np.uint8) * 8, (24, 1))
    out = load_image(_write(tmp_path / "g.jpg", gray))
    assert out.shape == (24, 32, 3)
    assert np.abs(out[..., 1].astype(int) - gray).max() <= 8  # lossy, but the same picture


def test_rgba_drops_alpha(tmp_path):
    bgra = np.dstack([BGR, np.full((24, 32), 10, np.uint8)])
    out = load_image(_write(tmp_path / "a.png", bgra))
    np.testing.assert_array_equal(out, BGR)


def test_16bit_is_scaled_to_8bit(tmp_path):
    deep = BGR.astype(np.uint16) * 257  # 255 -> 65535
    deep[0, 0] = (65535, 0, 32896)
    out = load_image(_write(tmp_path / "d.png", deep))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[1:], BGR[1:])
    assert tuple(out[0, 0]) == (255, 0, 128)


def test_16bit_grayscale_tiff(tmp_path):
    deep = np.linspace(0, 65535, 24 * 32).reshape(24, 32).astype(np.uint16)
    out = load_image(_write(tmp_path / "d.tif", deep))
    assert out.shape == (24, 32, 3) and out[0, 0, 0] == 0 and out[-1, -1, 2] == 255


def test_palette_png_is_expanded(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:4] = (255, 0, 0)  # red top half
    rgb[4:] = (0, 0, 255)  # blue bottom half
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    out = load_image(tmp_path / "p.png")
    assert tuple(out[0, 0]) == (0, 0, 255)  # red in BGR
    assert tuple(out[7, 7]) == (255, 0, 0)  # blue in BGR


def test_gray_alpha_png(tmp_path):
    la = np.dstack([BGR[..., 0], np.full((24, 32), 200, np.uint8)])
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png")
    np.testing.assert_array_equal(out[..., 2], BGR[..., 0])


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("empty.png", b"", "empty"),
        ("junk.png", b"this is not an image at all", "cannot decode"),
        ("junk.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xda" + b"\x12" * 64 + b"\xff\xd9", "cannot decode"),
    ],
)
def test_garbage_files_are_refused_with_the_file_name(tmp_path, name, payload, message):
    (tmp_path / name).write_bytes(payload)
    with pytest.raises(LinesideError, match=message) as err:
        load_image(tmp_path / name)
    assert name in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(LinesideError, match="no such image file"):
        load_image(tmp_path / "nope.png")


def test_truncated_png_is_refused(tmp_path):
    data = _write(tmp_path / "full.png", BGR).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(LinesideError, match="truncated") as err:
        load_image(tmp_path / "cut.png")
    assert "cut.png" in str(err.value)


def test_truncated_jpeg_is_refused(tmp_path):
    data = _write(tmp_path / "full.jpg", BGR).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) - 40])
    with pytest.raises(LinesideError, match="truncated"):
        load_image(tmp_path / "cut.jpg")


def test_corrupt_jpeg_body_is_refused(tmp_path):
    data = bytearray(_write(tmp_path / "full.jpg", BGR).read_bytes())
    header_end = data.find(b"\xff\xda")
    data[20:header_end] = b"\x00" * (header_end - 20)  # wipe the quantisation/Huffman tables
    (tmp_path / "bad.jpg").write_bytes(bytes(data))
    with pytest.raises(LinesideError, match="bad.jpg"):
        load_image(tmp_path / "bad.jpg")


def test_float_images_are_refused(tmp_path):
    _write(tmp_path / "f.tif", np.ones((4, 4), np.float32))
    with pytest.raises(LinesideError, match="float32"):
        load_image(tmp_path / "f.tif")


def test_mask_threshold_and_channels(tmp_path):
    values = np.array([[0, 127, 128, 255]], np.uint8)
    np.testing.assert_array_equal(load_mask(_write(tmp_path / "m.png", values), (1, 4)), [[0, 0, 1, 1]])
    rgb = np.dstack([values] * 3)
    np.testing.assert_array_equal(load_mask(_write(tmp_path / "c.png", rgb), (1, 4)), [[0, 0, 1, 1]])
    np.testing.assert_array_equal(load_mask(tmp_path / "m.png", (1, 4), threshold=0), [[0, 1, 1, 1]])


def test_mask_size_mismatch_names_both_sizes(tmp_path):
    _write(tmp_path / "m.png", np.zeros((10, 20), np.uint8))
    with pytest.raises(LinesideError, match=r"20x10 px but its image is 30x10 px"):
        load_mask(tmp_path / "m.png", (10, 30))
