"""The dashboard over HTTP on 127.0.0.1 (no browser): a real line replaying a video with `--dashboard`, the
review server over its log, and the CLI's one-line errors."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from runtime_support import free_port, make_bundle, write_video

from lineside.cli import main
from lineside.runtime.dashboard.review import ReviewLog
from lineside.runtime.dashboard.server import DashboardServer, listen, review_app
from lineside.runtime.runner import RunOptions, run_line
from lineside.runtime.sources.capture import CaptureConfig

pytest.importorskip("starlette", reason="the dashboard needs its extra: pip install 'lineside[dashboard]'")
pytestmark = pytest.mark.network

DEFECTS = [i % 4 == 1 for i in range(24)]


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def events(url: str):
    """Yield the JSON of each server-sent event from `url` (waiting up to 30 s for the line to bind its port)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            stream = urllib.request.urlopen(url, timeout=10)
            break
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    with stream:
        for line in stream:
            if line.startswith(b"data: "):
                yield json.loads(line[6:])


@pytest.fixture
def replay(tmp_path: Path):
    """`run_line` with --dashboard on a free port, replaying 24 parts at 8/s in a thread; yields (base URL, result)."""
    bundle = make_bundle(tmp_path / "bundle")
    video = write_video(tmp_path / "parts.avi", DEFECTS, fps=8)
    port = free_port()
    options = RunOptions(
        bundle=bundle.path, source=str(video), log_path=tmp_path / "results.jsonl", capture=CaptureConfig(rate=8),
        save_rejects=tmp_path / "rejects", status=False, dashboard=f"127.0.0.1:{port}",
    )  # fmt: skip
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(run_line(options)), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", result, thread
    thread.join(30)


def test_live_page_streams_counters_frames_and_rejects(replay):
    base, result, thread = replay
    snapshots = []
    for snapshot in events(base + "/api/events"):
        snapshots.append(snapshot)
        if snapshot["latest"] and "frame" not in result:
            status, kind, frame = get(base + "/live/frame.jpg")
            result["frame"] = (status, kind, cv2.imdecode(np.frombuffer(frame, np.uint8), cv2.IMREAD_COLOR).shape)
        if snapshot["rejects"] and "heatmap" not in result:
            seq = snapshot["rejects"][0]["seq"]
            status, kind, heatmap = get(f"{base}/live/reject/{seq}/heatmap.jpg")
            result["heatmap"] = (status, kind, len(heatmap))
        if not snapshot["running"]:
            break
    thread.join(30)
    assert result["frame"] == (200, "image/jpeg", (64, 64, 3))  # the model input with its heatmap
    assert result["heatmap"][:2] == (200, "image/jpeg") and result["heatmap"][2] > 500
    parts = [s["parts"] for s in snapshots]
    assert parts == sorted(parts) and parts[-1] == 24 and len(set(parts)) >= 3  # counters advanced live
    last = snapshots[-1]
    assert last["verdicts"] == {"PASS": 18, "REJECT": 6, "ERROR": 0} == result["verdicts"]
    assert [r["part_id"] for r in last["rejects"]] == [21, 17, 13, 9, 5, 1]
    assert last["latest"]["part_id"] == 23 and last["p99_ms"] > 0
    with pytest.raises(urllib.error.URLError):  # the page is gone with the line
        urllib.request.urlopen(base + "/api/info", timeout=5)


def test_review_serves_filtered_decisions_and_saved_images(replay, tmp_path: Path):
    base, result, thread = replay
    thread.join(30)
    assert result["rejects_saved"] == 6
    review = ReviewLog(tmp_path / "results.jsonl")
    sock = listen("127.0.0.1:0")
    server = DashboardServer(review_app(review), sock)
    server.start()
    try:
        status, kind, page = get(server.url)
        assert (status, kind) == (200, "text/html; charset=utf-8") and b"/static/dashboard.js" in page
        assert get(server.url + "static/dashboard.js")[0] == 200
        assert get(server.url + "static/../pyproject.toml")[0] == 404
        found = json.loads(get(server.url + "api/decisions?verdict=REJECT&min_score=0.9&limit=4")[2])
        assert found["total"] == 6 and len(found["items"]) == 4
        assert [i["part_id"] for i in found["items"]] == [21, 17, 13, 9]
        item = found["items"][0]
        assert item["image"] and item["heatmap"]
        status, kind, image = get(f"{server.url}review/{item['index']}/heatmap.jpg")
        assert (status, kind) == (200, "image/jpeg") and image == (
            tmp_path / "rejects" / "part000000021_heatmap.jpg"
        ).read_bytes()
        passed = json.loads(get(server.url + "api/decisions?verdict=PASS")[2])["items"][0]
        assert get(f"{server.url}review/{passed['index']}/image.jpg")[0] == 404  # PASS parts are not saved
    finally:
        server.stop()


def test_run_refuses_a_busy_dashboard_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bundle = make_bundle(tmp_path / "bundle")
    video = write_video(tmp_path / "parts.avi", [False, True])
    sock = listen("127.0.0.1:0")
    port = sock.getsockname()[1]
    try:
        code = main(["run", str(bundle.path), "--source", str(video), "--dashboard", f"127.0.0.1:{port}", "--quiet"])
    finally:
        sock.close()
    err = capsys.readouterr().err
    assert (
        code == 2
        and err == f"lineside run: error: dashboard cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )


@pytest.mark.parametrize("address", ["8080", "localhost", "example.com:80"])
def test_bad_dashboard_address_is_one_line_exit_2(address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    log = tmp_path / "results.jsonl"
    log.write_text("")
    assert main(["review", str(log), "--dashboard", address]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"lineside review: error: dashboard address '{address}' must be HOST:PORT with an IP host, e.g. 127.0.0.1:8080"
    ]
