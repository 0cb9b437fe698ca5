"""GenICam sources against real cameras-in-software: Aravis's fake GigE Vision camera on 127.0.0.1 and
Basler pylon's camera emulation; URL parsing and pixel conversion."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from camera_support import ADDRESS, FakeGigECamera, aravis_or_skip, pylon_or_skip
from runtime_support import render_part, write_folder

from lineside.errors import LinesideError
from lineside.runtime.sources.base import EndOfSource, source_factory
from lineside.runtime.sources.capture import Capture, CaptureConfig
from lineside.runtime.sources.genicam import check_readback, parse_camera_url, to_bgr


@pytest.fixture
def fake_camera():
    aravis_or_skip()
    camera = FakeGigECamera().start()
    yield camera
    camera.stop()


def emulator_url(folder: Path, pixel_format: str = "BGR8", **keys: str) -> str:
    """pylon:// URL of the emulation replaying `folder` (160x120 parts) on software triggers."""
    extra = "".join(f"&{k}={v}" for k, v in keys.items())
    return (
        f"pylon://0815-0000?device_class=BaslerCamEmu&trigger=software&pixel_format={pixel_format}&ImageFilename={folder}"
        f"&ImageFileMode=On&TestImageSelector=Off&Width=160&Height=120{extra}"
    )


# ---- URL parsing --------------------------------------------------------------------------------------------


def test_url_keys_and_features_parse_in_order():
    settings = parse_camera_url(
        "genicam://Basler-acA1920-40gc-12345678?trigger=hardware&line=Line2&exposure_us=800&gain=3.5"
        "&pixel_format=BayerRG8&timeout_ms=250&GevSCPSPacketSize=9000&GevSCPD=1000",
        rate=30.0,
    )
    assert settings.device == "Basler-acA1920-40gc-12345678"
    assert (settings.trigger, settings.line, settings.exposure_us, settings.gain) == ("hardware", "Line2", 800.0, 3.5)
    assert (settings.pixel_format, settings.timeout_s, settings.rate) == ("BayerRG8", 0.25, 30.0)
    assert settings.features == (("GevSCPSPacketSize", "9000"), ("GevSCPD", "1000"))
    first = parse_camera_url("pylon://")
    assert (first.scheme, first.device, first.trigger, first.pixel_format) == ("pylon", None, "free", None)
    assert parse_camera_url("pylon://?pixel_format=RGB8Packed").pixel_format == "RGB8"  # pylon's old name


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("genicam://?trigger=photo-eye", "trigger must be one of free, software, hardware"),
        ("genicam://?exposure_us=fast", "exposure_us must be a number"),
        ("genicam://?gain=-1", "gain must be a number >= 0"),
        ("genicam://?pixel_format=Mono12", "pixel format 'Mono12' is not supported"),
        ("pylon://?expo=5", "unknown key 'expo'"),
        ("genicam://?timeout_ms=1", "timeout_ms must be >= 10"),
        ("genicam://?device_class=BaslerGigE", "device_class is a pylon:// key"),
    ],
)
def test_bad_camera_urls_are_one_line_errors(url: str, message: str):
    with pytest.raises(LinesideError, match=message):
        source_factory(url)


def test_bayer_rgb_mono_conversion_matches_pylons_own_converter(tmp_path: Path):
    """Each GenICam pixel format, as the emulation delivers it, converts to the BGR that pylon's converter makes."""
    pylon_or_skip()
    from pypylon import pylon

    bands = np.zeros((120, 160, 3), np.uint8)
    bands[:, :50], bands[:, 50:100], bands[:, 100:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)  # blue, green, red
    cv2.imwrite(str(tmp_path / "bands.png"), bands)
    camera = pylon.InstantCamera(pylon.TlFactory.GetInstance().CreateTl("BaslerCamEmu").CreateFirstDevice())
    camera.Open()
    converter = pylon.ImageFormatConverter()
    converter.OutputPixelFormat = pylon.PixelType_BGR8packed
    try:
        camera.ImageFilename.Value, camera.ImageFileMode.Value = str(tmp_path), "On"
        camera.TestImageSelector.Value, camera.Width.Value, camera.Height.Value = "Off", 160, 120
        for offered, name in [("Mono8", "Mono8"), ("RGB8Packed", "RGB8"), ("BGR8Packed", "BGR8")] + [
            (f"Bayer{p}8", f"Bayer{p}8") for p in ("RG", "GR", "GB", "BG")
        ]:
            camera.PixelFormat.Value = offered
            result = camera.GrabOne(2000)
            ours, reference = to_bgr(result.Array, name), converter.Convert(result).Array
            result.Release()
            inner = (slice(4, -4), slice(4, -4))  # demosaicing borders differ between libraries
            error = np.abs(ours[inner].astype(int) - reference[inner].astype(int)).mean()
            assert ours.shape == (120, 160, 3) and ours.dtype == np.uint8
            assert error < 2.0, f"{name}: mean difference {error:.1f} to pylon's converter"
            if name != "Mono8":
                assert ours[60, 25].argmax() == 0 and ours[60, 130].argmax() == 2, name  # blue left, red right
    finally:
        camera.Close()


# ---- Aravis: the fake GigE Vision camera ---------------------------------------------------------------------


@pytest.mark.network
@pytest.mark.parametrize("pixel_format", ["Mono8", "BayerRG8", "RGB8"])
def test_aravis_software_trigger_frames_ids_and_readback(fake_camera, pixel_format, caplog):
    caplog.set_level(logging.INFO)
    url = f"genicam://{ADDRESS}?trigger=software&pixel_format={pixel_format}&exposure_us=1500&Width=320&Height=240"
    url += "&timeout_ms=3000"  # the first frame of a fresh stream on a loaded 2-core machine can take > 1 s
    source = source_factory(url)()
    try:
        frames = [(*source.read(), source.last_counter) for _ in range(4)]
        assert all(err is None and img.shape == (240, 320, 3) and img.dtype == np.uint8 for img, err, _ in frames)
        ids = [counter for _, _, counter in frames]
        assert ids == [(ids[0] - 1 + k) % 65535 + 1 for k in range(4)]  # one frame per trigger, consecutive ids
        assert (source.counter_kind, source.counter_min, source.counter_max) == ("frame_id", 1, 65535)
    finally:
        source.close()
        source.close()
    settings = next(r.getMessage() for r in caplog.records if "pixel_format=" in r.getMessage())
    assert f"pixel_format={pixel_format}" in settings and "exposure_us=1500.0" in settings
    assert "trigger_source=Software" in settings and "Width=320" in settings


@pytest.mark.network
def test_aravis_hardware_trigger_waits_then_counts_as_lost(fake_camera):
    """No pulse on the trigger line: no frame, and after timeout_ms the camera is given up (reopened by capture)."""
    source = source_factory(f"genicam://{ADDRESS}?trigger=hardware&line=Line0&timeout_ms=300")()
    try:
        start = time.monotonic()
        with pytest.raises(EndOfSource, match="no frame for 0.3 s"):
            source.read()
        assert 0.25 < time.monotonic() - start < 2.0
    finally:
        source.close()


@pytest.mark.network
def test_aravis_bad_feature_and_missing_camera(fake_camera):
    with pytest.raises(LinesideError, match="no GenICam feature 'Sharpness'"):
        source_factory(f"genicam://{ADDRESS}?Sharpness=3")()
    with pytest.raises(LinesideError, match="'Mono12' not offered|not an entry"):
        source_factory(f"genicam://{ADDRESS}?PixelFormat=Mono12")()
    with pytest.raises(EndOfSource, match="camera not found"):
        source_factory("genicam://127.0.0.2")()


@pytest.mark.network
def test_aravis_camera_loss_reopens_with_backoff(fake_camera):
    """Kill the camera mid-run (a pulled cable), bring it back: capture reopens it and frames resume."""
    factory = source_factory(f"genicam://{ADDRESS}?trigger=free&timeout_ms=400")
    capture = Capture(factory, CaptureConfig(stall_s=3.0, backoff_s=0.2, backoff_max_s=0.8, max_parts=40))
    frames = []
    capture.open()
    runner = threading.Thread(target=capture.run, args=(frames.append,), daemon=True)
    runner.start()
    deadline = time.monotonic() + 20
    while len(frames) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    fake_camera.stop()
    time.sleep(1.5)
    lost_at = len(frames)
    fake_camera.start()
    runner.join(30)
    capture.stop.set()
    assert not runner.is_alive()
    assert len(frames) == 40 and lost_at < 40
    assert capture.stats.outages == 1
    images = [f for f in frames if f.image is not None]
    assert len(images) >= 30 and all(f.image.shape == (512, 512, 3) for f in images)


@pytest.mark.network
def test_aravis_frames_dropped_by_a_slow_line_become_parts(fake_camera):
    """Free-running at 25 frames/s into 8 buffers while the line stalls for a second: the GigE stream drops
    frames, their ids are skipped, and each skipped id becomes a part of its own (frame_dropped)."""
    factory = source_factory(f"genicam://{ADDRESS}?trigger=free&pixel_format=Mono8&Width=64&Height=64")
    capture = Capture(factory, CaptureConfig(rate=25.0, stall_s=5.0, max_parts=60))
    frames = []

    def slow_line(frame) -> None:  # noqa: ANN001 - a Frame
        frames.append(frame)
        if len(frames) == 5:
            time.sleep(1.2)  # the reader's queue and Aravis's buffers fill; the camera keeps framing

    capture.open()
    capture.run(slow_line)
    counters = [f.counter for f in frames]
    assert [f.part_id for f in frames] == list(range(60))
    assert counters == [(counters[0] - 1 + k) % 65535 + 1 for k in range(60)]  # no id without a part
    dropped = [f for f in frames if f.cause == "frame_dropped"]
    assert len(dropped) >= 5 and capture.stats.dropped_frames == len(dropped)
    assert all(f.image is None and f.error.startswith("frame_dropped") for f in dropped)
    assert all(f.image is not None for f in frames if f.cause is None)


# ---- pylon: Basler's camera emulation --------------------------------------------------------------------------


def test_pylon_emulation_replays_parts_with_block_ids(tmp_path: Path, caplog):
    pylon_or_skip()
    caplog.set_level(logging.INFO)
    defects = [False, True, False, False, True]
    folder = write_folder(tmp_path / "parts", defects)
    source = source_factory(emulator_url(folder, exposure_us="2000", gain="3"), rate=50.0)()
    try:
        reads = []
        for _ in range(len(defects)):
            image, error = source.read()
            reads.append((source.last_counter, image, error))
    finally:
        source.close()
    assert [counter for counter, _, _ in reads] == [0, 1, 2, 3, 4]
    for (_, image, error), index in zip(reads, range(len(defects)), strict=True):
        assert error is None
        assert np.array_equal(image, render_part(defects[index], index))  # the emulator sends the file's pixels
    settings = next(r.getMessage() for r in caplog.records if "pixel_format=" in r.getMessage())
    assert "exposure_us=2000.0" in settings and "gain=3.0" in settings and "trigger_source=Software" in settings


def test_pylon_free_run_and_hardware_trigger_without_pulse():
    pylon_or_skip()
    free = source_factory("pylon://?device_class=BaslerCamEmu&trigger=free&pixel_format=Mono8&Width=64&Height=64")()
    try:
        ids = [(free.read(), free.last_counter)[1] for _ in range(6)]
    finally:
        free.close()
    assert ids == list(range(6)) and (free.counter_min, free.counter_max) == (0, None)  # emulation: 64-bit ids
    waiting = source_factory("pylon://?device_class=BaslerCamEmu&trigger=hardware&line=Line1&timeout_ms=300")()
    try:
        with pytest.raises(EndOfSource, match="no frame for 0.3 s"):
            waiting.read()
    finally:
        waiting.close()


def test_readback_that_differs_from_the_request_is_a_warning(caplog):
    caplog.set_level(logging.INFO)
    check_readback("pylon://X", {"exposure_us": 1000.0, "gain": 3.0}, {"exposure_us": 1040.0, "gain": 3.01})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["pylon://X: asked exposure_us=1000, the camera runs exposure_us=1040.0"]


def test_pylon_unknown_serial_and_feature(tmp_path: Path):
    pylon_or_skip()
    with pytest.raises(EndOfSource, match="camera not found"):
        source_factory("pylon://9999-9999?device_class=BaslerCamEmu")()
    with pytest.raises(LinesideError, match="no GenICam feature 'Sharpness'"):
        source_factory("pylon://?device_class=BaslerCamEmu&Sharpness=3")()


BLOCKED = r"""
import sys
sys.modules[sys.argv[1]] = None  # as if the extra were not installed
from lineside.runtime.sources.base import source_factory
from lineside.errors import LinesideError
try:
    source_factory(sys.argv[2])
except LinesideError as exc:
    print(exc)
"""


@pytest.mark.parametrize(
    ("blocked", "url", "extra"), [("gi", "genicam://", "lineside[genicam]"), ("pypylon", "pylon://", "lineside[pylon]")]
)
def test_missing_extra_is_a_one_line_error_naming_it(blocked: str, url: str, extra: str):
    done = subprocess.run([sys.executable, "-c", BLOCKED, blocked, url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"pip install '{extra}'" in done.stdout and len(done.stdout.strip().splitlines()) == 1
