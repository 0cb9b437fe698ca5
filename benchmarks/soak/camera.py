"""The line: a camera stand-in process that images one part every 1/rate s and numbers its frames.

    python -m soak.camera PLAN.json

PLAN.json: `rate` (parts/s), `frames` (JPEG files, one per distinct part image), `sequence` (frame
index of every part), and the part-level faults as lists of part numbers: `drop` (the frame id is
skipped: the driver lost it), `corrupt` (the JPEG is cut in half), `stall` (the connection hangs from
this part on: nothing more is sent on it, as a hung driver), `disconnect` (the connection is closed),
`pause` (the infeed stops before this part until `resume` arrives on stdin: a restart of the runtime).
The belt does not wait for the runtime: a part imaged while no connection is up is lost to it.

stdout, one line each: `ready PORT`, `connected N WALL`, `paused PART`, `part PART WALL STATUS` with
STATUS one of sent, dropped, corrupt, stalled, disconnected, no_connection, send_failed.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from pathlib import Path

from soak.device import act_as_device
from soak.source import HEADER

SEND_TIMEOUT_S = 0.5


class Camera:
    """Serves the newest connection; older connections are closed once a newer one arrives."""

    def __init__(self, plan: dict) -> None:
        self.rate = float(plan["rate"])
        self.frames = [Path(p).read_bytes() for p in plan["frames"]]
        self.sequence: list[int] = plan["sequence"]
        self.faults = {kind: set(plan.get(kind, [])) for kind in ("drop", "corrupt", "stall", "disconnect", "pause")}
        self.server = socket.create_server(("127.0.0.1", 0))
        self._conn: socket.socket | None = None
        self._hung: list[socket.socket] = []
        self._lock = threading.Lock()
        self._connections = 0

    def say(self, line: str) -> None:
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def accept_forever(self) -> None:
        while True:
            conn, _ = self.server.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(SEND_TIMEOUT_S)
            with self._lock:
                old, self._conn = self._conn, conn
                hung, self._hung = self._hung, []
                self._connections += 1
                number = self._connections
            for stale in ([old] if old is not None else []) + hung:
                stale.close()
            self.say(f"connected {number} {time.time():.6f}")

    def deliver(self, part: int) -> str:
        """Image part `part` and hand it to the current connection, or apply its fault."""
        with self._lock:
            conn = self._conn
            if conn is not None and part in self.faults["stall"]:
                self._hung.append(conn)
                self._conn = None
                return "stalled"
            if conn is not None and part in self.faults["disconnect"]:
                self._conn = None
                conn.close()
                return "disconnected"
        if conn is None:
            return "no_connection"
        if part in self.faults["drop"]:
            return "dropped"
        jpeg = self.frames[self.sequence[part]]
        status = "sent"
        if part in self.faults["corrupt"]:
            jpeg, status = jpeg[: len(jpeg) // 2], "corrupt"
        try:
            conn.sendall(HEADER.pack(part, len(jpeg)) + jpeg)
        except OSError:
            with self._lock:
                if self._conn is conn:
                    self._conn = None
            return "send_failed"
        return status

    def run(self) -> None:
        """The belt: one part per period; pauses where the plan says until `resume` on stdin."""
        period = 1.0 / self.rate
        due = time.monotonic()
        for part in range(len(self.sequence)):
            if part in self.faults["pause"]:
                self.say(f"paused {part}")
                if sys.stdin.readline().strip() != "resume":
                    return
                due = time.monotonic()
            time.sleep(max(0.0, due - time.monotonic()))
            wall = time.time()
            self.say(f"part {part} {wall:.6f} {self.deliver(part)}")
            due += period
        self.say("done")
        sys.stdin.readline()  # keep the connection open until the orchestrator has stopped the runtime


def main() -> None:
    act_as_device()
    camera = Camera(json.loads(Path(sys.argv[1]).read_text()))
    threading.Thread(target=camera.accept_forever, daemon=True).start()
    camera.say(f"ready {camera.server.getsockname()[1]}")
    camera.run()


if __name__ == "__main__":
    main()
