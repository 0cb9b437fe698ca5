"""Real GenICam stand-ins for the camera tests: Aravis's fake GigE Vision camera on 127.0.0.1 (UDP, the real
GVCP/GVSP protocols) and Basler pylon's camera emulation (PYLON_CAMEMU=1), fed with a folder of parts."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

FAKE_CAMERA = "arv-fake-gv-camera-0.8"
ADDRESS = "127.0.0.1"


def aravis_or_skip() -> None:
    """Skip unless Aravis (typelib + PyGObject) and its fake camera are installed (scripts/install.sh does it)."""
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis  # noqa: F401
    except (ImportError, ValueError) as exc:
        pytest.skip(f"Aravis/PyGObject not installed ({exc}): run scripts/install.sh")
    if shutil.which(FAKE_CAMERA) is None:
        pytest.skip(f"{FAKE_CAMERA} not installed (apt-get install aravis-tools)")


def pylon_or_skip() -> None:
    """Skip unless pypylon is installed; the emulation must be switched on before pylon starts."""
    os.environ.setdefault("PYLON_CAMEMU", "1")
    pytest.importorskip("pypylon", reason="pypylon not installed: pip install 'lineside[pylon]'")


class FakeGigECamera:
    """`arv-fake-gv-camera-0.8 -i 127.0.0.1`: a GigE Vision camera (512x512 pattern, Mono8/Bayer/RGB8,
    software trigger or Line0, 16-bit frame ids) that the test can kill and restart like a pulled cable."""

    def __init__(self, serial: str = "LINESIDE1") -> None:
        self.serial = serial
        self.proc: subprocess.Popen | None = None

    @property
    def device_id(self) -> str:
        """What Aravis's discovery calls it (also accepted: the address 127.0.0.1)."""
        return f"Aravis-Fake-{self.serial}"

    def start(self) -> FakeGigECamera:
        """Start the camera and wait until it answers on GVCP."""
        from gi.repository import Aravis, GLib

        self.proc = subprocess.Popen(
            [FAKE_CAMERA, "-i", ADDRESS, "-s", self.serial], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                Aravis.Camera.new(ADDRESS)
                return self
            except GLib.Error:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"{FAKE_CAMERA} did not come up on {ADDRESS}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Kill the camera process (no goodbye on the wire, like a power loss)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None
