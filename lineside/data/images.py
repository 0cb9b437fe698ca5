"""Read images and masks into the one in-memory format: (H, W, 3) uint8 BGR and (H, W) bool.

The one list of image suffixes and the one decoder for every reader (data sets, calibration,
texture folders, the runtime's folder replay). Grayscale, gray+alpha, RGBA (alpha dropped),
16-bit (scaled to 8-bit) and palette images are converted; unreadable, corrupt and truncated
files raise LinesideError naming the file (OpenCV would otherwise fill a truncated JPEG with grey).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lineside.errors import LinesideError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
MASK_THRESHOLD = 127  # a mask pixel is defective where its value is > this
_PNG_END = b"IEND\xaeB`\x82"


def is_image_file(path: Path) -> bool:
    """True for a visible file with an image suffix."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def list_images(folder: Path, *, recursive: bool = False) -> list[Path]:
    """The image files in `folder` (with `recursive`, also below it), sorted by path."""
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in candidates if is_image_file(p))


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise LinesideError(f"{path}: no such image file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LinesideError(f"{path}: cannot read ({exc.strerror}); check permissions") from exc


def _check_complete(path: Path | str, data: bytes) -> None:
    """Refuse truncated PNG/JPEG files, which decoders otherwise fill with grey without an error."""
    if data.startswith(b"\x89PNG") and _PNG_END not in data[-32:]:
        raise LinesideError(f"{path}: PNG file is truncated (no IEND chunk); re-copy or remove it")
    if data.startswith(b"\xff\xd8"):
        last_scan = data.rfind(b"\xff\xda")
        if last_scan < 0 or data.find(b"\xff\xd9", last_scan) < 0:
            raise LinesideError(f"{path}: JPEG file is truncated (no end-of-image marker); re-copy or remove it")


def _decode(path: Path | str, data: bytes) -> np.ndarray:
    if not data:
        raise LinesideError(f"{path}: file is empty; re-copy or remove it")
    _check_complete(path, data)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise LinesideError(f"{path}: cannot decode image (corrupt or unsupported format); re-copy or remove it")
    return image


def _to_uint8(path: Path | str, image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return np.rint(image.astype(np.float32) / 257.0).astype(np.uint8)  # 65535 -> 255
    raise LinesideError(f"{path}: unsupported pixel type {image.dtype}; convert it to 8- or 16-bit integer")


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 BGR."""
    path = Path(path)
    return decode_image(_read_bytes(path), path)


def decode_image(data: bytes, source: str | Path) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, BMP, TIFF, WebP) -> (H, W, 3) uint8 BGR; `source` names them in errors."""
    image = _to_uint8(source, _decode(source, data))
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[..., 0], cv2.COLOR_GRAY2BGR)
    if channels == 2:  # gray + alpha
        return cv2.cvtColor(np.ascontiguousarray(image[..., 0]), cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return image
    if channels == 4:
        return np.ascontiguousarray(image[..., :3])  # drop alpha
    raise LinesideError(f"{source}: images with {channels} channels are not supported; use gray, BGR or BGRA")


def load_mask(path: str | Path, shape: tuple[int, int], threshold: int = MASK_THRESHOLD) -> np.ndarray:
    """Read a ground-truth mask as (H, W) bool (pixel > `threshold`); it must match the image's (H, W) `shape`."""
    path = Path(path)
    mask = _to_uint8(path, _decode(path, _read_bytes(path)))
    if mask.ndim == 3:
        mask = mask[..., :3].max(axis=2) if mask.shape[2] >= 3 else mask[..., 0]
    if mask.shape != tuple(shape[:2]):
        raise LinesideError(
            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} px but its image is {shape[1]}x{shape[0]} px; "
            "masks must have the size of their image"
        )
    return mask > threshold
