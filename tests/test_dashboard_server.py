"""The dashboard over HTTP on 127.0.0.1 (no browser): a real line replaying a video with `--dashboard`, the
review server over its log, and the CLI's one-line errors."""

from __future__ import annotations

import functools
import http.server
import json
import logging
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
from lineside.runtime.results import reject_image_name
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
        run_id = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[0])["run_id"]
        saved = tmp_path / "rejects" / reject_image_name(run_id, 21, heatmap=True)
        assert (status, kind) == (200, "image/jpeg") and image == saved.read_bytes()
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


@pytest.fixture
def served_review(tmp_path: Path):
    """The review server over a log with one good decision and well-formed records of the wrong types."""
    good = {"type": "part", "part_id": 3, "verdict": "REJECT", "score": 0.9, "latency_ms": {"infer": 1.0, "total": 2.0}}
    bad = [
        {"type": "part", "part_id": 1, "verdict": "PASS", "score": "abc"},
        {"type": "part", "part_id": None, "verdict": "PASS", "score": 0.1},
        {"type": "part", "part_id": 2, "verdict": "PASS", "score": 0.1, "latency_ms": {"infer": 1.0}},
        {"type": "event", "event": "start", "time": "noon", "class": "washer"},
    ]
    log = tmp_path / "results.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in [good, *bad]) + '{"type":"part","part_id":4,"score":NaN}\n')
    server = DashboardServer(review_app(ReviewLog(log)), listen("127.0.0.1:0"))
    server.start()
    yield server.url
    server.stop()


def test_review_skips_and_counts_records_of_the_wrong_types(served_review: str):
    status, kind, body = get(served_review + "api/decisions?min_score=0.5")
    assert (status, kind) == (200, "application/json")
    found = json.loads(body)
    assert found["total"] == 1 and found["items"][0]["part_id"] == 3 and found["bad_records"] == 5
    assert get(served_review + "api/info")[0] == 200


@pytest.mark.parametrize(
    "query",
    ["offset=inf", "offset=nan", "offset=-1", "offset=1e3", "offset=abc", "offset=99999999999999999999", "limit=0",
     "limit=501", "limit=2.5", "min_score=inf", "min_score=nan", "max_score=abc", "verdict=MAYBE"],
)  # fmt: skip
def test_review_answers_bad_query_parameters_with_400(served_review: str, query: str):
    status, kind, body = get(served_review + "api/decisions?" + query)
    assert (status, kind) == (400, "application/json")
    assert query.split("=")[0] in json.loads(body)["error"]


def test_review_takes_good_query_parameters(served_review: str):
    query = "verdict=REJECT&class=&min_score=0.5&max_score=1&offset=0&limit=500"
    assert json.loads(get(served_review + "api/decisions?" + query)[2])["total"] == 1
    assert get(served_review + "review/0/other.jpg")[0] == 404


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test reads the line's console, not this server's
        pass


@pytest.fixture
def credential_stream(tmp_path: Path):
    """parts.avi served over HTTP on 127.0.0.1; the source URL carries a user and password (the server ignores them)."""
    write_video(tmp_path / "parts.avi", DEFECTS[:8], fps=8)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietFiles, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://line:s3cr3t-pw@127.0.0.1:{server.server_address[1]}/parts.avi?token=t0k3n"
    server.shutdown()
    server.server_close()


def test_source_credentials_are_never_shown(credential_stream: str, tmp_path: Path, caplog, capsys):
    caplog.set_level(logging.INFO)  # the start-up lines that name the source, whatever earlier tests set
    bundle = make_bundle(tmp_path / "bundle")
    port = free_port()
    argv = ["run", str(bundle.path), "--source", credential_stream, "--log", str(tmp_path / "results.jsonl"),
            "--max-parts", "6", "--dashboard", f"127.0.0.1:{port}", "--quiet"]  # fmt: skip
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(code=main(argv)), daemon=True)
    thread.start()
    info = None
    deadline = time.monotonic() + 30
    while info is None and thread.is_alive() and time.monotonic() < deadline:
        try:
            info = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=5).read())
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)
    thread.join(60)
    shown = credential_stream.replace("s3cr3t-pw", "***").replace("t0k3n", "***")
    assert result["code"] == 0 and info is not None and info["source"] == shown
    start = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["source"] == shown
    console = caplog.text + "".join(capsys.readouterr())
    assert "127.0.0.1" in console and "s3cr3t" not in console and "t0k3n" not in console
