"""Which NVIDIA GPU is present: name and compute capability via the CUDA driver (libcuda), no Python packages.

Used by `lineside build` (TensorRT records the GPU it built on) and by the TensorRT backend (refuse
an engine built for another GPU before deserialising it). Returns None where there is no driver or GPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass

_ATTR_CC_MAJOR = 75  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
_ATTR_CC_MINOR = 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA device."""

    index: int
    name: str
    compute_capability: str  # "8.7"

    @property
    def sm(self) -> str:
        """Short tag, "sm87"."""
        return "sm" + self.compute_capability.replace(".", "")


def _load_driver() -> ctypes.CDLL | None:
    for name in ("libcuda.so.1", ctypes.util.find_library("cuda"), "nvcuda.dll"):
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def current_gpu(index: int = 0) -> GpuInfo | None:
    """The CUDA device `index`, or None when no driver or no such device exists."""
    driver = _load_driver()
    if driver is None or driver.cuInit(0) != 0:
        return None
    count = ctypes.c_int(0)
    if driver.cuDeviceGetCount(ctypes.byref(count)) != 0 or index >= count.value:
        return None
    device = ctypes.c_int(0)
    if driver.cuDeviceGet(ctypes.byref(device), index) != 0:
        return None
    name = ctypes.create_string_buffer(256)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    calls = (
        driver.cuDeviceGetName(name, len(name), device),
        driver.cuDeviceGetAttribute(ctypes.byref(major), _ATTR_CC_MAJOR, device),
        driver.cuDeviceGetAttribute(ctypes.byref(minor), _ATTR_CC_MINOR, device),
    )
    if any(calls):
        return None
    return GpuInfo(
        index=index, name=name.value.decode(errors="replace"), compute_capability=f"{major.value}.{minor.value}"
    )
