"""The results log (JSONL, one line per decision, flushed per line) and the reject image store."""

from __future__ import annotations

import json
import logging
import queue
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lineside.atomic import atomic_write_bytes
from lineside.errors import LinesideError

log = logging.getLogger(__name__)


class ResultsLog:
    """Appends one JSON object per line; each line is written by a single write and flushed.

    Part records have `"type": "part"`; events (actuator link lost, late results) `"type": "event"`.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lines = 0
        self.errors = 0
        self._lock = threading.Lock()
        self._handle = None
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = open(path, "a", encoding="utf-8")  # held open for the whole run
            except OSError as exc:
                raise LinesideError(f"cannot open results log {path}: {exc}") from exc

    def write(self, record: dict[str, Any]) -> None:
        """Append `record` as one line."""
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        with self._lock:
            self.lines += 1
            if self._handle is None:
                return
            try:
                self._handle.write(line)
                self._handle.flush()
            except OSError as exc:  # disk full or gone: the line keeps running, the failure is reported
                self.errors += 1
                if self.errors % 100 == 1:
                    log.error("results log %s: write failed (%d so far): %s", self.path, self.errors, exc)

    def close(self) -> None:
        """Flush to disk and close."""
        with self._lock:
            if self._handle is not None:
                self._handle.flush()
                self._handle.close()
                self._handle = None


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


class RejectStore:
    """Saves reject images and heatmap overlays from its own thread, keeping the folder under `max_bytes`.

    When the cap is reached the oldest saved files are deleted; when the writer falls behind, new
    saves are skipped and counted (`skipped`), never blocking the line.
    """

    def __init__(self, folder: Path, max_bytes: int, queue_size: int = 16) -> None:
        if max_bytes <= 0:
            raise LinesideError("--save-cap-mb must be positive")
        self.folder = folder
        self.max_bytes = max_bytes
        self.saved = 0
        self.skipped = 0
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LinesideError(f"cannot create --save-rejects folder {folder}: {exc}") from exc
        self._files = sorted((p for p in folder.glob("part*.jpg")), key=lambda p: p.stat().st_mtime)
        self._bytes = sum(p.stat().st_size for p in self._files)
        self._thread = threading.Thread(target=self._work, name="lineside-rejects", daemon=True)
        self._thread.start()

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
        outputs = [(f"part{part_id:09d}.jpg", image)]
        if anomaly_map is not None:
            outputs.append((f"part{part_id:09d}_heatmap.jpg", heatmap_overlay(image, anomaly_map, threshold)))
        for name, picture in outputs:
            data = encode_jpeg(picture)
            self._make_room(len(data))
            path = self.folder / name
            atomic_write_bytes(path, data)
            self._files.append(path)
            self._bytes += len(data)
        self.saved += 1

    def _make_room(self, size: int) -> None:
        while self._files and self._bytes + size > self.max_bytes:
            oldest = self._files.pop(0)
            try:
                self._bytes -= oldest.stat().st_size
                oldest.unlink()
            except FileNotFoundError:
                continue

    def close(self) -> None:
        """Write what is queued, then stop the writer."""
        self._queue.put(None)
        self._thread.join(timeout=30)
