"""pyserial URL handler `dead://`: pyserial's loopback port, unpluggable like a USB-serial adapter.

While `UNPLUGGED` is set, opening fails and every write raises `SerialException` with EIO, exactly what
pyserial's POSIX port raises when the adapter is pulled out mid-run. `WRITTEN` records what got through.
"""

from __future__ import annotations

import threading

from serial import SerialException
from serial.urlhandler import protocol_loop

UNPLUGGED = threading.Event()
WRITTEN: list[bytes] = []


class Serial(protocol_loop.Serial):
    """The real loopback port class; only open and write know about the unplugged cable."""

    def from_url(self, url: str) -> None:
        """`dead://` takes no options."""

    def open(self) -> None:
        if UNPLUGGED.is_set():
            raise SerialException("could not open port dead://: [Errno 2] No such file or directory")
        super().open()

    def write(self, data: bytes) -> int:
        if UNPLUGGED.is_set():
            raise SerialException("write failed: [Errno 5] Input/output error")
        WRITTEN.append(bytes(data))
        return len(data)
