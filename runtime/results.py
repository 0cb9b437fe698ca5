"""The results log (JSONL, one line per decision) and the reject image store, both made to outlast crashes.

Every record carries the run id (UTC start time + random suffix): part ids restart at 0 with every
run, the run id tells runs apart, and reject images are named by run id + part id so a restarted
line never overwrites the evidence of the run before.

Durability of the log (`LogPolicy`): each record is one `write()` of one whole line on an O_APPEND
file, so a killed process (SIGKILL, OOM) leaves only whole lines. The kernel writes them to disk
later; a flusher thread fsyncs after `fsync_every` records or `fsync_s` seconds, whichever comes
first, so a power cut loses at most the records of the last `fsync_s` seconds (plus one fsync's
time) and, at rates where `fsync_every` records come first, about `fsync_every` records; the line's
threads never wait for the disk. A power cut can also leave a torn last line: the next run starts
it a new line first (the fragment stays as one unparseable line; readers skip it), so a torn line
never merges with a record. The file rotates at `max_bytes` (path.1 newest ... path.N oldest).
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lineside.atomic import atomic_write_bytes
from lineside.errors import LinesideError

log = logging.getLogger(__name__)

MB = 1024 * 1024


def new_run_id() -> str:
    """A run id: UTC start time to the second and 6 random hex digits, e.g. 20261203T084512Z-3fa9c1."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


@dataclass(frozen=True)
class LogPolicy:
    """Size cap, rotation and fsync policy of the results log (`lineside run --log-*`)."""

    max_bytes: int | None = 100 * MB  # rotate before the file grows past this; None: never rotate
    keep: int = 10  # rotated files kept: path.1 (newest) ... path.keep (oldest)
    fsync_every: int = 100  # fsync once this many records are waiting
    fsync_s: float = 0.5  # and no record waits longer than this for its fsync

    @classmethod
    def from_options(cls, max_mb: float, keep: int, fsync_every: int, fsync_ms: float) -> LogPolicy:
        """The policy from `lineside run` options; LinesideError for a non-finite or out-of-range value."""
        if not (math.isfinite(max_mb) and max_mb > 0):
            raise LinesideError(f"--log-max-mb must be a positive number, got {max_mb}")
        if not math.isfinite(fsync_ms):
            raise LinesideError(f"--log-fsync-ms must be a number in (0, 60000], got {fsync_ms}")
        policy = cls(int(max_mb * MB), keep, fsync_every, fsync_ms / 1000)
        policy.check()
        return policy

    def check(self) -> None:
        """Refuse values that would switch durability or the cap off by accident."""
        if self.max_bytes is not None and self.max_bytes < 4096:
            raise LinesideError("--log-max-mb must be at least 0.004 (4 KiB)")
        if self.keep < 1:
            raise LinesideError("--log-keep must be >= 1")
        if self.fsync_every < 1:
            raise LinesideError("--log-fsync-every must be >= 1")
        if not (math.isfinite(self.fsync_s) and 0 < self.fsync_s <= 60):
            raise LinesideError("--log-fsync-ms must be a number in (0, 60000]")


class ResultsLog:
    """Appends one JSON object per line with a single write() each; rotates and fsyncs by its `LogPolicy`.

    Part records have `"type": "part"`; events (start, stop, outages, late results) `"type": "event"`.
    """

    def __init__(self, path: Path | None, policy: LogPolicy = LogPolicy(), run_id: str | None = None) -> None:
        policy.check()
        self.path, self.policy, self.run_id = path, policy, run_id
        self.lines = 0
        self.errors = 0
        self.rotations = 0
        self.fsyncs = 0
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        self._pending = 0  # records written since the last fsync began
        self._torn = False  # a write failed part-way: start the next record on a new line
        self._wake = threading.Event()
        self._closed = threading.Event()
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._open()
        except OSError as exc:
            raise LinesideError(f"cannot open results log {path}: {exc}") from exc
        threading.Thread(target=self._flusher, name="lineside-log-fsync", daemon=True).start()

    def _open(self) -> None:
        """Open (create) the log for appending; end a torn last line left by a power cut."""
        assert self.path is not None
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        if self._size:
            with open(self.path, "rb") as handle:
                handle.seek(self._size - 1)
                if handle.read(1) != b"\n":
                    log.warning("results log %s ends in a torn line (power cut?): it stays, on a line of its own",
                                self.path)  # fmt: skip
                    self._torn = True

    def write(self, record: dict[str, Any]) -> None:
        """Append `record` (with the run id) as one line."""
        if self.run_id is not None:
            record = {"run_id": self.run_id, **record}
        data = (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")
        with self._lock:
            self.lines += 1
            if self._fd is None:
                return
            try:
                if self.policy.max_bytes is not None and self._size and self._size + len(data) > self.policy.max_bytes:
                    self._rotate()
                self._append(b"\n" + data if self._torn else data)
            except OSError as exc:  # disk full or gone: the line keeps running, the failure is reported
                self.errors += 1
                if self.errors % 100 == 1:
                    log.error("results log %s: write failed (%d so far): %s", self.path, self.errors, exc)
                return
            self._pending += 1
            if self._pending >= self.policy.fsync_every:
                self._wake.set()

    def _append(self, data: bytes) -> None:
        """One write() of the whole line (a regular file takes it whole unless the disk fills)."""
        assert self._fd is not None
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:])
        finally:
            self._size += done
            self._torn = 0 < done < len(data)

    def _rotate(self) -> None:
        """path -> path.1 -> ... -> path.keep (the oldest falls off); a fresh file at path. Under the lock."""
        assert self._fd is not None and self.path is not None
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        for index in range(self.policy.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._open()
        folder = os.open(self.path.parent, os.O_RDONLY)  # the renames and the new file survive a power cut
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        self.rotations += 1
        self._pending = 0

    def _flusher(self) -> None:
        """fsync the log when `fsync_every` records wait or `fsync_s` has passed, off the line's threads."""
        while not self._closed.is_set():
            self._wake.wait(self.policy.fsync_s)
            self._wake.clear()
            self.sync()

    def sync(self) -> None:
        """fsync what was written so far (a no-op when nothing is waiting)."""
        with self._lock:
            if self._fd is None or not self._pending:
                return
            self._pending = 0
            fd = os.dup(self._fd)  # the file stays valid for this fsync even if the log rotates meanwhile
        try:
            os.fsync(fd)
            self.fsyncs += 1
        except OSError as exc:
            log.error("results log %s: fsync failed: %s", self.path, exc)
        finally:
            os.close(fd)

    def close(self) -> None:
        """fsync and close."""
        self._closed.set()
        self._wake.set()
        with self._lock:
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                finally:
                    os.close(self._fd)
                    self._fd = None


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """(H, W, 3) uint8 BGR -> JPEG bytes; OSError if OpenCV cannot encode it."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"JPEG encoding failed for an image of shape {image.shape}")
    return data.tobytes()


def heatmap_overlay(image: np.ndarray, anomaly_map: np.ndarray, threshold: float) -> np.ndarray:
    """(H, W, 3) BGR image with the anomaly map blended in; red = at least twice the threshold."""
    scale = 2.0 * threshold if threshold > 0 else float(anomaly_map.max()) or 1.0
    heat = np.clip(anomaly_map / scale, 0.0, 1.0)  # (H, W) in [0, 1]
    colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)  # (H, W, 3)
    return cv2.addWeighted(image, 0.55, colour, 0.45, 0.0)


def reject_image_name(run_id: str | None, part_id: int, heatmap: bool = False) -> str:
    """File name of a saved reject image: run id + part id (logs from before run ids: part id only)."""
    prefix = f"{run_id}_" if run_id else ""
    return f"{prefix}part{part_id:09d}{'_heatmap' if heatmap else ''}.jpg"


class RejectStore:
    """Saves reject images and heatmap overlays from its own thread, keeping the folder under `max_bytes`.

    Files are named by run id + part id, so a restarted line never overwrites earlier evidence. The
    cap counts every JPEG in the folder, including those of earlier runs found at start; when it is
    reached the oldest files (by modification time) are deleted first. When the writer falls behind,
    new saves are skipped and counted (`skipped`), never blocking the line.
    """

    def __init__(self, folder: Path, max_bytes: int, run_id: str | None = None, queue_size: int = 16) -> None:
        if max_bytes <= 0:
            raise LinesideError("--save-cap-mb must be positive")
        self.folder = folder
        self.max_bytes = max_bytes
        self.run_id = run_id or new_run_id()
        self.saved = 0
        self.skipped = 0
        self.deleted = 0
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._files = self._existing(folder)  # path -> bytes, oldest first
            self._bytes = sum(self._files.values())
            self._make_room(0)  # earlier runs' files count against the cap too
        except OSError as exc:
            raise LinesideError(f"cannot use --save-rejects folder {folder}: {exc}") from exc
        self._thread = threading.Thread(target=self._work, name="lineside-rejects", daemon=True)
        self._thread.start()

    @staticmethod
    def _existing(folder: Path) -> OrderedDict[Path, int]:
        """The folder's JPEGs, oldest first; temporary files of an interrupted save are removed."""
        for stale in folder.glob(".*.jpg.*.tmp"):
            stale.unlink(missing_ok=True)
        stats = [(p, p.stat()) for p in folder.glob("*.jpg") if p.is_file()]
        stats.sort(key=lambda item: (item[1].st_mtime, item[0].name))
        return OrderedDict((path, stat.st_size) for path, stat in stats)

    def submit(self, part_id: int, image: np.ndarray, anomaly_map: np.ndarray | None, threshold: float) -> None:
        """Queue a reject for saving; skipped (counted) if the writer is behind."""
        try:
            self._queue.put_nowait((part_id, image, anomaly_map, threshold))
        except queue.Full:
            self.skipped += 1

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._save(*item)
            except (OSError, cv2.error) as exc:
                self.skipped += 1
                log.error("could not save reject image: %s", exc)

    def _save(self, part_id: int, image: np.ndarray, anomaly_map: np.ndarray | None, threshold: float) -> None:
        outputs = [(reject_image_name(self.run_id, part_id), image)]
        if anomaly_map is not None:
            overlay = heatmap_overlay(image, anomaly_map, threshold)
            outputs.append((reject_image_name(self.run_id, part_id, heatmap=True), overlay))
        for name, picture in outputs:
            data = encode_jpeg(picture)
            if len(data) > self.max_bytes:
                raise OSError(f"{name} ({len(data)} bytes) is larger than the whole --save-cap-mb")
            path = self.folder / name
            self._bytes -= self._files.pop(path, 0)  # the same name again replaces, it does not add
            self._make_room(len(data))
            atomic_write_bytes(path, data)
            self._files[path] = len(data)
            self._bytes += len(data)
        self.saved += 1

    def _make_room(self, size: int) -> None:
        """Delete the oldest files until `size` more bytes fit under the cap."""
        while self._files and self._bytes + size > self.max_bytes:
            oldest, length = self._files.popitem(last=False)
            self._bytes -= length
            oldest.unlink(missing_ok=True)
            self.deleted += 1

    def close(self) -> None:
        """Write what is queued, then stop the writer."""
        self._queue.put(None)
        self._thread.join(timeout=30)
