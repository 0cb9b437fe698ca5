"""The PLC side of the line, as real stand-ins: the pymodbus PLC process (`soak.plc`: heartbeat and alarm
coils, belt encoder register), a socat serial relay read by `soak.wire`, and a small tmpfs for the reject
store. Each can fail on cue."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from lineside.errors import LinesideError
from soak.camera_link import child_env
from soak.device import DEVICE_NICENESS
from soak.plc import ALARM_COIL, ENCODER_REGISTER, HEARTBEAT_COIL

PROBE_S = 0.02


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Plc:
    """Handle on the `soak.plc` process: heartbeat and alarm coil writes land in `coils_log`; `stop`/`start`
    take the server away and back; `encoder_fail(True)` makes counter reads fail."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.coils_log = folder / "coils.log"
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "soak.plc", str(self.port), str(self.coils_log)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env(),
        )  # fmt: skip
        self.zero_wall = float(self._answer()[0])  # time.time() when the belt count was 0

    def _answer(self) -> list[str]:
        assert self._proc.stdout is not None
        word, *rest = self._proc.stdout.readline().split() or [""]
        if word != "ok":
            raise RuntimeError("the PLC stand-in did not answer")
        return rest

    def command(self, line: str) -> None:
        """Send one command and wait for its `ok`."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()
        self._answer()

    def stop(self) -> None:
        self.command("stop")

    def start(self) -> None:
        self.command("start")

    def encoder_fail(self, failing: bool) -> None:
        self.command(f"encoder_fail {int(failing)}")

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.write("quit\n")
            self._proc.stdin.close()
            self._proc.wait(10)

    def coils(self) -> dict[int, list[tuple[float, bool]]]:
        """Every coil write so far: address -> [(time.time(), value)]."""
        written: dict[int, list[tuple[float, bool]]] = {HEARTBEAT_COIL: [], ALARM_COIL: []}
        for line in self.coils_log.read_text().splitlines() if self.coils_log.exists() else []:
            stamp, address, value = line.split()
            written[int(address)].append((float(stamp), value == "1"))
        return written

    def url(self, what: str) -> str:
        """modbus+tcp URL of the `heartbeat` or `alarm` coil, or the `encoder` register."""
        kind, address = {"heartbeat": ("coil", HEARTBEAT_COIL), "alarm": ("coil", ALARM_COIL),
                         "encoder": ("register", ENCODER_REGISTER)}[what]  # fmt: skip
        return f"modbus+tcp://127.0.0.1:{self.port}?{kind}={address}&unit=1"


class Relay:
    """`socat` PTY pair: the runtime writes `tty`, `soak.wire` reads the other end into `wire_log` (NAME.log)."""

    def __init__(self, folder: Path, name: str = "wire") -> None:
        if shutil.which("socat") is None:
            raise LinesideError("socat is not installed (apt-get install socat)")
        self.tty, self._plc_end = folder / f"tty-{name}-line", folder / f"tty-{name}-plc"
        self.wire_log = folder / f"{name}.log"
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
        with contextlib.suppress(OSError):  # socat is the cable: it runs at the devices' priority (root only)
            os.setpriority(os.PRIO_PROCESS, self._socat.pid, DEVICE_NICENESS)
        deadline = time.monotonic() + 5
        while not (self.tty.exists() and self._plc_end.exists()):
            if time.monotonic() > deadline:
                raise RuntimeError("socat did not create the PTY pair")
            time.sleep(0.01)
        self._wire = subprocess.Popen(
            [sys.executable, "-m", "soak.wire", str(self._plc_end), str(self.wire_log)],
            stdout=subprocess.PIPE, text=True, env=child_env(),
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


class Probe:
    """The wire's own delay: a second socat link like the relay's, written with the time every PROBE_S by a
    thread of the orchestrator (normal priority); under CPU load the kernel's PTY hand-over can hold bytes
    for tens of ms, and the analysis takes that delay off the relay's wire times."""

    def __init__(self, folder: Path) -> None:
        self.relay = Relay(folder, "probe")
        self.relay.start()
        self._stop = threading.Event()
        self._fd = os.open(self.relay.tty, os.O_WRONLY | os.O_NOCTTY)
        threading.Thread(target=self._write, name="soak-probe", daemon=True).start()

    def _write(self) -> None:
        while not self._stop.wait(PROBE_S):
            with contextlib.suppress(OSError):
                os.write(self._fd, f"{time.time():.6f}\n".encode())

    def close(self) -> None:
        self._stop.set()
        os.close(self._fd)
        self.relay.kill()
