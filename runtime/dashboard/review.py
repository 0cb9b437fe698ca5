"""A recorded results log as the review page sees it: decisions grouped into runs, filters, saved images.

`lineside run` appends to the log, and part ids restart with every run, so each `start` event opens a
run; it names the run's class, its `--save-rejects` folder and its run id, which names its saved images
(RUN_partNNN.jpg). In a log from before run ids, a saved image (partNNN.jpg) belongs to a decision only if
it was written during that decision's run (a later run reused the file names).

The log is streamed, never held: each decision keeps one row of compact columns (where its line starts,
its run, verdict, part id, score, time, latency: 45 bytes), filters and counters run over those columns,
and a page of decisions is read back from disk by offset. A line that is not JSON, or a record with the
wrong types (a score that is not a finite number, a part id that is not an integer...), is skipped and
counted, never served.
"""

from __future__ import annotations

import json
import math
import os
import threading
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from lineside.errors import LinesideError
from lineside.runtime.results import reject_image_name

VERDICTS = ("PASS", "REJECT", "ERROR")
SERIES_KEPT = 300
MAX_LINE = 1 << 20  # bytes; the runtime writes lines of a few hundred, a longer one is skipped as bad
_COLUMNS = {"offset": "q", "run": "i", "verdict": "b", "part_id": "q", "score": "d", "time": "d", "total_ms": "d"}


@dataclass(frozen=True)
class Run:
    """One `lineside run` in the log."""

    start: float  # time.time() of its start event (0 when the log has none)
    class_name: str | None
    images: Path | None  # its --save-rejects folder
    run_id: str | None = None  # names its saved images (logs from before run ids: None)


class _Row(NamedTuple):
    """One decision's index (its number in the log) and columns (in the order of _COLUMNS)."""

    decision: int
    offset: int
    run: int
    verdict: int
    part_id: int
    score: float
    time: float
    total_ms: float


@dataclass(frozen=True)
class Filter:
    """What the page asks for; None = any."""

    verdict: str | None = None
    class_name: str | None = None
    min_score: float | None = None
    max_score: float | None = None


class _Malformed(ValueError):
    """A record field of the wrong type."""


def _optional(value: Any) -> float:
    """NaN for an absent/null field, the value of a finite number; _Malformed otherwise (a bool is no number)."""
    if value is None:
        return math.nan
    if type(value) not in (int, float) or not math.isfinite(value):
        raise _Malformed
    return float(value)


def part_row(record: dict[str, Any]) -> tuple[int, int, float, float, float] | None:
    """(verdict code, part id, score, time, total ms) of a well-typed part record (NaN = absent); None if malformed.

    Also checked, for the page: threshold (a number or null), reason (text or null), latency_ms (an object
    whose `total` is a number whenever it has `infer`).
    """
    part_id, verdict, latency = record.get("part_id"), record.get("verdict"), record.get("latency_ms", {})
    if type(part_id) is not int or part_id < 0 or not isinstance(verdict, str) or verdict not in VERDICTS:
        return None
    if type(latency) is not dict or not isinstance(record.get("reason"), (str, type(None))):
        return None
    try:
        score, when = _optional(record.get("score")), _optional(record.get("decision_time"))
        _optional(record.get("threshold"))  # shown on the page: a number or null too
        total = _optional(latency["total"]) if "infer" in latency else math.nan
    except (_Malformed, KeyError):
        return None
    if "infer" in latency and math.isnan(total):
        return None
    return VERDICTS.index(verdict), part_id, score, when, total


def start_run(record: dict[str, Any]) -> Run | None:
    """The run a well-typed start event opens; None if malformed."""
    started, class_name, folder = record.get("time", 0.0), record.get("class"), record.get("save_rejects")
    run_id = record.get("run_id")
    if type(started) not in (int, float) or not math.isfinite(started):
        return None
    if not all(isinstance(v, (str, type(None))) for v in (class_name, folder, run_id)):
        return None
    return Run(float(started), class_name, Path(folder) if folder else None, run_id or None)


class ReviewLog:
    """Indexes a results log (and whatever is appended to it later) into decisions with their runs."""

    def __init__(self, path: Path, images: Path | None = None) -> None:
        if not path.is_file():
            raise LinesideError(f"results log {path} does not exist (give the --log file of `lineside run`)")
        self.path = path
        self.images = images  # overrides every run's folder
        self._lock = threading.Lock()
        self._reset(None)
        self.refresh()

    def _reset(self, identity: tuple[int, int] | None) -> None:
        """Forget everything read (a new log, or one replaced or truncated since)."""
        self.bad_lines = 0  # not JSON objects, or longer than MAX_LINE
        self.bad_records = 0  # JSON, but a part or start record with the wrong types
        self._runs: list[Run] = []
        self._cols: dict[str, array[Any]] = {name: array(code) for name, code in _COLUMNS.items()}
        self._offset = 0
        self._identity = identity

    def refresh(self) -> None:
        """Index the complete lines appended since the last read (a line still being written waits)."""
        with self._lock:
            try:
                with open(self.path, "rb") as handle:
                    stat = os.fstat(handle.fileno())
                    if (stat.st_dev, stat.st_ino) != self._identity or stat.st_size < self._offset:
                        self._reset((stat.st_dev, stat.st_ino))
                    handle.seek(self._offset)
                    self._read(handle)
            except OSError as exc:
                raise LinesideError(f"cannot read results log {self.path}: {exc}") from exc

    def _read(self, handle: BinaryIO) -> None:
        while line := handle.readline(MAX_LINE + 1):
            if not line.endswith(b"\n"):
                if len(line) <= MAX_LINE:
                    return  # still being written: read it next time
                while (more := handle.readline(MAX_LINE)) and not more.endswith(b"\n"):
                    pass  # skip the rest of an overlong line
                if not more:
                    return
                self._offset = handle.tell()
                self.bad_lines += 1
                continue
            self._add(line, self._offset)
            self._offset += len(line)

    def _add(self, line: bytes, offset: int) -> None:
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            record = None
        if not isinstance(record, dict):
            self.bad_lines += 1
        elif record.get("event") == "start":
            run = start_run(record)
            if run is None:
                self.bad_records += 1
            else:
                self._runs.append(run)
        elif record.get("type") == "part":
            row = part_row(record)
            if row is None:
                self.bad_records += 1
                return
            if not self._runs:
                self._runs.append(Run(0.0, None, None))  # a log written before start events existed
            for name, value in zip(_COLUMNS, (offset, len(self._runs) - 1, *row), strict=True):
                self._cols[name].append(value)

    def classes(self) -> list[str]:
        """The classes named by the log's runs."""
        with self._lock:
            return sorted({run.class_name for run in self._runs if run.class_name})

    def _views(self) -> dict[str, np.ndarray]:
        """Zero-copy views of the columns; only under the lock, and dropped before it is released (a view pins
        its array, which then cannot grow)."""
        return {name: np.frombuffer(column, dtype=column.typecode) for name, column in self._cols.items()}

    def _mask(self, where: Filter, cols: dict[str, np.ndarray]) -> np.ndarray:
        """Which decisions pass the filter (a score bound excludes decisions without a score)."""
        keep = np.ones(cols["run"].size, dtype=bool)
        if where.verdict is not None:
            keep &= cols["verdict"] == VERDICTS.index(where.verdict)
        if where.class_name is not None:
            in_class = np.array([run.class_name == where.class_name for run in self._runs] or [False], dtype=bool)
            keep &= in_class[cols["run"]]
        with np.errstate(invalid="ignore"):  # NaN (no score) fails every bound, as it should
            if where.min_score is not None:
                keep &= cols["score"] >= where.min_score
            if where.max_score is not None:
                keep &= cols["score"] <= where.max_score
        return keep

    def _summary(self, where: Filter, offset: int, limit: int) -> tuple[dict[str, Any], list[_Row]]:
        """Counters, latencies and series over all matches, and the page's rows."""
        cols = self._views()
        try:
            found = np.flatnonzero(self._mask(where, cols))  # (matches,) oldest first
            counts = np.bincount(cols["verdict"][found], minlength=len(VERDICTS))
            totals = cols["total_ms"][found]
            timed = found[~np.isnan(totals)]
            latency = totals[~np.isnan(totals)]
            p50, p99 = np.percentile(latency, (50, 99)) if latency.size else (None, None)
            times = cols["time"][found]
            times = times[~np.isnan(times)]
            span = float(times.max() - times.min()) if times.size > 1 else 0.0
            page = found[::-1][offset : offset + limit]
            rows = [_Row(i, *(cols[name][i].item() for name in _COLUMNS)) for i in page.tolist()]
            series = [
                {"part_id": int(cols["part_id"][i]), "verdict": VERDICTS[cols["verdict"][i]], "total_ms": float(ms)}
                for i, ms in zip(timed[-SERIES_KEPT:].tolist(), latency[-SERIES_KEPT:].tolist(), strict=True)
            ]
            summary = {
                "total": int(found.size),
                "parts": int(found.size),
                "verdicts": {v: int(n) for v, n in zip(VERDICTS, counts, strict=True)},
                "fps": round((times.size - 1) / span, 2) if span > 0 else None,
                "p50_ms": None if p50 is None else round(float(p50), 2),
                "p99_ms": None if p99 is None else round(float(p99), 2),
                "series": series,
                "bad_lines": self.bad_lines,
                "bad_records": self.bad_records,
            }
        finally:
            del cols
        return summary, rows

    def query(self, where: Filter, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        """Matching decisions, newest first (one page of them), with counters and latencies over all matches."""
        self.refresh()
        with self._lock:
            summary, rows = self._summary(where, offset, limit)
            runs = list(self._runs)
        return {**summary, "items": self._items(rows, runs)}

    def _record_at(self, handle: BinaryIO, offset: int, part_id: int) -> dict[str, Any]:
        """The part record indexed at `offset`; {} when the log changed under it (rotated, truncated)."""
        handle.seek(offset)
        try:
            record = json.loads(handle.readline(MAX_LINE + 1))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return {}
        same = isinstance(record, dict) and record.get("part_id") == part_id and part_row(record) is not None
        return record if same else {}

    def _items(self, rows: list[_Row], runs: list[Run]) -> list[dict[str, Any]]:
        """The page's decisions: the indexed columns, plus threshold and reason read back from the line on disk."""
        items = []
        with open(self.path, "rb") as handle:
            for row in rows:
                record = self._record_at(handle, row.offset, row.part_id)
                items.append(
                    {
                        "index": row.decision,
                        "run": row.run,
                        "class": runs[row.run].class_name,
                        "part_id": row.part_id,
                        "verdict": VERDICTS[row.verdict],
                        "score": None if math.isnan(row.score) else row.score,
                        "threshold": record.get("threshold"),
                        "reason": record.get("reason"),
                        "time": None if math.isnan(row.time) else row.time,
                        "image": self.image_path(row.decision, "image") is not None,
                        "heatmap": self.image_path(row.decision, "heatmap") is not None,
                    }
                )
        return items

    def image_path(self, index: int, kind: str) -> Path | None:
        """The saved image (`kind` "image") or heatmap overlay ("heatmap") of decision `index`, if it still exists."""
        with self._lock:
            if not 0 <= index < len(self._cols["run"]):
                return None
            run_index, part_id = self._cols["run"][index], self._cols["part_id"][index]
            run = self._runs[run_index]
            next_start = self._runs[run_index + 1].start if run_index + 1 < len(self._runs) else float("inf")
        folder = self.images or run.images
        if folder is None:
            return None
        path = folder / reject_image_name(run.run_id, part_id, heatmap=kind == "heatmap")
        try:
            written = path.stat().st_mtime
        except OSError:
            return None
        if run.run_id is not None:
            return path  # the name is the run's own
        return path if run.start <= written < next_start else None  # a later run may have reused the name
