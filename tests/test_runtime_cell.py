"""A whole cell through `run_line`: synthetic parts -> ONNX detector -> reject bit + heartbeat on a PLC (python-snap7's
S7 server, or an asyncua OPC UA server) and every decision to a mosquitto broker. Exactly the defective parts'
reject outputs must pulse, each at capture + delay, and the subscriber must see every decision once."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from mqtt_support import Broker, Subscriber
from plc_support import S7_DB, OpcUaServer, S7Server
from runtime_support import make_bundle, write_folder, write_video
from test_runtime_e2e import DEFECTS, DELAY_S, PULSE_S, RATE, _assert_rejections

from lineside.runtime.ejector import EjectorConfig
from lineside.runtime.runner import RunOptions, run_line
from lineside.runtime.sources.capture import CaptureConfig

pytest.importorskip("snap7", reason="python-snap7 is not installed: pip install 'lineside[s7]'")
pytest.importorskip("asyncua", reason="asyncua is not installed: pip install 'lineside[opcua]'")
pytest.importorskip("paho.mqtt", reason="paho-mqtt is not installed: pip install 'lineside[mqtt]'")

TOPIC = "plant/cell1"


def _cell(tmp_path: Path, actuator: str, heartbeat: str, broker: Broker) -> tuple[dict, list[dict], Subscriber]:
    bundle = make_bundle(tmp_path / "bundle")
    video = write_video(tmp_path / "parts.avi", DEFECTS, fps=RATE)
    log = tmp_path / "results.jsonl"
    subscriber = Subscriber(broker.port, TOPIC)
    summary = run_line(
        RunOptions(
            bundle=bundle.path, source=str(video), actuator=actuator, heartbeat=heartbeat, log_path=log, status=False,
            publish=f"mqtt://127.0.0.1:{broker.port}/{TOPIC}?qos=1&client_id=cell1&status_s=0.5",
            capture=CaptureConfig(rate=RATE), ejector=EjectorConfig(delay_s=DELAY_S, pulse_s=PULSE_S, heartbeat_s=0.25),
        )
    )  # fmt: skip
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return summary, records, subscriber


def _assert_published(summary: dict, records: list[dict], subscriber: Subscriber) -> None:
    decisions = subscriber.wait_for(len(DEFECTS))
    subscriber.close()
    assert Counter(d["part_id"] for d in decisions) == Counter(range(len(DEFECTS)))  # each part exactly once
    logged = {r["part_id"]: r for r in records if r["type"] == "part"}
    assert all(d["verdict"] == logged[d["part_id"]]["verdict"] and d["station"] == "cell1" for d in decisions)
    assert {d["run_id"] for d in decisions} == {summary["run_id"]}
    assert summary["publish"] == {"connected": False, "queued": 0, "published": len(DEFECTS), "dropped": 0}
    statuses = subscriber.statuses()
    assert statuses[-1]["state"] == "stopped" and statuses[-1]["parts"] == len(DEFECTS)
    assert any(s["state"] == "running" and s["healthy"] for s in statuses)


def _assert_heartbeat(changes: list[tuple[float, bool]]) -> None:
    """Toggles every 250 ms during the ~6 s run and is left off."""
    assert sum(value for _, value in changes) >= 8 and changes[-1][1] is False


@pytest.mark.slow
@pytest.mark.network
def test_cell_with_s7_plc_and_mqtt(tmp_path: Path) -> None:
    plc, broker = S7Server().start(), Broker(tmp_path / "broker").start()
    base = f"s7://127.0.0.1:{plc.port}?rack=0&slot=1"
    try:
        summary, records, subscriber = _cell(
            tmp_path, f"{base}&area=DB&db={S7_DB}&byte=4&bit=3", f"{base}&area=M&byte=0&bit=1", broker
        )
    finally:
        plc.stop()
        broker.stop()
    reject = plc.bit_changes("DB", S7_DB, 4, 3)
    assert reject[0][1] is False and reject[-1][1] is False
    _assert_rejections(records, [t for t, on in reject if on], [t for t, on in reject if not on])
    _assert_heartbeat(plc.bit_changes("MK", 0, 0, 1))
    assert {(area, db, byte) for _, area, db, byte, _ in plc.writes} == {("DB", S7_DB, 4), ("MK", 0, 0)}
    assert summary["actuator_errors"] == 0 and not summary["output_failed"]
    _assert_published(summary, records, subscriber)


@pytest.mark.slow
@pytest.mark.network
def test_cell_with_opcua_plc_and_mqtt(tmp_path: Path) -> None:
    plc, broker = OpcUaServer().start(), Broker(tmp_path / "broker").start()
    base = f"opcua://127.0.0.1:{plc.port}/ns=2;s=Line1."
    try:
        summary, records, subscriber = _cell(tmp_path, base + "Reject", base + "Heartbeat", broker)
    finally:
        plc.close()
        broker.stop()
    reject = plc.changes("ns=2;s=Line1.Reject")
    assert reject[0][1] is False and reject[-1][1] is False
    _assert_rejections(records, [t for t, on in reject if on], [t for t, on in reject if not on])
    _assert_heartbeat(plc.changes("ns=2;s=Line1.Heartbeat"))
    assert summary["actuator_errors"] == 0 and not summary["output_failed"]
    _assert_published(summary, records, subscriber)


def _lineside(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lineside", "run", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.network
def test_lineside_run_cli_with_s7_and_publish(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle").path
    folder = write_folder(tmp_path / "parts", [i % 5 == 2 for i in range(10)])
    plc, broker = S7Server().start(), Broker(tmp_path / "broker").start()
    reject = f"s7://127.0.0.1:{plc.port}?area=DB&db={S7_DB}&byte=1&bit=0"
    publish = f"mqtt://127.0.0.1:{broker.port}/{TOPIC}?client_id=cli"
    subscriber = Subscriber(broker.port, TOPIC)
    try:
        bad = [
            (["--actuator", reject.replace(f"db={S7_DB}", "db=99")], "DB99.DBX1.0 refused"),
            (["--publish", f"mqtt://127.0.0.1:{broker.port}"], "give broker and topic"),
            (["--actuator", "s7://127.0.0.1?area=X&byte=0&bit=0"], "area must be one of Q, M, DB"),
        ]
        for args, message in bad:
            done = _lineside(str(bundle), "--source", str(folder), "--quiet", *args)
            errors = [e for e in done.stderr.splitlines() if "error" in e]
            assert done.returncode == 2 and len(errors) == 1 and message in errors[0], done.stderr
        done = _lineside(str(bundle), "--source", str(folder), "--rate", "10", "--delay-ms", "200", "--quiet",
                         "--actuator", reject, "--publish", publish)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0].endswith("| mqtt published 10, dropped 0")
        summary = json.loads(done.stdout.splitlines()[-1])
        decisions = subscriber.wait_for(10)
    finally:
        subscriber.close()
        plc.stop()
        broker.stop()
    assert summary["verdicts"]["REJECT"] == 2 and summary["publish"]["published"] == 10
    assert sorted(d["part_id"] for d in decisions) == list(range(10))
    assert [on for _, on in plc.bit_changes("DB", S7_DB, 1, 0)] == [False, True, False, True, False]


@pytest.mark.slow
@pytest.mark.network
def test_plc_outage_makes_the_line_unhealthy_and_pulses_resume(tmp_path: Path) -> None:
    # 96 parts at 12/s: the line runs ~5 s past the PLC's return, longer than the widest back-off (5 s max)
    defects = [i % 3 == 0 for i in range(96)]
    folder = write_folder(tmp_path / "parts", defects)
    plc = S7Server().start()
    base = f"s7://127.0.0.1:{plc.port}?timeout=0.3"
    options = RunOptions(
        bundle=make_bundle(tmp_path / "bundle").path, source=str(folder), log_path=tmp_path / "r.jsonl",
        actuator=f"{base}&area=DB&db={S7_DB}&byte=0&bit=0", heartbeat=f"{base}&area=M&byte=0&bit=1", status=False,
        capture=CaptureConfig(rate=12), ejector=EjectorConfig(delay_s=0.2, pulse_s=0.03, heartbeat_s=0.1),
    )  # fmt: skip
    result: dict = {}
    line = threading.Thread(target=lambda: result.update(run_line(options)))
    line.start()
    time.sleep(1.2)
    plc.stop()  # the PLC goes away for a second and a half
    time.sleep(1.5)
    revived = S7Server(plc.port).start()
    up_at = time.time()
    line.join(30)
    revived.stop()
    assert not line.is_alive()
    records = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    parts = {r["part_id"]: r for r in records if r["type"] == "part"}
    assert sorted(parts) == list(range(96))  # every part logged once, outage or not
    assert result["output_failed"] and result["outputs"][0]["errors"] > 0 and result["outputs"][0]["ok"]
    assert result["faults"]["reject output"] >= 1 and result["faults"]["heartbeat output"] >= 1  # line was unhealthy
    assert any(p["eject"] == "eject_failed" for p in parts.values())  # pulses lost in the outage are said so
    late_rejects = [t for t, on in revived.bit_changes("DB", S7_DB, 0, 0) if on and t > up_at]
    assert late_rejects  # pulses resume on the returned link
    assert revived.db[0] & 1 == 0 and revived.m[0] & 2 == 0  # both outputs left off
