"""GenICam machine-vision cameras: `genicam://` (Aravis, any GigE Vision / USB3 Vision camera) and `pylon://`
(Basler pypylon). This module parses the source URL and converts camera pixels to BGR; the two drivers live
in `genicam_aravis.py` and `pylon.py`.

    genicam://[device-id]?trigger=hardware|software|free&exposure_us=..&gain=..&pixel_format=..
    pylon://[serial]?...same keys...

More keys: `line` (hardware trigger input, default Line1), `timeout_ms` (longest wait for one frame before
the camera counts as lost and is reopened, default 1000), and for pylon:// `device_class` (BaslerGigE,
BaslerUsb or BaslerCamEmu: look for the camera on that transport layer only; default all). A key that starts with an upper-case letter is a
GenICam feature set verbatim, in URL order, before the keys above (`GevSCPSPacketSize=9000&GevSCPD=1000`).
With trigger=software lineside fires one trigger per frame, paced at --rate when given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

import cv2
import numpy as np

from lineside.errors import LinesideError
from lineside.runtime.sources.base import FrameSource

log = logging.getLogger(__name__)

SCHEMES: tuple[str, ...] = ("genicam://", "pylon://")
TRIGGERS: tuple[str, ...] = ("free", "software", "hardware")
KEYS: tuple[str, ...] = ("trigger", "line", "exposure_us", "gain", "pixel_format", "timeout_ms", "device_class")
PYLON_CLASSES: tuple[str, ...] = ("BaslerGigE", "BaslerUsb", "BaslerCamEmu")  # pylon transport layers

# GenICam PFNC codes (Aravis and pylon report the same numbers) -> name, and the OpenCV conversion to BGR.
# GenICam names a Bayer pattern by its first row, OpenCV by its second: GenICam BayerRG is OpenCV's BayerBG.
PIXEL_FORMATS: dict[int, str] = {
    0x01080001: "Mono8",
    0x01080008: "BayerGR8",
    0x01080009: "BayerRG8",
    0x0108000A: "BayerGB8",
    0x0108000B: "BayerBG8",
    0x02180014: "RGB8",
    0x02180015: "BGR8",
}
TO_BGR: dict[str, int | None] = {
    "Mono8": cv2.COLOR_GRAY2BGR,
    "BayerGR8": cv2.COLOR_BayerGB2BGR,
    "BayerRG8": cv2.COLOR_BayerBG2BGR,
    "BayerGB8": cv2.COLOR_BayerGR2BGR,
    "BayerBG8": cv2.COLOR_BayerRG2BGR,
    "RGB8": cv2.COLOR_RGB2BGR,
    "BGR8": None,
}
ALIASES = {"RGB8Packed": "RGB8", "BGR8Packed": "BGR8"}  # pylon's older names


@dataclass(frozen=True)
class CameraSettings:
    """What a genicam:// or pylon:// URL asks of the camera."""

    scheme: str  # "genicam" or "pylon"
    device: str | None  # Aravis device id / address, or pylon serial number; None: the first camera found
    trigger: str = "free"
    line: str = "Line1"
    exposure_us: float | None = None
    gain: float | None = None
    pixel_format: str | None = None  # None: keep the camera's (it must be one lineside converts)
    timeout_s: float = 1.0
    device_class: str | None = None  # pylon transport layer to search; None: all
    features: tuple[tuple[str, str], ...] = ()  # GenICam features set verbatim, in order
    rate: float | None = None  # software trigger pacing in frames/s (--rate)

    def describe(self) -> str:
        """`genicam://DEVICE` for logs."""
        return f"{self.scheme}://{self.device or '(first camera)'}"


def pixel_format_name(name: str) -> str:
    """The canonical name of a pixel format lineside converts; LinesideError for the others."""
    name = ALIASES.get(name, name)
    if name not in TO_BGR:
        raise LinesideError(f"pixel format {name!r} is not supported: use one of {', '.join(TO_BGR)}")
    return name


def _number(key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:
        raise LinesideError(f"camera URL: {key} must be a number >= 0, got {text!r}")
    return value


def parse_camera_url(spec: str, rate: float | None = None) -> CameraSettings:
    """Parse a genicam:// or pylon:// --source; LinesideError naming the bad part."""
    parts = urlsplit(spec)
    scheme = parts.scheme.lower()
    if f"{scheme}://" not in SCHEMES:
        raise LinesideError(f"not a camera URL: {spec!r} (genicam://... or pylon://...)")
    device = unquote(parts.netloc + parts.path.rstrip("/")) or None
    values: dict[str, str] = {}
    features: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key[:1].isupper():
            features.append((key, value))
        elif key in KEYS:
            values[key] = value
        else:
            raise LinesideError(f"{scheme}:// URL: unknown key {key!r} (keys: {', '.join(KEYS)}, or a GenICam feature)")
    trigger = values.get("trigger", "free")
    if trigger not in TRIGGERS:
        raise LinesideError(f"{scheme}:// URL: trigger must be one of {', '.join(TRIGGERS)}, got {trigger!r}")
    device_class = values.get("device_class")
    if device_class is not None and (scheme != "pylon" or device_class not in PYLON_CLASSES):
        raise LinesideError(f"device_class is a pylon:// key, one of {', '.join(PYLON_CLASSES)}; got {device_class!r}")
    timeout_ms = _number("timeout_ms", values.get("timeout_ms", "1000"))
    if timeout_ms < 10:
        raise LinesideError(f"{scheme}:// URL: timeout_ms must be >= 10, got {timeout_ms:g}")
    return CameraSettings(
        scheme=scheme,
        device=device,
        trigger=trigger,
        line=values.get("line", "Line1"),
        exposure_us=_number("exposure_us", values["exposure_us"]) if "exposure_us" in values else None,
        gain=_number("gain", values["gain"]) if "gain" in values else None,
        pixel_format=pixel_format_name(values["pixel_format"]) if "pixel_format" in values else None,
        timeout_s=timeout_ms / 1000,
        device_class=device_class,
        features=tuple(features),
        rate=rate,
    )


def camera_factory(spec: str, rate: float | None = None) -> Callable[[], FrameSource]:
    """Parse the URL now (bad URLs fail before the line starts); the factory opens the camera."""
    settings = parse_camera_url(spec, rate)
    if settings.scheme == "pylon":
        from lineside.runtime.sources.pylon import PylonSource, import_pylon

        import_pylon()  # a missing extra is a one-line error now, not a reopen loop later
        return lambda: PylonSource(settings)
    from lineside.runtime.sources.genicam_aravis import AravisSource, import_aravis

    import_aravis()
    return lambda: AravisSource(settings)


def to_bgr(raw: np.ndarray, pixel_format: str) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 camera pixels in `pixel_format` -> (H, W, 3) uint8 BGR (a new array)."""
    code = TO_BGR[pixel_format]
    if code is None:
        return raw.copy()
    return cv2.cvtColor(raw, code)


def check_readback(camera: str, requested: dict[str, float], actual: dict[str, object]) -> None:
    """Warn loudly when the camera did not take a value as asked (clamped or rounded), so it is on record."""
    for key, wanted in requested.items():
        got = actual.get(key)
        if not isinstance(got, int | float) or abs(got - wanted) > max(1e-6, 0.01 * abs(wanted)):
            log.warning("%s: asked %s=%g, the camera runs %s=%s", camera, key, wanted, key, got)


def log_settings(camera: str, readback: dict[str, object]) -> None:
    """One log line with the settings the camera reports after configuration."""
    log.info("%s: %s", camera, " ".join(f"{key}={value}" for key, value in readback.items()))


class TriggerPacer:
    """Spaces software triggers at `rate` frames/s (no pacing when None)."""

    def __init__(self, rate: float | None) -> None:
        self._period = 1.0 / rate if rate else None
        self._next = time.monotonic()

    def wait(self) -> None:
        """Sleep until the next trigger is due."""
        if self._period is None:
            return
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + self._period, time.monotonic())
