"""The PLC side of the line, as real stand-ins: a pymodbus server (heartbeat coil, belt encoder register),
a socat serial relay read by `soak.wire`, and a small tmpfs for the reject store. Each can fail on cue."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from lineside.errors import LinesideError

HEARTBEAT_COIL = 0
ALARM_COIL = 1
ENCODER_REGISTER = 4
COUNTS_PER_S = 1000.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Plc:
    """pymodbus TCP server on 127.0.0.1: records heartbeat and alarm coil writes; the encoder register holds the
    belt count (COUNTS_PER_S, 16 bits) and answers with an exception while `encoder_fail` is set."""

    def __init__(self) -> None:
        self.port = free_port()
        self.coils: dict[int, list[tuple[float, bool]]] = {HEARTBEAT_COIL: [], ALARM_COIL: []}  # (time.time(), value)
        self.encoder_fail = False
        self.encoder_errors = 0
        self._start = time.monotonic()
        self._loop = asyncio.new_event_loop()
        self._server = None
        threading.Thread(target=self._loop.run_forever, name="soak-plc", daemon=True).start()

    async def _action(self, fc: int, start: int, address: int, count: int, registers: list, values: list | None):
        from pymodbus.constants import ExcCodes

        if values is not None and fc == 5 and address in self.coils:
            self.coils[address].append((time.time(), bool(values[0])))
        if fc == 3 and address == ENCODER_REGISTER:
            if self.encoder_fail:
                self.encoder_errors += 1
                return ExcCodes.DEVICE_BUSY
            registers[address - start] = int((time.monotonic() - self._start) * COUNTS_PER_S) % 65536
        return None

    async def _serve(self) -> None:
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        bits, regs = DataType.BITS, DataType.REGISTERS
        blocks = ([SimData(0, count=16, values=False, datatype=bits)], [SimData(0, count=16, values=False, datatype=bits)],
                  [SimData(0, count=16, values=0, datatype=regs)], [SimData(0, count=16, values=0, datatype=regs)])  # fmt: skip
        self._server = ModbusTcpServer(
            SimDevice(id=1, simdata=blocks, action=self._action), address=("127.0.0.1", self.port)
        )
        await self._server.serve_forever()

    def start(self) -> None:
        """Serve (again) on the same port; returns once it accepts connections."""
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("the PLC stand-in did not start")

    def stop(self) -> None:
        """Stop serving (clients see the connection drop)."""
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(10)
            self._server = None

    def url(self, what: str) -> str:
        """modbus+tcp URL of the `heartbeat` or `alarm` coil, or the `encoder` register."""
        kind, address = {"heartbeat": ("coil", HEARTBEAT_COIL), "alarm": ("coil", ALARM_COIL),
                         "encoder": ("register", ENCODER_REGISTER)}[what]  # fmt: skip
        return f"modbus+tcp://127.0.0.1:{self.port}?{kind}={address}&unit=1"


class Relay:
    """`socat` PTY pair: the runtime writes `tty`, `soak.wire` reads the other end into `wire_log`."""

    def __init__(self, folder: Path) -> None:
        if shutil.which("socat") is None:
            raise LinesideError("socat is not installed (apt-get install socat)")
        self.tty, self._plc_end, self.wire_log = folder / "ttyRuntime", folder / "ttyPlc", folder / "wire.log"
        self._socat: subprocess.Popen | None = None
        self._wire: subprocess.Popen | None = None

    def start(self) -> None:
        """Create the PTY pair (same link names each time) and start reading the PLC end."""
        for link in (self.tty, self._plc_end):
            link.unlink(missing_ok=True)
        self._socat = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.tty}", f"pty,raw,echo=0,link={self._plc_end}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 5
        while not (self.tty.exists() and self._plc_end.exists()):
            if time.monotonic() > deadline:
                raise RuntimeError("socat did not create the PTY pair")
            time.sleep(0.01)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        self._wire = subprocess.Popen(
            [sys.executable, "-m", "soak.wire", str(self._plc_end), str(self.wire_log)],
            stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        assert self._wire.stdout is not None
        if self._wire.stdout.readline().strip() != "ready":
            raise RuntimeError("the relay reader did not start")

    def kill(self) -> None:
        """Link loss: socat dies at once (SIGKILL); the reader ends with it."""
        for proc in (self._socat, self._wire):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(5)
        self._socat = self._wire = None


class RejectDisk:
    """A tmpfs of `size_mb` for --save-rejects; `fill()` leaves it full (a ballast file), `free()` undoes it."""

    def __init__(self, folder: Path, size_mb: float) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        mount = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={int(size_mb * 1024)}k", "tmpfs", str(folder)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if mount.returncode != 0:
            raise LinesideError(f"cannot mount a tmpfs for the disk_full fault (needs root): {mount.stderr.strip()}")
        self.rejects = folder / "rejects"
        self.rejects.mkdir()
        self._ballast = folder / "ballast"

    def fill(self) -> None:
        """Write zeros until the file system is full."""
        block = bytes(64 * 1024)
        with open(self._ballast, "ab", buffering=0) as out:
            try:
                while out.write(block):
                    pass
            except OSError:  # ENOSPC: full
                pass

    def free(self) -> None:
        self._ballast.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", str(self.folder)], capture_output=True, check=False)
