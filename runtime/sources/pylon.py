"""`pylon://` cameras through Basler pypylon (GigE, USB3, and pylon's camera emulation with PYLON_CAMEMU=1).

`pip install 'lineside[pylon]'`: the pypylon wheel carries the pylon runtime, no SDK install needed.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from lineside.errors import LinesideError
from lineside.runtime.sources.base import EndOfSource, FrameSource
from lineside.runtime.sources.genicam import (
    ALIASES,
    PIXEL_FORMATS,
    CameraSettings,
    TriggerPacer,
    check_readback,
    log_settings,
    to_bgr,
)

log = logging.getLogger(__name__)

MISSING = "pylon:// needs Basler pypylon: pip install 'lineside[pylon]'"
BUFFERS = 8  # frames pylon may hold while the runtime is busy; more are dropped (and counted as drops)


def import_pylon() -> tuple[Any, Any]:
    """(pylon, genicam) modules of pypylon; LinesideError naming the extra when it is not installed."""
    try:
        from pypylon import genicam, pylon
    except ImportError as exc:
        raise LinesideError(f"{MISSING} ({exc})") from exc
    return pylon, genicam


def list_pylon(device_class: str | None = None) -> list[dict[str, str]]:
    """Every camera pylon can see, on one transport layer when `device_class` is given (the emulation, too,
    when PYLON_CAMEMU is set)."""
    pylon, _ = import_pylon()
    factory = pylon.TlFactory.GetInstance()
    cameras = []
    for info in (factory.CreateTl(device_class) if device_class else factory).EnumerateDevices():
        cameras.append({
            "url": f"pylon://{info.GetSerialNumber()}?device_class={info.GetDeviceClass()}",
            "vendor": info.GetVendorName(),
            "model": info.GetModelName(),
            "serial": info.GetSerialNumber(),
            "address": info.GetFullName(),
            "protocol": info.GetDeviceClass(),
        })  # fmt: skip
    return cameras


def _first_valid(nodemap: Any, *names: str) -> Any:
    """The first of `names` the camera has (SFNC 2 names first, then the older GigE ones), or None."""
    for name in names:
        node = nodemap.GetNode(name)
        if node.IsValid():
            return node
    return None


class PylonSource(FrameSource):
    """One opened Basler camera, grabbing one by one; `last_counter` is the grab result's BlockID."""

    live = True

    def __init__(self, settings: CameraSettings) -> None:
        self._pylon, self._genicam = import_pylon()
        self._settings = settings
        self._pacer = TriggerPacer(settings.rate)
        self._timeout_ms = max(1, int(settings.timeout_s * 1000))
        self._name = settings.describe()
        info = self._pylon.DeviceInfo()
        if settings.device:
            info.SetSerialNumber(settings.device)
        factory = self._pylon.TlFactory.GetInstance()
        try:  # one transport layer only when asked: no GigE discovery broadcast for a USB camera or the emulation
            layer = factory.CreateTl(settings.device_class) if settings.device_class else factory
            device = layer.CreateFirstDevice(info)
            self._camera: Any = self._pylon.InstantCamera(device)
            self._camera.Open()
        except self._genicam.GenericException as exc:
            raise EndOfSource(f"{self._name}: camera not found or busy ({_first_line(exc)})") from exc
        try:
            self._name = f"pylon://{self._camera.GetDeviceInfo().GetSerialNumber()}"
            self._configure()
            self._camera.MaxNumBuffer.Value = BUFFERS
            self._camera.StartGrabbing(self._pylon.GrabStrategy_OneByOne)
        except self._genicam.GenericException as exc:
            self.close()
            raise LinesideError(f"{self._name}: {_first_line(exc)}") from exc

    def _configure(self) -> None:
        """Apply the URL's settings, read them back, log them."""
        camera, settings = self._camera, self._settings
        nodemap = camera.GetNodeMap()
        for name, value in settings.features:
            node = nodemap.GetNode(name)
            if not node.IsValid():
                raise LinesideError(f"{self._name}: the camera has no GenICam feature {name!r}")
            node.FromString(value)
        if settings.pixel_format is not None:
            names = [n for n, canonical in ALIASES.items() if canonical == settings.pixel_format]
            offered = camera.PixelFormat.Symbolics
            choice = next((n for n in (settings.pixel_format, *names) if n in offered), None)
            if choice is None:
                raise LinesideError(f"{self._name}: pixel format {settings.pixel_format} not offered ({offered})")
            camera.PixelFormat.Value = choice
        requested: dict[str, float] = {}
        if settings.exposure_us is not None:
            requested["exposure_us"] = settings.exposure_us
            self._set_auto_off(nodemap, "ExposureAuto")
            _first_valid(nodemap, "ExposureTime", "ExposureTimeAbs").Value = settings.exposure_us
        if settings.gain is not None:
            requested["gain"] = settings.gain
            self._set_auto_off(nodemap, "GainAuto")
            gain = _first_valid(nodemap, "Gain", "GainRaw")
            gain.Value = settings.gain if gain.GetNode().GetName() == "Gain" else round(settings.gain)
        camera.TriggerSelector.Value = "FrameStart"
        camera.TriggerMode.Value = "Off" if settings.trigger == "free" else "On"
        if settings.trigger != "free":
            camera.TriggerSource.Value = "Software" if settings.trigger == "software" else settings.line
        self._set_counter_range(nodemap)
        readback = self._readback(nodemap)
        check_readback(self._name, requested, readback)
        log_settings(self._name, readback)

    @staticmethod
    def _set_auto_off(nodemap: Any, name: str) -> None:
        node = nodemap.GetNode(name)
        if node.IsValid() and node.IsWritable():
            node.Value = "Off"

    def _readback(self, nodemap: Any) -> dict[str, object]:
        camera = self._camera
        info = camera.GetDeviceInfo()
        values: dict[str, object] = {
            "model": f"{info.GetVendorName()} {info.GetModelName()}",
            "serial": info.GetSerialNumber(),
            "pixel_format": camera.PixelFormat.Value,
            "width": camera.Width.Value,
            "height": camera.Height.Value,
            "exposure_us": round(_first_valid(nodemap, "ExposureTime", "ExposureTimeAbs").Value, 3),
            "gain": round(float(_first_valid(nodemap, "Gain", "GainRaw").Value), 3),
            "trigger": self._settings.trigger,
        }
        if self._settings.trigger != "free":
            values["trigger_source"] = camera.TriggerSource.Value
        packet = nodemap.GetNode("GevSCPSPacketSize")
        if packet.IsValid():
            values["packet_size"] = packet.Value
        for name, _ in self._settings.features:
            values[name] = nodemap.GetNode(name).ToString()
        return values

    def _set_counter_range(self, nodemap: Any) -> None:
        """Basler GigE BlockIDs are 16 bits (1..65535) unless extended ids are on; USB3 and emulation 64 bits."""
        self.counter_kind = "block_id"
        extended = nodemap.GetNode("GevGVSPExtendedIDMode")
        gige = self._camera.GetDeviceInfo().GetDeviceClass() == "BaslerGigE"
        wraps = gige and not (extended.IsValid() and extended.ToString() == "On")
        self.counter_min = 1 if wraps else 0
        self.counter_max = 65535 if wraps else None

    def read(self) -> tuple[np.ndarray | None, str | None]:
        """The next frame; EndOfSource when none comes within timeout_ms (camera lost, or no trigger)."""
        pylon, camera = self._pylon, self._camera
        try:
            if self._settings.trigger == "software":
                self._pacer.wait()
                if not camera.WaitForFrameTriggerReady(self._timeout_ms, pylon.TimeoutHandling_Return):
                    raise EndOfSource(f"{self._name}: not ready for a software trigger")
                camera.ExecuteSoftwareTrigger()
            result = camera.RetrieveResult(self._timeout_ms, pylon.TimeoutHandling_Return)
        except self._genicam.GenericException as exc:
            raise EndOfSource(f"{self._name}: {_first_line(exc)}") from exc
        if not result.IsValid():
            why = "camera removed" if camera.IsCameraDeviceRemoved() else "camera lost or no trigger"
            raise EndOfSource(f"{self._name}: no frame for {self._settings.timeout_s:g} s ({why})")
        try:
            self.last_counter = int(result.BlockID)
            if not result.GrabSucceeded():
                return None, f"grab {self.last_counter} failed: {result.ErrorDescription}"
            name = PIXEL_FORMATS.get(int(result.PixelType))
            if name is None:
                return None, f"pixel format 0x{int(result.PixelType):08x} is not supported (set pixel_format=...)"
            return to_bgr(result.Array, name), None
        finally:
            result.Release()

    def close(self) -> None:
        """Stop grabbing and close the camera; safe to call twice, and on a camera that is gone."""
        camera, self._camera = getattr(self, "_camera", None), None
        if camera is None:
            return
        try:
            camera.StopGrabbing()
            camera.Close()
        except self._genicam.GenericException as exc:  # a removed camera cannot be stopped; releasing it is all
            log.debug("%s: close: %s", self._name, _first_line(exc))

    def describe(self) -> str:
        return self._name


def _first_line(exc: BaseException) -> str:
    """pylon's exception text without the file/line trailer."""
    return str(exc).split(" : ")[0].strip() or type(exc).__name__
