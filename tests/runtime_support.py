"""Real stand-ins for the runtime tests: a tiny rule-based ONNX detector in a bundle, and synthetic parts.

The detector is a real ONNX graph with the bundle IO contract (uint8 (1, H, W, 3) BGR ->
anomaly_map (1, 1, H, W), score (1,)): the map is the 5x5 local mean brightness, the score its
maximum, so a part with a bright blob scores ~1 and a plain grey part ~0.45.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from lineside.bundle import Bundle, Manifest, TensorSpec, write_bundle

SIZE = (64, 64)
THRESHOLD = 0.7


def export_detector(path: Path, size: tuple[int, int] = SIZE, broken: bool = False) -> Path:
    """Export the brightness detector to ONNX with torch (tests may use torch; the runtime may not).

    `broken`: the graph multiplies its map by NaN, the way a diverged export does.
    """
    import torch
    from torch import nn

    class Brightness(nn.Module):
        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (1, H, W, 3) uint8
            grey = image.float().mean(dim=3, keepdim=True).permute(0, 3, 1, 2) / 255.0  # (1, 1, H, W)
            amap = nn.functional.avg_pool2d(grey, 5, stride=1, padding=2, count_include_pad=False)  # (1, 1, H, W)
            if broken:
                amap = amap * float("nan")
            return amap, amap.flatten(1).amax(dim=1)  # (1, 1, H, W), (1,)

    torch.set_num_threads(1)
    dummy = torch.zeros((1, *size, 3), dtype=torch.uint8)
    torch.onnx.export(
        Brightness(), (dummy,), str(path), input_names=["image"], output_names=["anomaly_map", "score"],
        opset_version=17, dynamo=False,
    )  # fmt: skip
    return path


@functools.cache
def _detector(size: tuple[int, int], broken: bool = False) -> Path:
    """The exported detector, once per test process."""
    folder = Path(tempfile.mkdtemp(prefix="lineside-detector-"))
    return export_detector(folder / "brightness.onnx", size, broken)


def make_bundle(
    out: Path, thresholds: dict[str, float] | None = None, size: tuple[int, int] = SIZE, broken: bool = False
) -> Bundle:
    """A real bundle around the detector (`broken`: one that outputs NaN); thresholds default to {"part": THRESHOLD}."""
    thresholds = {"part": THRESHOLD} if thresholds is None else thresholds
    manifest = Manifest(
        model="brightness-test",
        preset="test",
        classes=tuple(thresholds) or ("part",),
        input_size=size,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        precision="fp32",
        inputs=(TensorSpec("image", (1, *size, 3), "uint8"),),
        outputs=(TensorSpec("anomaly_map", (1, 1, *size), "float32"), TensorSpec("score", (1,), "float32")),
        thresholds=thresholds,
    )
    return write_bundle(out, manifest, {"model.onnx": _detector(size, broken)})


def render_part(defect: bool, seed: int, size: tuple[int, int] = (120, 160)) -> np.ndarray:
    """(H, W, 3) uint8 BGR: a grey disc with texture on a dark belt; a defect adds a bright scratch blob."""
    rng = np.random.default_rng(seed)
    height, width = size
    image = rng.integers(10, 30, (height, width, 3), dtype=np.uint8)
    centre = (width // 2 + int(rng.integers(-8, 9)), height // 2 + int(rng.integers(-8, 9)))
    cv2.circle(image, centre, min(height, width) // 3, (105, 110, 115), -1)
    if defect:
        offset = (centre[0] + int(rng.integers(-12, 13)), centre[1] + int(rng.integers(-12, 13)))
        cv2.circle(image, offset, 9, (250, 250, 250), -1)
    return image


def write_video(path: Path, defects: list[bool], fps: float = 10.0, seed: int = 0) -> Path:
    """An MJPG AVI with one part per frame; `defects[i]` says whether part i has a defect."""
    first = render_part(False, seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (first.shape[1], first.shape[0]))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write MJPG video here")
    for index, defect in enumerate(defects):
        writer.write(render_part(defect, seed + index))
    writer.release()
    return path


def write_folder(folder: Path, defects: list[bool], seed: int = 0) -> Path:
    """One PNG per part, named in order."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, defect in enumerate(defects):
        cv2.imwrite(str(folder / f"part{index:04d}.png"), render_part(defect, seed + index))
    return folder


# ---- real PLC-side stand-ins: a socat virtual serial pair and a pymodbus TCP server on 127.0.0.1 --------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SocatPair:
    """`socat pty,raw,echo=0,link=A pty,raw,echo=0,link=B`: the runtime writes A, the test reads B."""

    def __init__(self, folder: Path) -> None:
        self.a, self.b = folder / "ttyRuntime", folder / "ttyPlc"
        self.proc: subprocess.Popen | None = None

    def start(self) -> SocatPair:
        if shutil.which("socat") is None:
            pytest.skip("socat is not installed (apt-get install socat)")
        for link in (self.a, self.b):
            link.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 5
        while not (self.a.exists() and self.b.exists()):
            if time.monotonic() > deadline:
                raise RuntimeError("socat did not create the PTY pair")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None


LISTENER = r"""
import sys, time, serial
port = serial.Serial(sys.argv[1], 9600, timeout=0.02)
size = int(sys.argv[2])
print("ready", flush=True)
buffer = b""
while True:
    buffer += port.read(port.in_waiting or 1)
    now = time.time()
    while True:
        if size == 0:
            line, sep, rest = buffer.partition(b"\n")
            if not sep:
                break
        elif len(buffer) >= size:
            line, rest = buffer[:size], buffer[size:]
        else:
            break
        print(f"{now:.6f} {line.hex()}", flush=True)
        buffer = rest
"""


class SerialListener:
    """The PLC end of a serial link, in its own process (so the runtime's threads do not delay its clock):
    records every command with time.time() of its arrival."""

    def __init__(self, port: Path, frame_bytes: int | None = None) -> None:
        self.events: list[tuple[float, bytes]] = []
        self._proc = subprocess.Popen(
            [sys.executable, "-c", LISTENER, str(port), str(frame_bytes or 0)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        if self._proc.stdout is None or self._proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"serial listener could not open {port}")

    def close(self) -> None:
        """Stop listening and collect the events (commands are lines ending in \n, or fixed-size frames)."""
        time.sleep(0.1)  # let the last command arrive
        self._proc.terminate()
        out, _ = self._proc.communicate(timeout=5)
        for row in out.splitlines():
            stamp, _, data = row.partition(" ")
            self.events.append((float(stamp), bytes.fromhex(data)))


class ModbusServer:
    """A pymodbus server in its own thread, TCP on 127.0.0.1 or RTU on a serial port (one end of a socat pair);
    `writes` records every write request it receives."""

    def __init__(self, port: int | None = None, serial: Path | None = None, unit: int = 1) -> None:
        self.serial, self.unit = serial, unit
        self.port = port or (0 if serial else free_port())
        self.writes: list[tuple[float, int, int, bool | int]] = []  # (time.time(), unit, address, coil/register)
        self._loop = asyncio.new_event_loop()
        self._server = None
        self._thread: threading.Thread | None = None

    def _trace(self, sending: bool, pdu):  # noqa: ANN001, ANN202 - pymodbus callback
        name = type(pdu).__name__
        if not sending and name in ("WriteSingleCoilRequest", "WriteSingleRegisterRequest"):
            value = bool(pdu.bits[0]) if pdu.bits else int(pdu.registers[0])
            self.writes.append((time.time(), pdu.dev_id, pdu.address, value))
        return pdu

    def start(self) -> ModbusServer:
        from pymodbus import FramerType
        from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
        from pymodbus.server import ModbusSerialServer, ModbusTcpServer

        async def serve() -> None:
            device = ModbusDeviceContext(
                co=ModbusSequentialDataBlock(1, [False] * 16), hr=ModbusSequentialDataBlock(1, [0] * 16)
            )
            context = ModbusServerContext(devices={self.unit: device})
            if self.serial is not None:
                self._server = ModbusSerialServer(
                    context, framer=FramerType.RTU, port=str(self.serial), baudrate=19200, trace_pdu=self._trace
                )
            else:
                self._server = ModbusTcpServer(context, address=("127.0.0.1", self.port), trace_pdu=self._trace)
            await self._server.serve_forever()

        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(serve(),), daemon=True)
        self._thread.start()
        if self.serial is not None:
            time.sleep(0.3)  # the serial server is listening once its port is open
            return self
        deadline = time.monotonic() + 5
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if time.monotonic() > deadline:
                raise RuntimeError("modbus server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(5)
            self._thread.join(5)
            self._server = None


class MjpegCamera:
    """An IP camera stand-in on 127.0.0.1: parts at `fps` as an HTTP multipart MJPEG stream (OpenCV reads it
    through FFmpeg). The first connection freezes after `stall_after` frames, like a hung camera driver,
    while the camera keeps producing parts; later connections stream normally."""

    def __init__(self, fps: float = 10.0, stall_after: int | None = None) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.fps, self.stall_after = fps, stall_after
        self.sent: list[list[int]] = []  # per connection, the part numbers sent
        self._closing = threading.Event()
        self._jpegs = [cv2.imencode(".jpg", render_part(False, seed))[1].tobytes() for seed in range(8)]
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                camera.stream(self)

            def log_message(self, *args: object) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/stream.mjpg"

    def start(self) -> MjpegCamera:
        self._start = time.monotonic()
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def _part_now(self) -> int:
        return int((time.monotonic() - self._start) * self.fps)

    def stream(self, handler) -> None:  # noqa: ANN001 - a BaseHTTPRequestHandler
        sent: list[int] = []
        self.sent.append(sent)
        first = len(self.sent) == 1
        handler.send_response(200)
        handler.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        handler.end_headers()
        part = self._part_now()
        try:
            while not self._closing.is_set():
                if first and self.stall_after is not None and len(sent) >= self.stall_after:
                    self._closing.wait()  # hung: the connection stays open and silent
                    return
                jpeg = self._jpegs[part % len(self._jpegs)]
                handler.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
                handler.wfile.write(jpeg + b"\r\n")
                handler.wfile.flush()
                sent.append(part)
                part += 1
                time.sleep(max(0.0, self._start + part / self.fps - time.monotonic()))
        except (BrokenPipeError, ConnectionResetError):
            return

    def stop(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
