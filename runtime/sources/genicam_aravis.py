"""`genicam://` cameras through Aravis (GObject introspection): GigE Vision and USB3 Vision, every vendor.

Needs the Aravis library with its introspection data (Debian: gir1.2-aravis-0.8) and PyGObject
(`pip install 'lineside[genicam]'`); scripts/install.sh installs both.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from lineside.errors import LinesideError
from lineside.runtime.sources.base import EndOfSource, FrameSource
from lineside.runtime.sources.genicam import (
    PIXEL_FORMATS,
    CameraSettings,
    TriggerPacer,
    check_readback,
    log_settings,
    to_bgr,
)

log = logging.getLogger(__name__)

MISSING = (
    "genicam:// needs Aravis and PyGObject: pip install 'lineside[genicam]' and apt-get install gir1.2-aravis-0.8 "
    "(scripts/install.sh does both)"
)
BUFFERS = 8  # frames Aravis may hold while the runtime is busy; more are dropped (and counted as drops)
CONFIG_ERROR_DOMAIN = "arv-gc-error-quark"  # a feature or value the camera does not have, as opposed to a lost link


def import_aravis() -> tuple[Any, Any]:
    """(Aravis, GLib) modules; LinesideError naming the extra when they are not installed."""
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis, GLib
    except (ImportError, ValueError) as exc:
        raise LinesideError(f"{MISSING} ({exc})") from exc
    return Aravis, GLib


def list_aravis(address: str | None = None) -> list[dict[str, str]]:
    """Every camera Aravis can see (GigE Vision discovery on every interface, USB3 Vision), like `arv-tool-0.8`;
    with `address`, only the GigE Vision camera at that address (asked directly, no broadcast)."""
    aravis, glib = import_aravis()
    if address is not None:
        try:
            camera = aravis.Camera.new(address)
        except glib.Error as exc:
            raise LinesideError(f"no GigE Vision camera answers at {address} ({exc.message})") from exc
        names = (camera.get_vendor_name(), camera.get_model_name(), camera.get_device_serial_number())
        return [_row(address, *names, address, "GigEVision")]
    aravis.update_device_list()
    return [
        _row(
            aravis.get_device_id(index),
            aravis.get_device_vendor(index),
            aravis.get_device_model(index),
            aravis.get_device_serial_nbr(index),
            aravis.get_device_address(index),
            aravis.get_device_protocol(index),
        )
        for index in range(aravis.get_n_devices())
    ]


def _row(device_id: str, vendor: str, model: str, serial: str, address: str, protocol: str) -> dict[str, str]:
    values = (vendor, model, serial, address, protocol)
    return {"url": f"genicam://{device_id}"} | dict(
        zip(("vendor", "model", "serial", "address", "protocol"), (v or "" for v in values), strict=True)
    )


class AravisSource(FrameSource):
    """One opened camera, acquiring; `last_counter` is the frame id (GigE Vision block id)."""

    live = True

    def __init__(self, settings: CameraSettings) -> None:
        self._aravis, self._glib = import_aravis()
        glib = self._glib
        self._settings = settings
        self._pacer = TriggerPacer(settings.rate)
        self._camera: Any = None
        self._stream: Any = None
        self._name = settings.describe()
        try:
            self._camera = self._aravis.Camera.new(settings.device)
        except glib.Error as exc:
            raise EndOfSource(f"{self._name}: camera not found ({exc.message})") from exc
        try:
            if not settings.device:  # name it as discovery does: vendor-model-serial
                camera = self._camera
                names = (camera.get_vendor_name(), camera.get_model_name(), camera.get_device_serial_number())
                self._name = "genicam://" + "-".join(names)
            self._configure()
            self._start()
        except glib.Error as exc:
            self.close()
            if exc.domain == CONFIG_ERROR_DOMAIN:
                raise LinesideError(f"{self._name}: {exc.message}") from exc
            raise EndOfSource(f"{self._name}: {exc.message}") from exc

    def _configure(self) -> None:
        """Apply the URL's settings, read them back, log them."""
        camera, settings = self._camera, self._settings
        device = camera.get_device()
        for name, value in settings.features:
            node = device.get_feature(name)
            if node is None:
                raise LinesideError(f"{self._name}: the camera has no GenICam feature {name!r}")
            node.set_value_from_string(value)
        if settings.pixel_format is not None:
            camera.set_pixel_format_from_string(settings.pixel_format)
        requested: dict[str, float] = {}
        if settings.exposure_us is not None:
            if camera.is_exposure_auto_available():
                camera.set_exposure_time_auto(self._aravis.Auto.OFF)
            camera.set_exposure_time(settings.exposure_us)
            requested["exposure_us"] = settings.exposure_us
        if settings.gain is not None:
            if camera.is_gain_auto_available():
                camera.set_gain_auto(self._aravis.Auto.OFF)
            camera.set_gain(settings.gain)
            requested["gain"] = settings.gain
        if settings.trigger == "free":
            camera.clear_triggers()
        else:
            camera.set_trigger("Software" if settings.trigger == "software" else settings.line)
        camera.set_acquisition_mode(self._aravis.AcquisitionMode.CONTINUOUS)
        self._set_counter_range()
        readback = self._readback()
        check_readback(self._name, requested, readback)
        log_settings(self._name, readback)

    def _readback(self) -> dict[str, object]:
        camera = self._camera
        region = camera.get_region()
        values: dict[str, object] = {
            "model": f"{camera.get_vendor_name()} {camera.get_model_name()}",
            "serial": camera.get_device_serial_number(),
            "pixel_format": camera.get_pixel_format_as_string(),
            "width": region.width,
            "height": region.height,
            "exposure_us": round(camera.get_exposure_time(), 3),
            "trigger": self._settings.trigger,
        }
        if camera.is_gain_available():
            values["gain"] = round(camera.get_gain(), 3)
        if self._settings.trigger != "free":
            values["trigger_source"] = camera.get_trigger_source()
        if camera.is_gv_device():
            values["packet_size"] = camera.gv_get_packet_size()
        device = camera.get_device()
        for name, _ in self._settings.features:
            values[name] = device.get_feature(name).get_value_as_string()
        return values

    def _set_counter_range(self) -> None:
        """GigE Vision block ids are 16 bits (1..65535, 0 never sent) unless extended ids are on; USB3 64 bits."""
        self.counter_kind = "frame_id"
        extended = self._camera.get_device().get_feature("GevGVSPExtendedIDMode")
        wraps = self._camera.is_gv_device() and (extended is None or extended.get_value_as_string() != "On")
        self.counter_min = 1 if wraps else 0
        self.counter_max = 65535 if wraps else None

    def _start(self) -> None:
        self._stream = self._camera.create_stream(None, None)
        payload = self._camera.get_payload()
        for _ in range(BUFFERS):
            self._stream.push_buffer(self._aravis.Buffer.new_allocate(payload))
        self._camera.start_acquisition()

    def read(self) -> tuple[np.ndarray | None, str | None]:
        """The next frame; EndOfSource when none comes within timeout_ms (camera lost, or no trigger)."""
        if self._settings.trigger == "software":
            self._pacer.wait()
            try:
                self._camera.software_trigger()
            except self._glib.Error as exc:
                raise EndOfSource(f"{self._name}: software trigger failed ({exc.message})") from exc
        buffer = self._stream.timeout_pop_buffer(int(self._settings.timeout_s * 1e6))
        if buffer is None:
            raise EndOfSource(f"{self._name}: no frame for {self._settings.timeout_s:g} s (camera lost or no trigger)")
        try:
            self.last_counter = int(buffer.get_frame_id())
            status = buffer.get_status()
            if status != self._aravis.BufferStatus.SUCCESS:
                return None, f"incomplete frame {self.last_counter} ({status.value_nick})"
            return self._image(buffer)
        finally:
            self._stream.push_buffer(buffer)

    @staticmethod
    def _image(buffer: Any) -> tuple[np.ndarray | None, str | None]:
        """The buffer's pixels as BGR, or (None, why)."""
        code = buffer.get_image_pixel_format()
        name = PIXEL_FORMATS.get(code)
        if name is None:
            return None, f"pixel format 0x{code:08x} is not supported (set pixel_format=Mono8, BayerRG8, RGB8...)"
        height, width = buffer.get_image_height(), buffer.get_image_width()
        data = np.frombuffer(buffer.get_data(), dtype=np.uint8)
        channels = 3 if name in ("RGB8", "BGR8") else 1
        if data.size < height * width * channels:
            return None, f"short frame: {data.size} bytes for {width}x{height} {name}"
        raw = data[: height * width * channels].reshape((height, width, channels) if channels == 3 else (height, width))
        return to_bgr(raw, name), None

    def close(self) -> None:
        """Stop acquisition and release the camera; safe to call twice, and on a camera that is gone."""
        camera, self._camera, self._stream = self._camera, None, None
        if camera is None:
            return
        try:
            camera.stop_acquisition()
        except Exception as exc:  # a camera that is gone cannot be stopped; releasing it is all that is left
            log.debug("%s: stop_acquisition: %s", self._name, exc)

    def describe(self) -> str:
        return self._name
