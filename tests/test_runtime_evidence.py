"""Evidence that lasts (#16 finding 5): run-unique reject names, a disk cap that keeps the newest evidence, a
results log that rotates, fsyncs on a stated policy and never holds a torn line, even when the process is
killed with SIGKILL mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from runtime_support import make_bundle, write_folder

from lineside.errors import LinesideError
from lineside.runtime.results import LogPolicy, RejectStore, ResultsLog, new_run_id, reject_image_name


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("evidence") / "bundle").path


def noise(seed: int) -> np.ndarray:
    """(64, 64, 3) uint8 noise: JPEGs of about 10 kB."""
    return np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)


def save_run(folder: Path, run_id: str, parts: range, cap: int) -> RejectStore:
    store = RejectStore(folder, max_bytes=cap, run_id=run_id)
    for part in parts:
        store.submit(part, noise(part), None, 0.5)
        time.sleep(0.02)  # the writer keeps up; distinct modification times
    store.close()
    return store


def test_a_restarted_line_keeps_the_previous_runs_rejects(tmp_path: Path):
    first, second = new_run_id(), new_run_id()
    assert first != second and first[:8].isdigit() and first[8] == "T"
    save_run(tmp_path, first, range(5), cap=10_000_000)
    save_run(tmp_path, second, range(5), cap=10_000_000)  # part ids restart at 0
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {reject_image_name(run, part) for run in (first, second) for part in range(5)}


def test_disk_cap_counts_earlier_runs_and_deletes_the_oldest_first(tmp_path: Path):
    size = len(cv2.imencode(".jpg", noise(0), [cv2.IMWRITE_JPEG_QUALITY, 90])[1])
    cap = int(size * 12.5)  # room for about 12 images
    save_run(tmp_path, "run1", range(10), cap=10_000_000)
    store = save_run(tmp_path, "run2", range(10), cap=cap)  # run 1's files count: 8 of them must go
    files = sorted(tmp_path.iterdir(), key=lambda p: p.stat().st_mtime)
    assert sum(p.stat().st_size for p in files) <= cap
    names = [p.name for p in files]
    assert all(reject_image_name("run2", part) in names for part in range(10))  # the newest evidence stays
    kept_first = [n for n in names if n.startswith("run1_")]
    assert kept_first == [reject_image_name("run1", part) for part in range(10 - len(kept_first), 10)]
    assert store.deleted == 10 - len(kept_first) and store.saved == 10


def test_results_log_rotates_under_its_cap(tmp_path: Path):
    path = tmp_path / "r.jsonl"
    log = ResultsLog(path, LogPolicy(max_bytes=4096, keep=2), run_id="R")
    for part in range(200):
        log.write({"type": "part", "part_id": part, "reason": "x" * 40})
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl", "r.jsonl.1", "r.jsonl.2"]
    assert all(p.stat().st_size <= 4096 for p in tmp_path.iterdir())
    ids = [json.loads(line)["part_id"] for name in ("r.jsonl.2", "r.jsonl.1", "r.jsonl")
           for line in (tmp_path / name).read_text().splitlines()]  # fmt: skip
    assert ids == list(range(200 - len(ids), 200)) and log.rotations >= 3  # the newest kept, in order


def test_fsync_policy_bounds_what_waits_for_the_disk(tmp_path: Path):
    by_count = ResultsLog(tmp_path / "a.jsonl", LogPolicy(fsync_every=5, fsync_s=30.0))
    for part in range(5):
        by_count.write({"part_id": part})
    deadline = time.monotonic() + 2
    while by_count.fsyncs == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert by_count.fsyncs == 1  # the 5th record woke the flusher long before 30 s
    by_time = ResultsLog(tmp_path / "b.jsonl", LogPolicy(fsync_every=1000, fsync_s=0.05))
    by_time.write({"part_id": 0})
    time.sleep(0.5)
    assert by_time.fsyncs == 1  # one record, synced within fsync_s; nothing pending afterwards
    by_count.close()
    by_time.close()
    with pytest.raises(LinesideError, match="--log-fsync-ms"):
        LogPolicy.from_options(100, 10, 100, float("nan"))
    with pytest.raises(LinesideError, match="--log-max-mb"):
        LogPolicy.from_options(float("inf"), 10, 100, 500)


def test_a_torn_last_line_never_merges_with_the_next_record(tmp_path: Path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"type":"part","part_id":0}\n{"type":"part","part_id":1,"verd')  # power cut mid-line
    log = ResultsLog(path, run_id="R2")
    log.write({"type": "event", "event": "start"})
    log.close()
    lines = path.read_bytes().split(b"\n")
    assert lines[1] == b'{"type":"part","part_id":1,"verd' and lines[-1] == b""
    assert json.loads(lines[2]) == {"run_id": "R2", "type": "event", "event": "start"}


def complete_lines(folder: Path) -> list[dict]:
    """Every line of every results file in `folder`, oldest first; each must be complete JSON ending in a newline."""
    records = []
    for path in sorted(folder.glob("r.jsonl*"), key=lambda p: -int(p.suffix[1:] if p.suffix[1:].isdigit() else 0)):
        data = path.read_bytes()
        assert not data or data.endswith(b"\n"), f"{path.name} ends in a torn line"
        records += [json.loads(line) for line in data.splitlines()]
    return records


def lines_so_far(folder: Path) -> int:
    """Newlines in the results files of a running line (a file may be renamed by rotation while we look)."""
    total = 0
    for path in folder.glob("r.jsonl*"):
        try:
            total += path.read_bytes().count(b"\n")
        except FileNotFoundError:
            continue
    return total


def test_sigkill_mid_run_leaves_only_whole_lines_and_a_restart_keeps_the_evidence(bundle: Path, tmp_path: Path):
    frames = write_folder(tmp_path / "frames", [i % 3 == 0 for i in range(300)])
    logs, rejects = tmp_path / "logs", tmp_path / "rejects"
    command = [sys.executable, "-m", "lineside", "run", str(bundle), "--source", str(frames), "--quiet",
               "--log", str(logs / "r.jsonl"), "--log-max-mb", "0.02", "--log-keep", "100",
               "--save-rejects", str(rejects)]  # fmt: skip
    killed_at, saved = [], {}
    for _ in range(2):  # two runs killed mid-replay (no --rate: records are written as fast as they come)
        before = lines_so_far(logs)
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and lines_so_far(logs) < before + 60:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        killed_at.append(len(complete_lines(logs)))
        saved.update({p.name: p.read_bytes() for p in rejects.glob("*.jpg")})
    done = subprocess.run([*command, "--max-parts", "20"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    records = complete_lines(logs)  # every line of all three runs parses: no torn line anywhere
    assert len(list(logs.glob("r.jsonl.*"))) >= 2  # it rotated on the way
    runs = list(dict.fromkeys(r["run_id"] for r in records))
    assert len(runs) == 3 and all("run_id" in r for r in records)
    starts = [r for r in records if r.get("event") == "start"]
    assert [r["run_id"] for r in starts] == runs
    assert {name.split("_")[0] for name in saved} == {run.split("_")[0] for run in runs[:2]}
    assert all((rejects / name).read_bytes() == data for name, data in saved.items())  # none overwritten
    assert any(name.startswith(runs[2]) for name in os.listdir(rejects))
    assert killed_at[0] >= 60 and killed_at[1] >= killed_at[0] + 60


@pytest.mark.parametrize(
    ("option", "value"),
    [("--log-max-mb", "nan"), ("--log-keep", "0"), ("--log-fsync-every", "-1"), ("--log-fsync-ms", "inf")],
)
def test_bad_log_policy_is_one_line_and_exit_2(bundle: Path, tmp_path: Path, option: str, value: str):
    frames = write_folder(tmp_path / "frames", [False])
    done = subprocess.run(
        [sys.executable, "-m", "lineside", "run", str(bundle), "--source", str(frames), option, value],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert option in done.stderr.strip().splitlines()[-1]
