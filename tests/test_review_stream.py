"""`lineside review` streams the results log: bounded memory on a 100,000-record log, right pages and counters,
and records with the wrong types skipped and counted instead of breaking the page."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from lineside.runtime.dashboard.review import MAX_LINE, Filter, ReviewLog

RUNS = 4
PER_RUN = 25_000  # 100,000 decisions, a 27 MB log: the old reader held 2.6 KB per decision
CLASSES = ("washer", "screw")
LINE = (
    '{"type":"part","run_id":"20261203T0800%02dZ-abcdef","part_id":%d,"capture_time":%.3f,"decision_time":%.3f,'
    '"verdict":"%s","score":%s,"threshold":0.7,"reason":%s,"latency_ms":{"capture":0.4,"infer":3.1,"decide":0.1,'
    '"total":%.2f},"eject_time":null,"counter":%d}\n'
)


def _verdict(part_id: int) -> str:
    return "ERROR" if part_id % 100 == 7 else ("REJECT" if part_id % 10 == 3 else "PASS")


def _score(part_id: int) -> float:
    return (part_id % 1000) / 1000


def _write_log(path: Path) -> None:
    """RUNS runs (alternating classes) of PER_RUN parts each: 10 % rejects, 1 % errors (no score, no latency)."""
    with open(path, "w") as handle:
        for run in range(RUNS):
            start = {"type": "event", "event": "start", "time": 1000.0 * run, "class": CLASSES[run % 2]}
            handle.write(json.dumps(start) + "\n")
            chunk = []
            for i in range(PER_RUN):
                verdict = _verdict(i)
                score = "null" if verdict == "ERROR" else f"{_score(i):.3f}"
                reason = '"timeout"' if verdict == "ERROR" else "null"
                line = LINE % (run, i, 1000.0 * run + i / 100, 1000.0 * run + i / 100 + 0.01, verdict, score, reason,
                               2.0 + (i % 50) / 10, i)  # fmt: skip
                chunk.append(line.replace('"infer":3.1,', "") if verdict == "ERROR" else line)
            handle.write("".join(chunk))


@pytest.fixture(scope="module")
def big_log(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("review") / "results.jsonl"
    _write_log(path)
    return path


def test_review_of_100k_records_keeps_memory_bounded_and_pages_right(big_log: Path):
    size = big_log.stat().st_size
    tracemalloc.start()
    try:
        review = ReviewLog(big_log)
        screws = review.query(Filter(verdict="REJECT", class_name="screw", min_score=0.9), offset=3, limit=4)
        everything = review.query(Filter(), offset=0, limit=500)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size > 25_000_000
    # ~48 bytes per decision held, ~100 at the peak of a query (the old reader: 2,600, 260 MB here)
    assert peak < 16_000_000, f"peak {peak / 1e6:.1f} MB while indexing a {size / 1e6:.0f} MB log"
    assert everything["total"] == RUNS * PER_RUN and everything["bad_lines"] == everything["bad_records"] == 0
    per_run = {v: sum(_verdict(i) == v for i in range(PER_RUN)) for v in ("PASS", "REJECT", "ERROR")}
    assert everything["verdicts"] == {v: n * RUNS for v, n in per_run.items()}
    assert [(i["run"], i["part_id"]) for i in everything["items"][:2]] == [(3, PER_RUN - 1), (3, PER_RUN - 2)]
    assert len(everything["series"]) == 300 and everything["series"][-1]["part_id"] == PER_RUN - 1
    # REJECT, class screw (runs 1 and 3), score >= 0.9: part ids ending in 3 with id % 1000 >= 900
    expected = [(run, i) for run in (3, 1) for i in range(PER_RUN - 1, -1, -1) if i % 10 == 3 and _score(i) >= 0.9]
    expected = [(run, i) for run, i in expected if _verdict(i) == "REJECT"]
    assert screws["total"] == len(expected) == 500
    items = screws["items"]
    assert [(i["run"], i["part_id"]) for i in items] == expected[3:7]
    assert all(i["class"] == "screw" and i["verdict"] == "REJECT" and i["threshold"] == 0.7 for i in items)
    assert items[0]["score"] == pytest.approx(_score(items[0]["part_id"]))
    latency = np.array([2.0 + (i % 50) / 10 for i in range(PER_RUN) if _verdict(i) == "REJECT" and _score(i) >= 0.9])
    assert screws["p50_ms"] == round(float(np.percentile(latency, 50)), 2)


BAD = [
    {"type": "part", "part_id": 1, "verdict": "PASS", "score": "abc"},
    {"type": "part", "part_id": None, "verdict": "PASS", "score": 0.1},
    {"type": "part", "part_id": True, "verdict": "PASS", "score": 0.1},
    {"type": "part", "part_id": 2, "verdict": "MAYBE", "score": 0.1},
    {"type": "part", "part_id": 3, "verdict": "PASS", "score": 0.1, "latency_ms": {"infer": 1.0}},
    {"type": "part", "part_id": 4, "verdict": "PASS", "score": 0.1, "latency_ms": "fast"},
    {"type": "part", "part_id": 5, "verdict": "PASS", "score": 0.1, "threshold": [1]},
    {"type": "part", "part_id": 6, "verdict": "PASS", "score": 0.1, "reason": {"x": 1}},
    {"type": "part", "part_id": 7, "verdict": "PASS", "score": 0.1, "decision_time": "noon"},
    {"type": "event", "event": "start", "time": "x", "class": "washer"},
    {"type": "event", "event": "start", "time": 1.0, "class": 7},
]
GOOD = {"type": "part", "part_id": 9, "verdict": "REJECT", "score": 0.9, "latency_ms": {"infer": 1.0, "total": 2.0}}


def test_records_with_wrong_types_are_skipped_and_counted(tmp_path: Path):
    log = tmp_path / "results.jsonl"
    lines = [json.dumps(r) for r in [GOOD, *BAD]]
    lines += ['{"type": "part", "part_id": 8, "verdict": "PASS", "score": NaN}', "[1, 2]", "not json"]
    log.write_text("\n".join(lines) + "\n")
    review = ReviewLog(log)
    result = review.query(Filter(min_score=0.0))
    json.dumps(result, allow_nan=False)  # what the server sends: no NaN, no type that breaks it
    assert result["total"] == 1 and result["items"][0]["part_id"] == 9 and result["p50_ms"] == 2.0
    assert (result["bad_records"], result["bad_lines"]) == (len(BAD) + 1, 2)


def test_a_replaced_or_truncated_log_is_indexed_afresh(tmp_path: Path):
    log = tmp_path / "results.jsonl"
    log.write_text("".join(json.dumps({**GOOD, "part_id": i}) + "\n" for i in range(5)))
    review = ReviewLog(log)
    assert review.query(Filter())["total"] == 5
    rotated = tmp_path / "new.jsonl"
    rotated.write_text(json.dumps({**GOOD, "part_id": 42}) + "\n")
    os.replace(rotated, log)  # the runtime rotated the log: a new file under the same name
    result = review.query(Filter())
    assert result["total"] == 1 and result["items"][0]["part_id"] == 42
    log.write_text("")  # truncated in place
    assert review.query(Filter())["total"] == 0


def test_an_overlong_line_is_skipped_without_reading_it_whole(tmp_path: Path):
    log = tmp_path / "results.jsonl"
    with open(log, "w") as handle:
        handle.write(json.dumps({**GOOD, "part_id": 1}) + "\n")
        handle.write('{"type": "part", "pad": "' + "x" * (3 * MAX_LINE) + '"}\n')
        handle.write(json.dumps({**GOOD, "part_id": 2}) + "\n")
    review = ReviewLog(log)
    result = review.query(Filter())
    assert [i["part_id"] for i in result["items"]] == [2, 1] and result["bad_lines"] == 1
