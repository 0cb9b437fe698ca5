"""The plant's stand-ins (camera, PLC, relay reader, socat) are other machines on a real line: they run at nice
-15, above the line (`lineside run` at -10, --line-nice), so the line's CPU load does not skew their clocks."""

from __future__ import annotations

import os

DEVICE_NICENESS = -15


def act_as_device() -> None:
    """Raise this process's priority; without the privilege it stays as it is."""
    try:
        os.nice(DEVICE_NICENESS - os.nice(0))
    except OSError:  # not root: the soak still runs, its timing then shares the line's load
        pass
