"""The host-side stages around inference, timed with the runtime's own code.

decode      cv2.imdecode of a camera-like JPEG (the model image upscaled to the camera size, sensor noise)
resize      lineside.preprocess.resize_for_model to the bundle's input size (what the runtime does)
preprocess  BGR->RGB, normalise, NCHW: inside the fused graph, so part of inference (not timed apart)
postprocess score readout + lineside.runtime.results.heatmap_overlay (the reject image's overlay)
decision    lineside.runtime.decision.decide against the reject threshold
actuation   one Actuator.set() through lineside.runtime.actuators (default serial://loop://: pyserial
            write + flush on a loopback port); on and off alternate, as reject pulses do
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import cv2
import numpy as np

from lineside.errors import LinesideError
from lineside.preprocess import resize_for_model
from lineside.runtime.results import encode_jpeg, heatmap_overlay

STAGES: tuple[str, ...] = ("decode", "resize", "postprocess", "decision", "actuation")  # timed on the host
LINE_ORDER: tuple[str, ...] = ("decode", "resize", "preprocess", "postprocess", "decision", "actuation")
JPEG_QUALITY = 90
IN_GRAPH_NOTE = "BGR->RGB, normalisation and NCHW run inside the fused graph: included in inference"
T = TypeVar("T")


def timed(function: Callable[..., T], *args: Any) -> tuple[T, float]:
    """(result, milliseconds) of one call."""
    start = time.perf_counter()
    result = function(*args)
    return result, (time.perf_counter() - start) * 1000.0


def camera_jpeg(image: np.ndarray, camera: tuple[int, int], quality: int = JPEG_QUALITY, seed: int = 0) -> bytes:
    """A camera-like JPEG frame of `camera` (width, height): `image` upscaled, with sensor noise."""
    width, height = camera
    frame = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)  # (height, width, 3)
    noise = np.random.default_rng(seed).normal(0.0, 3.0, frame.shape)
    frame = np.clip(frame + noise, 0, 255).astype(np.uint8)
    try:
        return encode_jpeg(frame, quality)
    except OSError as exc:
        raise LinesideError(f"OpenCV cannot encode a {width}x{height} JPEG frame") from exc


class HostStages:
    """Decode/resize before inference and post-processing, decision and actuation after it."""

    def __init__(self, jpeg: bytes, input_size: tuple[int, int], threshold: float, actuator_url: str) -> None:
        from lineside.runtime.actuators.base import open_actuator

        self.jpeg = np.frombuffer(jpeg, np.uint8)
        self.input_size = input_size
        self.threshold = threshold
        self.actuator = open_actuator(actuator_url)
        self.actuator.connect()
        self.times_ms: dict[str, list[float]] = {name: [] for name in STAGES}

    def before(self) -> tuple[np.ndarray, dict[str, float]]:
        """Decode the frame and resize it: ((H, W, 3) uint8 model input, stage times)."""
        frame, decode_ms = timed(cv2.imdecode, self.jpeg, cv2.IMREAD_COLOR)
        if frame is None:
            raise LinesideError("OpenCV cannot decode the benchmark JPEG frame")
        image, resize_ms = timed(resize_for_model, frame, self.input_size)
        return image, {"decode": decode_ms, "resize": resize_ms}

    def after(self, image: np.ndarray, anomaly_map: np.ndarray, score: np.ndarray, pulse: bool) -> dict[str, float]:
        """Post-process one result (batch 1), decide, drive the actuator; stage times."""
        from lineside.runtime.decision import decide

        start = time.perf_counter()
        value = float(score.reshape(-1)[0])
        heatmap_overlay(image, anomaly_map[0, 0], self.threshold)  # (H, W, 3) BGR
        postprocess_ms = (time.perf_counter() - start) * 1000.0
        _, decision_ms = timed(decide, value, self.threshold)
        _, actuation_ms = timed(self.actuator.set, pulse)
        return {"postprocess": postprocess_ms, "decision": decision_ms, "actuation": actuation_ms}

    def record(self, times: dict[str, float]) -> None:
        """Keep one round's stage times."""
        for name, value in times.items():
            self.times_ms[name].append(value)

    def close(self) -> None:
        """Switch the output off and close it."""
        self.actuator.close()
