"""The runtime side of the soak camera: a live FrameSource that reads numbered JPEG frames over TCP.

Wire format, one frame: a header `!qI` (frame id, payload length) and the JPEG bytes. The frame id is
the camera's own counter (like a GenICam BlockID), so the runtime's part accounting can see dropped
frames. A truncated JPEG (the camera's corrupt-frame fault) is refused by lineside's one image
decoder and becomes a bad frame (ERROR decision) with its frame id.
"""

from __future__ import annotations

import socket
import struct
import time
from urllib.parse import urlsplit

import numpy as np

from lineside.data.images import decode_image
from lineside.errors import LinesideError
from lineside.runtime.actuators.base import query_params
from lineside.runtime.sources.base import EndOfSource, FrameSource

HEADER = struct.Struct("!qI")
SCHEME = "soak://"


def parse_address(spec: str) -> tuple[str, int, float | None]:
    """`soak://HOST:PORT?fps=R` -> (host, port, fps)."""
    parts = urlsplit(spec)
    if parts.scheme != "soak" or not parts.hostname or parts.port is None:
        raise LinesideError(f"--source {spec!r}: use soak://HOST:PORT?fps=R")
    fps = query_params(spec).get("fps")
    return parts.hostname, parts.port, float(fps) if fps else None


def _receive(sock: socket.socket, size: int) -> bytes:
    """Exactly `size` bytes; EndOfSource when the camera closed the connection."""
    chunks, left = [], size
    while left:
        try:
            chunk = sock.recv(min(left, 1 << 20))
        except OSError as exc:
            raise EndOfSource(f"soak camera: {exc}") from exc
        if not chunk:
            raise EndOfSource("soak camera closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class SoakCameraSource(FrameSource):
    """A live camera that numbers its frames (`frame_id`); reading blocks while the camera is silent."""

    live = True
    counter_kind = "frame_id"

    def __init__(self, spec: str) -> None:
        host, port, self.nominal_fps = parse_address(spec)
        self._name = f"soak camera {host}:{port}"
        try:
            self._sock = socket.create_connection((host, port), timeout=2.0)
        except OSError as exc:
            raise EndOfSource(f"cannot connect to {self._name}: {exc}") from exc
        self._sock.settimeout(None)  # a hung camera blocks the reader; the capture watchdog reopens

    def read(self) -> tuple[np.ndarray | None, str | None]:
        """The next frame, or (None, why) for one that does not decode; sets `last_counter`."""
        frame_id, length = HEADER.unpack(_receive(self._sock, HEADER.size))
        payload = _receive(self._sock, length)
        self.last_counter, self.last_arrival = frame_id, time.monotonic()  # before the decode
        try:
            return decode_image(payload, f"frame {frame_id}"), None
        except LinesideError as exc:
            return None, str(exc)

    def close(self) -> None:
        """Close the connection (unblocks nothing by itself; the camera closes abandoned links)."""
        self._sock.close()

    def describe(self) -> str:
        return self._name
