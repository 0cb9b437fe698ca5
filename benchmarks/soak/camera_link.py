"""The orchestrator's handle on the camera process: start it, follow its progress, resume it after a pause."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1]


def child_env() -> dict[str, str]:
    """Environment for the soak's child processes: `soak` importable."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCHMARKS), os.environ.get("PYTHONPATH")]))}


class CameraLink:
    """Runs `soak.camera PLAN` and parses its stdout into `parts` (part -> (wall, status)) and `connections`."""

    def __init__(self, plan: dict, folder: Path, on_part: Callable[[], None] = lambda: None) -> None:
        path = folder / "camera_plan.json"
        path.write_text(json.dumps(plan))
        self.parts: dict[int, tuple[float, str]] = {}
        self.connections: list[float] = []
        self.paused_at: int | None = None
        self.done = False
        self._on_part = on_part
        self._changed = threading.Condition()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "soak.camera", str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, env=child_env(),
        )  # fmt: skip
        assert self._proc.stdout is not None
        first = self._proc.stdout.readline().split()
        if first[:1] != ["ready"]:
            raise RuntimeError("the camera stand-in did not start")
        self.port = int(first[1])
        threading.Thread(target=self._follow, name="soak-camera-link", daemon=True).start()

    def _follow(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            word, *rest = line.split()
            with self._changed:
                if word == "part":
                    self.parts[int(rest[0])] = (float(rest[1]), rest[2])
                elif word == "connected":
                    self.connections.append(float(rest[1]))
                elif word == "paused":
                    self.paused_at = int(rest[0])
                elif word == "done":
                    self.done = True
                self._changed.notify_all()
            if word == "part":
                self._on_part()
        with self._changed:
            self.done = True
            self._changed.notify_all()

    def wait_for(self, test: Callable[[], bool], timeout: float) -> bool:
        """Wait until `test()` (checked on every camera line) or `timeout` seconds; returns test()."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not test():
                left = deadline - time.monotonic()
                if left <= 0 or self._proc.poll() is not None and not test():
                    return test()
                self._changed.wait(min(left, 0.5))
            return True

    def reached(self, part: int) -> bool:
        return part in self.parts or self.done

    def resume(self) -> None:
        """Restart the infeed after a pause."""
        with self._changed:
            self.paused_at = None
        self._send("resume")

    def _send(self, line: str) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()

    def close(self) -> None:
        """End the camera process."""
        if self._proc.poll() is None:
            try:
                self._send("quit")
            except (BrokenPipeError, OSError):
                pass
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
