"""A recorded results log as the review page sees it: decisions grouped into runs, filters, saved images.

`lineside run` appends to the log, and part ids restart with every run, so each `start` event opens a
run; it names the run's class and its `--save-rejects` folder. A saved image belongs to a decision only
if it was written during that decision's run (a later run reuses the file names).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lineside.errors import LinesideError

VERDICTS = ("PASS", "REJECT", "ERROR")
SERIES_KEPT = 300


@dataclass(frozen=True)
class Run:
    """One `lineside run` in the log."""

    start: float  # time.time() of its start event (0 when the log has none)
    class_name: str | None
    images: Path | None  # its --save-rejects folder


@dataclass(frozen=True)
class Filter:
    """What the page asks for; None = any."""

    verdict: str | None = None
    class_name: str | None = None
    min_score: float | None = None
    max_score: float | None = None

    def accepts(self, record: dict[str, Any], run: Run) -> bool:
        """Whether a decision passes every given criterion (a score bound excludes decisions without a score)."""
        score = record.get("score")
        return (
            (self.verdict is None or record["verdict"] == self.verdict)
            and (self.class_name is None or run.class_name == self.class_name)
            and (self.min_score is None or (score is not None and score >= self.min_score))
            and (self.max_score is None or (score is not None and score <= self.max_score))
        )


class ReviewLog:
    """Reads a results log (and whatever is appended to it later) into decisions with their runs."""

    def __init__(self, path: Path, images: Path | None = None) -> None:
        if not path.is_file():
            raise LinesideError(f"results log {path} does not exist (give the --log file of `lineside run`)")
        self.path = path
        self.images = images  # overrides every run's folder
        self.bad_lines = 0
        self._runs: list[Run] = []
        self._decisions: list[tuple[int, dict[str, Any]]] = []  # (run index, part record)
        self._offset = 0
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        """Read the complete lines appended since the last read (a line still being written waits)."""
        with self._lock:
            try:
                with open(self.path, "rb") as handle:
                    handle.seek(self._offset)
                    data = handle.read()
            except OSError as exc:
                raise LinesideError(f"cannot read results log {self.path}: {exc}") from exc
            complete = data[: data.rfind(b"\n") + 1]
            self._offset += len(complete)
            for line in complete.splitlines():
                self._add(line)

    def _add(self, line: bytes) -> None:
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            self.bad_lines += 1
            return
        if not isinstance(record, dict):
            self.bad_lines += 1
        elif record.get("event") == "start":
            folder = record.get("save_rejects")
            self._runs.append(
                Run(float(record.get("time", 0.0)), record.get("class"), Path(folder) if folder else None)
            )
        elif record.get("type") == "part" and record.get("verdict") in VERDICTS and "part_id" in record:
            if not self._runs:
                self._runs.append(Run(0.0, None, None))  # a log written before start events existed
            self._decisions.append((len(self._runs) - 1, record))

    def classes(self) -> list[str]:
        """The classes named by the log's runs."""
        with self._lock:
            return sorted({run.class_name for run in self._runs if run.class_name})

    def query(self, where: Filter, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        """Matching decisions, newest first (one page of them), with counters and latencies over all matches."""
        self.refresh()
        with self._lock:
            runs = list(self._runs)
            matches = [(i, r) for i, (run, r) in enumerate(self._decisions) if where.accepts(r, runs[run])]
        verdicts = {v: 0 for v in VERDICTS}
        for _, record in matches:
            verdicts[record["verdict"]] += 1
        totals = [(i, r) for i, r in matches if "infer" in r.get("latency_ms", {})]
        latency = np.array([r["latency_ms"]["total"] for _, r in totals], dtype=float)
        p50, p99 = np.percentile(latency, (50, 99)) if latency.size else (None, None)
        times = [r["decision_time"] for _, r in matches if "decision_time" in r]
        span = max(times) - min(times) if len(times) > 1 else 0.0
        page = matches[::-1][offset : offset + limit]
        return {
            "total": len(matches),
            "parts": len(matches),
            "verdicts": verdicts,
            "fps": round((len(times) - 1) / span, 2) if span > 0 else None,
            "p50_ms": None if p50 is None else round(float(p50), 2),
            "p99_ms": None if p99 is None else round(float(p99), 2),
            "items": [self._item(index, record, runs) for index, record in page],
            "series": [
                {"part_id": r["part_id"], "verdict": r["verdict"], "total_ms": r["latency_ms"]["total"]}
                for _, r in totals[-SERIES_KEPT:]
            ],
        }

    def _item(self, index: int, record: dict[str, Any], runs: list[Run]) -> dict[str, Any]:
        run = self._decisions[index][0]
        return {
            "index": index,
            "run": run,
            "class": runs[run].class_name,
            "part_id": record["part_id"],
            "verdict": record["verdict"],
            "score": record.get("score"),
            "threshold": record.get("threshold"),
            "reason": record.get("reason"),
            "time": record.get("decision_time"),
            "image": self.image_path(index, "image") is not None,
            "heatmap": self.image_path(index, "heatmap") is not None,
        }

    def image_path(self, index: int, kind: str) -> Path | None:
        """The saved image (`kind` "image") or heatmap overlay ("heatmap") of decision `index`, if it still exists."""
        with self._lock:
            if not 0 <= index < len(self._decisions):
                return None
            run_index, record = self._decisions[index]
            run = self._runs[run_index]
            next_start = self._runs[run_index + 1].start if run_index + 1 < len(self._runs) else float("inf")
        folder = self.images or run.images
        if folder is None:
            return None
        suffix = "_heatmap" if kind == "heatmap" else ""
        path = folder / f"part{record['part_id']:09d}{suffix}.jpg"
        try:
            written = path.stat().st_mtime
        except OSError:
            return None
        return path if run.start <= written < next_start else None
