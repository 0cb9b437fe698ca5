"""Part accounting (#16 finding 2): a frame the source numbered but the reader never saw is a part of its own,
decided ERROR (rejected under fail-safe) with cause frame_dropped. Counter wrap and reopen create no bogus drops."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from runtime_support import make_bundle, render_part, write_video

from lineside.runtime.actuators.log import LogActuator
from lineside.runtime.backends.onnxruntime import OrtBackend
from lineside.runtime.ejector import EjectorConfig
from lineside.runtime.pipeline import Pipeline
from lineside.runtime.results import ResultsLog
from lineside.runtime.runner import RunOptions, run_line
from lineside.runtime.sources.accounting import CounterTrack
from lineside.runtime.sources.base import EndOfSource, FrameSource
from lineside.runtime.sources.capture import Capture, CaptureConfig
from lineside.runtime.sources.opencv import OpenCvSource, has_gstreamer

FPS = 50.0


class CountingCamera(FrameSource):
    """A live camera stand-in that numbers its frames like a GenICam BlockID: it delivers the frames whose
    counters are listed (the missing ones were dropped before the reader), one per 1/FPS s, then is lost."""

    live = True
    counter_kind = "block_id"

    def __init__(self, counters: list[int], low: int = 0, high: int | None = None) -> None:
        self.counter_min, self.counter_max, self.nominal_fps = low, high, FPS
        self._counters: Iterator[int] = iter(counters)
        self._next_mono = time.monotonic()

    def read(self) -> tuple[np.ndarray | None, str | None]:
        counter = next(self._counters, None)
        if counter is None:
            raise EndOfSource("camera lost")
        self._next_mono += 1 / FPS
        time.sleep(max(0.0, self._next_mono - time.monotonic()))
        self.last_counter = counter
        return render_part(counter % 7 == 3, counter), None  # every 7th counter value is a defect

    def close(self) -> None:
        """Nothing to release."""

    def describe(self) -> str:
        return "counting camera"


class PlainCamera(CountingCamera):
    """The same camera through a driver that exposes no frame counter."""

    counter_kind = None


def cameras(*sources: FrameSource) -> Callable[[], FrameSource]:
    """A factory that opens the given cameras in turn (a reopen gets the next one); then the camera is gone."""
    queue = list(sources)

    def open_next() -> FrameSource:
        if not queue:
            raise EndOfSource("no camera")
        return queue.pop(0)

    return open_next


def run_pipeline(tmp_path: Path, factory: Callable[[], FrameSource], parts: int) -> list[dict]:
    """Run the full pipeline (real ORT backend, log actuator) for `parts` parts; the results log's records."""
    bundle = make_bundle(tmp_path / "bundle")
    backend = OrtBackend(bundle)
    backend.warmup(2)
    actuator = LogActuator("log://")
    actuator.connect()
    log = ResultsLog(tmp_path / "r.jsonl")
    config = CaptureConfig(stall_s=0.5, backoff_s=0.05, max_parts=parts)
    capture = Capture(factory, config, on_event=log.write)
    capture.open()
    pipeline = Pipeline(capture, backend, log, 0.7, EjectorConfig(delay_s=0.3, pulse_s=0.01), actuator, paced=True)
    pipeline.run()
    log.close()
    return [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]


def part_records(records: list[dict]) -> dict[int, dict]:
    """Part records by part id, in part order (a rejected part may be logged after its pulse, out of order)."""
    parts = [r for r in records if r["type"] == "part"]
    by_id = dict(sorted(((r["part_id"], r) for r in parts), key=lambda item: item[0]))
    assert list(by_id) == list(range(len(parts))), "every part id has exactly one decision"
    return by_id


def test_every_dropped_frame_gets_its_own_rejected_decision(tmp_path: Path):
    delivered = [10, 11, 12, 15, 16, 19, 20]  # the driver dropped 13, 14, 17, 18
    records = run_pipeline(tmp_path, cameras(CountingCamera(delivered)), parts=11)
    parts = part_records(records)
    assert len(parts) == 11
    assert [r["counter"] for r in parts.values()] == list(range(10, 21))
    dropped = [r for r in parts.values() if r.get("cause") == "frame_dropped"]
    assert [r["counter"] for r in dropped] == [13, 14, 17, 18]
    assert all(r["verdict"] == "ERROR" and "eject_time" in r for r in dropped)  # rejected (fail-safe)
    assert all("block_id skipped" in r["reason"] for r in dropped)
    seen = [r for r in parts.values() if r.get("cause") is None]
    assert {r["verdict"] for r in seen} <= {"PASS", "REJECT"} and len(seen) == 7


def test_counter_wrap_and_reopen_create_no_bogus_drops(tmp_path: Path):
    before = [65533, 65534, 65535, 1, 2, 4]  # 16-bit GigE Vision BlockID: 65535 -> 1 (0 is never sent); 3 dropped
    after = [1, 2, 3]  # the reopened camera restarts its count
    factory = cameras(CountingCamera(before, low=1, high=65535), CountingCamera(after, low=1, high=65535))
    parts = part_records(run_pipeline(tmp_path, factory, parts=10))
    assert [r["counter"] for r in parts.values()] == [65533, 65534, 65535, 1, 2, 3, 4, 1, 2, 3]
    assert [r["counter"] for r in parts.values() if r.get("cause") == "frame_dropped"] == [3]


def test_counter_restart_is_not_thousands_of_drops():
    track = CounterTrack("block_id", fps=FPS)
    assert track.step(5000, 0.0) == [] and track.step(5001, 0.02) == []
    assert track.step(0, 0.04) == [] and track.restarts == 1  # camera reset: backwards
    assert track.step(60_000, 0.06) == [] and track.restarts == 2  # 60000 frames in 20 ms is not possible
    assert track.step(60_003, 0.12) == [60_001, 60_002] and track.dropped == 2
    wrapping = CounterTrack("block_id", low=0, high=255, fps=FPS)
    assert wrapping.step(254, 0.0) == [] and wrapping.step(1, 0.1) == [255, 0]
    assert wrapping.step(1, 0.2) == [] and wrapping.restarts == 1  # a repeat is not 255 drops
    undeclared = CounterTrack("block_id", fps=FPS)  # the source did not declare that it wraps at 65535
    assert undeclared.step(65535, 0.0) == [] and undeclared.step(0, 0.02) == [] and undeclared.restarts == 1


def test_source_without_counter_says_so_and_an_outage_without_rate_is_logged(tmp_path: Path, caplog):
    caplog.set_level(logging.INFO, logger="lineside.runtime.sources.capture")
    factory = cameras(PlainCamera(list(range(5))), PlainCamera(list(range(5))))
    records = run_pipeline(tmp_path, factory, parts=10)
    assert len(part_records(records)) == 10
    assert sum("has no frame counter" in m for m in caplog.messages) == 1
    outages = [r for r in records if r.get("event") == "outage"]
    assert len(outages) == 1 and 0 <= outages[0]["down_s"] <= outages[0]["since_last_frame_s"]
    assert outages[0]["source_fps"] == FPS
    assert abs(outages[0]["parts_unaccounted_estimate"] - outages[0]["since_last_frame_s"] * FPS) <= 1


def test_video_file_reports_its_frame_index(tmp_path: Path):
    source = OpenCvSource(str(write_video(tmp_path / "v.avi", [False] * 4)), live=False)
    counters = []
    try:
        while True:
            source.read()
            counters.append(source.last_counter)
    except EndOfSource:
        source.close()
    assert source.has_counter and source.counter_kind == "frame_index" and counters == [0, 1, 2, 3]


@pytest.mark.skipif(not has_gstreamer(), reason="this OpenCV build has no GStreamer (opencv-python from PyPI)")
def test_gstreamer_frames_dropped_by_appsink_are_counted():
    caps = "video/x-raw,width=160,height=120,framerate=50/1 ! videoconvert ! video/x-raw,format=BGR"
    source = OpenCvSource(f"videotestsrc is-live=true ! {caps} ! appsink", live=True, gstreamer=True)
    track = CounterTrack(str(source.counter_kind), fps=source.nominal_fps)
    skipped = []
    for index in range(8):
        source.read()
        skipped += track.step(source.last_counter, time.monotonic())
        if index == 3:
            time.sleep(0.2)  # a slow reader: appsink (drop=true max-buffers=1) drops ~9 frames at 50 fps
    source.close()
    assert source.counter_kind == "gst_pts" and 7 <= len(skipped) <= 11


def test_lineside_run_records_the_counter_kind_and_every_frames_counter(tmp_path: Path):
    video = write_video(tmp_path / "v.avi", [i == 2 for i in range(6)])
    log = tmp_path / "r.jsonl"
    summary = run_line(
        RunOptions(bundle=make_bundle(tmp_path / "bundle").path, source=str(video), log_path=log, status=False)
    )
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[0]["event"] == "start" and records[0]["frame_counter"] == "frame_index"
    parts = part_records(records)
    assert [r["counter"] for r in parts.values()] == list(range(6))
    assert summary["dropped_frames"] == 0 and summary["counter_restarts"] == 0
    assert {r["run_id"] for r in records} == {summary["run_id"]}


class _SlowDecodeCamera(FrameSource):
    """Frames whose bytes arrive at once but take 80 ms to decode; the last one also waits in the reader's queue."""

    live = True

    def __init__(self, frames: int, tells_arrival: bool) -> None:
        self.left, self.tells_arrival, self.arrivals = frames, tells_arrival, []

    def read(self) -> tuple[np.ndarray | None, str | None]:
        if not self.left:
            raise EndOfSource("done")
        self.left -= 1
        arrived = time.monotonic()
        self.arrivals.append(arrived)
        if self.tells_arrival:
            self.last_arrival = arrived
        time.sleep(0.08)  # the decode
        return np.full((16, 16, 3), 128, np.uint8), None

    def close(self) -> None:
        """Nothing to release."""

    def describe(self) -> str:
        return "slow-decode camera"


@pytest.mark.parametrize("tells_arrival", [True, False])
def test_parts_are_timed_from_their_frames_arrival_not_the_hand_off(tells_arrival: bool) -> None:
    """Soak finding (part 3011): a frame stamped at hand-off, 137 ms after it arrived, was pulsed after it passed."""
    camera = _SlowDecodeCamera(3, tells_arrival)
    capture = Capture(lambda: camera, CaptureConfig(max_parts=3))  # a live source is reopened, never "ends"
    frames: list = []
    capture.run(lambda frame: (frames.append(frame), time.sleep(0.2)))  # a slow consumer: frames wait in the queue
    assert len(frames) == 3
    for frame, arrived in zip(frames, camera.arrivals, strict=True):
        lag = frame.capture_mono - arrived
        # told: the arrival itself; not told: when read() returned (the decode), never the later hand-off
        assert (0 <= lag < 0.01) if tells_arrival else (0.07 <= lag < 0.15)
        assert abs((frame.capture_time - time.time()) - (frame.capture_mono - time.monotonic())) < 0.01
