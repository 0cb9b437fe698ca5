"""The PLC end of the serial reject relay: records every command the runtime writes, with its arrival time.

    python -m soak.wire PTY OUT

Appends `WALL COMMAND` lines (ASCII protocol: ON / OFF) to OUT until the link goes away (socat killed).
A process of its own, so the runtime's threads cannot delay its clock.
"""

from __future__ import annotations

import os
import sys
import time

from soak.device import act_as_device


def main() -> None:
    act_as_device()
    fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NOCTTY)
    buffer = b""
    print("ready", flush=True)
    with open(sys.argv[2], "a", encoding="ascii") as out:
        while True:
            try:
                chunk = os.read(fd, 256)
            except OSError:  # the other end of the PTY pair is gone
                return
            if not chunk:
                return
            now = time.time()
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                out.write(f"{now:.6f} {line.decode('ascii', 'replace').strip()}\n")
            out.flush()


if __name__ == "__main__":
    main()
