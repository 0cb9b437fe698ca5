"""Dashboard parts without a server: the line-side feed, the review log (runs, filters, images), addresses."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from runtime_support import render_part

from lineside.errors import LinesideError
from lineside.runtime.dashboard.feed import LineFeed, LiveView
from lineside.runtime.dashboard.review import Filter, ReviewLog
from lineside.runtime.dashboard.server import listen, parse_address, url_of


def part_record(part_id: int, verdict: str, score: float | None, total: float | None = 5.0) -> dict:
    """A results-log part line as the pipeline writes it (inspected when `total` is given)."""
    latency = {"infer": 1.0, "total": total} if total is not None else {"total": 0.1}
    return {
        "type": "part", "part_id": part_id, "capture_time": 100.0 + part_id, "decision_time": 100.1 + part_id,
        "verdict": verdict, "score": score, "threshold": 0.7, "reason": None, "latency_ms": latency,
    }  # fmt: skip


def decode(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


# ---- feed --------------------------------------------------------------------------------------------------


def test_feed_keeps_the_latest_decision_a_bounded_reject_strip_and_latency_series():
    feed = LineFeed(rejects_kept=3, series_kept=4, reject_interval_s=0)
    image, amap = render_part(True, 1, (64, 64)), np.full((64, 64), 0.9, np.float32)
    for part in range(10):
        reject = part % 2 == 1
        feed.decided(
            part_record(part, "REJECT" if reject else "PASS", 0.9 if reject else 0.4, float(part)), image, amap
        )
    feed.decided(part_record(10, "ERROR", None, total=None), None, None)  # a missed part: no image, not inspected
    view = feed.view()
    assert view["latest"]["part_id"] == 10 and view["latest"]["image"] is False
    assert [r["part_id"] for r in view["rejects"]] == [10, 9, 7]  # newest first, ERROR included, 3 kept
    assert [(p["part_id"], p["total_ms"]) for p in view["series"]] == [(6, 6.0), (7, 7.0), (8, 8.0), (9, 9.0)]
    assert json.loads(json.dumps(view)) == view  # JSON-ready


def test_feed_stores_references_only():
    feed = LineFeed()
    image, amap = render_part(True, 2, (64, 64)), np.zeros((64, 64), np.float32)
    feed.decided(part_record(0, "REJECT", 0.9), image, amap)
    seen = feed._rejects[0]
    assert seen.image is image and seen.anomaly_map is amap  # no copy on the line's thread


def test_feed_renders_the_heatmap_overlay_and_rate_limits_the_latest_frame():
    feed = LineFeed(frame_interval_s=0.3)
    image = render_part(True, 3, (600, 800))  # camera-sized: scaled to fit the page
    amap = np.zeros((600, 800), np.float32)
    amap[:, 400:] = 2.0  # right half far above the 0.7 threshold: red in the overlay
    feed.decided(part_record(0, "REJECT", 2.0), image, amap)
    frame = decode(feed.latest_jpeg())
    assert frame.shape == (360, 480, 3)
    left, right = frame[:, :200].astype(float).mean((0, 1)), frame[:, 280:].astype(float).mean((0, 1))
    assert right[2] > left[2] + 40  # BGR: more red where the map is high
    first = feed.latest_jpeg()
    feed.decided(part_record(1, "PASS", 0.1), render_part(False, 4, (600, 800)), np.zeros((600, 800), np.float32))
    assert feed.latest_jpeg() is first  # within the interval the cached JPEG serves every client
    time.sleep(0.35)
    assert feed.latest_jpeg() != first


def test_feed_serves_kept_rejects_only():
    feed = LineFeed(rejects_kept=2, reject_interval_s=0)
    for part in range(3):
        feed.decided(part_record(part, "REJECT", 0.9), render_part(True, part, (64, 64)), np.ones((64, 64), np.float32))
    assert feed.reject_jpeg(1, "image") is None  # seq 1 left the strip
    image, heatmap = feed.reject_jpeg(3, "image"), feed.reject_jpeg(3, "heatmap")
    assert decode(image).shape == decode(heatmap).shape == (64, 64, 3)
    assert image != heatmap
    assert feed.reject_jpeg(3, "image") is image  # encoded once


def test_feed_admits_at_most_one_reject_per_interval_to_the_strip():
    """A burst of rejects is dropped for the page, counted, and never for the line."""
    feed = LineFeed(reject_interval_s=0.2)
    image, amap = render_part(True, 6, (64, 64)), np.ones((64, 64), np.float32)
    for part in range(5):
        feed.decided(part_record(part, "REJECT", 0.9), image, amap)
    view = feed.view()
    assert [r["part_id"] for r in view["rejects"]] == [0] and view["rejects_not_shown"] == 4
    time.sleep(0.25)
    feed.decided(part_record(5, "ERROR", None, total=None), None, None)
    assert [r["part_id"] for r in feed.view()["rejects"]] == [5, 0]
    assert feed.view()["latest"]["part_id"] == 5


def test_live_view_computes_parts_per_second_and_caches_snapshots():
    feed, parts = LineFeed(), {"parts": 0}
    view = LiveView(feed, lambda: {"parts": parts["parts"]}, period_s=0.2)
    first = view.snapshot()
    assert first["fps"] is None and first["latest"] is None
    parts["parts"] = 10
    assert view.snapshot() is first  # cached within the period
    time.sleep(0.5)
    second = view.snapshot()
    assert second["parts"] == 10
    assert 10 / 0.8 < second["fps"] < 10 / 0.45


# ---- addresses ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), ("0.0.0.0:0", ("0.0.0.0", 0)), ("[::1]:9000", ("::1", 9000))],
)
def test_parse_address(text: str, expected: tuple[str, int]):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["8080", "127.0.0.1", "127.0.0.1:http", "host.example:80", ":8080", "1.2.3.4:70000"])
def test_parse_address_refuses(text: str):
    with pytest.raises(LinesideError, match="must be HOST:PORT"):
        parse_address(text)


@pytest.mark.network
def test_listen_on_a_busy_port_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(LinesideError, match=f"cannot listen on 127.0.0.1:{port}: Address already in use"):
            listen(f"127.0.0.1:{port}")
    sock = listen("127.0.0.1:0")
    assert url_of(sock).startswith("http://127.0.0.1:")
    sock.close()


# ---- review log --------------------------------------------------------------------------------------------


def write_image(path: Path, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), render_part(True, 0, (64, 64)))
    os.utime(path, (mtime, mtime))


def start_event(when: float, folder: Path, class_name: str) -> dict:
    return {"type": "event", "event": "start", "time": when, "class": class_name, "save_rejects": str(folder)}


@pytest.fixture
def two_runs(tmp_path: Path) -> Path:
    """A log of two runs into one reject folder: run 0 (washer, parts 0-3), run 1 (screw, parts 0-2)."""
    folder = tmp_path / "rejects"
    lines = [
        start_event(1000.0, folder, "washer"),
        part_record(0, "PASS", 0.2),
        part_record(1, "REJECT", 0.95, total=9.0),
        part_record(2, "ERROR", None, total=None),
        part_record(3, "REJECT", 0.8, total=7.0),
        {"type": "event", "event": "stop", "time": 1100.0},
        start_event(2000.0, folder, "screw"),
        part_record(0, "PASS", 0.3),
        part_record(1, "REJECT", 0.75, total=6.0),
        part_record(2, "PASS", 0.1),
    ]
    log = tmp_path / "results.jsonl"
    log.write_text("".join(json.dumps(line) + "\n" for line in lines) + "not json\n")
    write_image(folder / "part000000003.jpg", 1050.0)  # run 0's part 3
    write_image(folder / "part000000003_heatmap.jpg", 1050.0)
    write_image(folder / "part000000001.jpg", 2050.0)  # run 1's part 1 replaced run 0's part 1
    return log


def test_review_filters_by_verdict_class_and_score(two_runs: Path):
    review = ReviewLog(two_runs)
    assert review.bad_lines == 1 and review.classes() == ["screw", "washer"]
    everything = review.query(Filter())
    assert everything["total"] == 7 and everything["verdicts"] == {"PASS": 3, "REJECT": 3, "ERROR": 1}
    assert [(i["run"], i["part_id"]) for i in everything["items"]][:3] == [(1, 2), (1, 1), (1, 0)]  # newest first
    rejects = review.query(Filter(verdict="REJECT"))
    assert [(i["run"], i["part_id"], i["class"]) for i in rejects["items"]] == [
        (1, 1, "screw"),
        (0, 3, "washer"),
        (0, 1, "washer"),
    ]
    assert [p["total_ms"] for p in rejects["series"]] == [9.0, 7.0, 6.0]
    assert (rejects["p50_ms"], rejects["p99_ms"]) == (7.0, pytest.approx(8.96))
    washer = review.query(Filter(class_name="washer", min_score=0.5, max_score=0.9))
    assert [i["part_id"] for i in washer["items"]] == [3]  # 0.95 too high, the ERROR has no score
    assert review.query(Filter(), offset=5, limit=10)["items"][0]["part_id"] == 1


def test_review_finds_each_decisions_own_images(two_runs: Path, tmp_path: Path):
    review = ReviewLog(two_runs)
    items = {(i["run"], i["part_id"]): i for i in review.query(Filter(verdict="REJECT"))["items"]}
    assert items[(0, 3)]["image"] and items[(0, 3)]["heatmap"]
    assert not items[(0, 1)]["image"]  # its file was overwritten by run 1: not shown as run 0's part
    assert items[(1, 1)]["image"] and not items[(1, 1)]["heatmap"]
    assert review.image_path(items[(0, 3)]["index"], "heatmap") == tmp_path / "rejects" / "part000000003_heatmap.jpg"
    assert review.image_path(99, "image") is None


def test_review_reads_lines_appended_later_and_waits_for_a_partial_line(two_runs: Path):
    review = ReviewLog(two_runs)
    line = json.dumps(part_record(3, "REJECT", 0.99))
    with open(two_runs, "a") as handle:
        handle.write(line[:20])
    assert review.query(Filter())["total"] == 7
    with open(two_runs, "a") as handle:
        handle.write(line[20:] + "\n")
    assert review.query(Filter())["total"] == 8 and review.bad_lines == 1


def test_review_of_a_missing_log_is_a_clear_error(tmp_path: Path):
    with pytest.raises(LinesideError, match="does not exist"):
        ReviewLog(tmp_path / "results.jsonl")
