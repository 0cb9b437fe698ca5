"""Results to MQTT against a real mosquitto on 127.0.0.1: every part once, status messages, a broker restart that
loses only what the queue bound says, a broker that is absent at start, bad URLs refused."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mqtt_support import Broker, Subscriber, make_tls, needs_mosquitto

from lineside.errors import LinesideError
from lineside.runtime.publish import MqttPublisher, fan_out, parse_mqtt_url

pytest.importorskip("paho.mqtt", reason="paho-mqtt is not installed: pip install 'lineside[mqtt]'")

TOPIC = "plant/line1"


def _record(part_id: int) -> dict:
    """A results-log part record as the pipeline writes it."""
    return {
        "type": "part", "part_id": part_id, "capture_time": time.time(), "decision_time": time.time(),
        "verdict": "REJECT" if part_id % 7 == 3 else "PASS", "score": 0.5, "threshold": 0.7, "reason": None,
        "latency_ms": {"infer": 3.0, "total": 5.0},
    }  # fmt: skip


def _feed(publisher: MqttPublisher, first: int, count: int, rate: float) -> None:
    """`count` decisions at `rate` per second, as the line would call the observer."""
    start = time.monotonic()
    for index in range(count):
        publisher.decided(_record(first + index), None, None)
        time.sleep(max(0.0, start + (index + 1) / rate - time.monotonic()))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mqtt://broker:1883", "give broker and topic"),
        ("http://broker/t", "use mqtt://"),
        ("mqtt://broker/plant/#", "must not contain"),
        ("mqtt://broker/t?qos=3", "qos must be 0..2"),
        ("mqtt://broker/t?queue=0", "queue must be"),
        ("mqtt://broker/t?ca=/etc/hostname", "ca/cert/key need mqtts://"),
        ("mqtts://broker/t?cert=/etc/hostname", "needs both cert= and key="),
        ("mqtts://broker/t?ca=/nonexistent.pem", "is not a file"),
        ("mqtt://broker/t?retain=1", "unknown option"),
        ("mqtt://:hunter2@broker/t", "a password needs a user"),
        ("mqtt://u@broker/t?password_env=LINESIDE_TEST_UNSET_VARIABLE", "is not set"),
    ],
)
def test_bad_publish_urls_are_one_line_errors(url: str, message: str) -> None:
    with pytest.raises(LinesideError, match=message) as info:
        parse_mqtt_url(url)
    assert "\n" not in str(info.value) and "hunter2" not in str(info.value)


def test_url_defaults() -> None:
    target = parse_mqtt_url("mqtts://line:pw@broker.plant/plant%2Fline%201?client_id=l1&qos=2")
    assert (target.host, target.port, target.topic) == ("broker.plant", 8883, "plant/line 1")
    assert target.tls and target.qos == 2
    assert (target.user, target.password, target.client_id, target.queue) == ("line", "pw", "l1", 10000)
    assert "pw" not in repr(target)


@pytest.mark.network
def test_every_decision_arrives_exactly_once_with_status(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker").start()
    subscriber = Subscriber(broker.port, TOPIC)
    publisher = MqttPublisher(f"mqtt://127.0.0.1:{broker.port}/{TOPIC}?qos=1&client_id=station-7&status_s=0.2", "run-9")
    try:
        publisher.start(status=lambda: {"parts": 1})
        assert publisher.connected
        _feed(publisher, 0, 1000, rate=1000.0)  # ~15x a fast line's part rate
        counters = publisher.close()
        decisions = subscriber.wait_for(1000)
    finally:
        subscriber.close()
        broker.stop()
    ids = Counter(d["part_id"] for d in decisions)
    assert sorted(ids) == list(range(1000)) and set(ids.values()) == {1}  # every part, exactly once
    assert counters == {"connected": False, "queued": 0, "published": 1000, "dropped": 0}  # all sent, then closed
    assert publisher.brief() == "mqtt published 1000, queued 0, dropped 0, DISCONNECTED"
    first = decisions[0]
    assert first["station"] == "station-7" and first["run_id"] == "run-9" and first["verdict"] == "PASS"
    assert "image" not in first and first["latency_ms"] == {"infer": 3.0, "total": 5.0}
    statuses = subscriber.statuses()
    assert statuses[0]["state"] == "running" and statuses[-1]["state"] == "stopped"
    assert statuses[-1]["parts"] == 1 and statuses[-1]["publish"]["published"] == 1000


@pytest.mark.network
def test_broker_restart_loses_only_what_exceeds_the_queue(tmp_path: Path) -> None:
    queue, rate, down_s = 100, 200.0, 1.5  # ~300 parts produced while the broker is away: ~200 beyond the bound
    broker = Broker(tmp_path / "broker").start()
    subscriber = Subscriber(broker.port, TOPIC)
    publisher = MqttPublisher(f"mqtt://127.0.0.1:{broker.port}/{TOPIC}?qos=1&queue={queue}&status_s=60")
    try:
        publisher.start()
        _feed(publisher, 0, 200, rate)
        broker.stop()
        _feed(publisher, 200, int(rate * down_s), rate)
        produced_down = int(rate * down_s)
        broker.start()
        deadline = time.monotonic() + 15
        while not (publisher.connected and publisher.counters()["queued"] == 0) and time.monotonic() < deadline:
            time.sleep(0.02)  # paho reconnects after 1, 2, 4 ... s, then sends the queued records
        dropped_while_down = publisher.dropped
        _feed(publisher, 200 + produced_down, 200, rate)
        total = 400 + produced_down
        counters = publisher.close(flush_s=10)
        decisions = subscriber.wait_for(total - counters["dropped"], timeout=15)
    finally:
        subscriber.close()
        broker.stop()
    received = {d["part_id"] for d in decisions}
    missing = set(range(total)) - received
    # what was lost is exactly what the publisher counted as dropped, and only beyond the queue bound
    assert (len(missing), counters["dropped"]) == (dropped_while_down, dropped_while_down)
    # the bound counts unacknowledged messages too: up to paho's 20 in flight when the broker went away
    assert produced_down - queue <= counters["dropped"] <= produced_down - queue + 21
    assert counters["queued"] == 0 and counters["published"] == total - counters["dropped"]
    assert all(p < 200 + produced_down for p in missing)  # losses only from the outage


@pytest.mark.network
def test_absent_broker_does_not_stop_the_line(tmp_path: Path) -> None:
    needs_mosquitto()
    broker = Broker(tmp_path / "broker")  # configured, not started yet
    publisher = MqttPublisher(f"mqtt://127.0.0.1:{broker.port}/{TOPIC}?queue=50&status_s=60")
    start = time.monotonic()
    publisher.start()  # warns and goes on
    assert time.monotonic() - start < 4.0 and not publisher.connected
    start = time.monotonic()
    for part_id in range(120):
        publisher.decided(_record(part_id), None, None)
    assert time.monotonic() - start < 0.5  # the line never waits for the bus (no network wait: a hand-off each)
    deadline = time.monotonic() + 10
    while publisher.dropped < 120 - 50 and time.monotonic() < deadline:  # the publisher thread catches up
        time.sleep(0.02)
    time.sleep(0.1)
    assert 120 - 50 <= publisher.dropped <= 120 - 50 + 1  # paho's queue holds 50, one of them may be the first status
    broker.start()
    subscriber = None
    try:
        deadline = time.monotonic() + 15
        while not publisher.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        subscriber = Subscriber(broker.port, TOPIC, client_id="late-subscriber")
        counters = publisher.close(flush_s=10)
    finally:
        if subscriber is not None:
            subscriber.close()
        broker.stop()
    assert counters["published"] == 120 - counters["dropped"] and counters["queued"] == 0


@pytest.mark.network
def test_tls_and_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca, cert, key = make_tls(tmp_path / "tls")
    broker = Broker(tmp_path / "broker", users={"line3": "pa55"}, tls=(ca, cert, key)).start()
    subscriber = Subscriber(broker.port, TOPIC, ca=ca, login=("line3", "pa55"))
    monkeypatch.setenv("LINESIDE_TEST_MQTT_PASSWORD", "pa55")
    url = f"mqtts://line3@127.0.0.1:{broker.port}/{TOPIC}?ca={ca}&password_env=LINESIDE_TEST_MQTT_PASSWORD"
    try:
        publisher = MqttPublisher(url)
        publisher.start()
        _feed(publisher, 0, 50, rate=1000.0)
        counters = publisher.close()
        decisions = subscriber.wait_for(50)
        with pytest.raises(LinesideError, match="refused the connection") as info:
            MqttPublisher(url.replace("line3@", "line3:wrong@").split("&password_env")[0]).start()
        assert "wrong" not in str(info.value)
        untrusted = MqttPublisher(url.split("?")[0] + "?password_env=LINESIDE_TEST_MQTT_PASSWORD")  # system CAs
        untrusted.start()  # the broker's certificate does not verify: no connection, and the line goes on
        assert not untrusted.connected
        untrusted.close(flush_s=0.5)
    finally:
        subscriber.close()
        broker.stop()
    assert counters["published"] == 50 and sorted(d["part_id"] for d in decisions) == list(range(50))


@pytest.mark.network
def test_an_unsendable_record_or_a_broken_status_does_not_stop_publishing(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker").start()
    subscriber = Subscriber(broker.port, TOPIC)
    publisher = MqttPublisher(f"mqtt://127.0.0.1:{broker.port}/{TOPIC}?status_s=0.1")
    try:
        publisher.start(status=lambda: 1 / 0)  # type: ignore[arg-type, return-value]
        publisher.decided({**_record(0), "score": object()}, None, None)  # not JSON
        _feed(publisher, 1, 20, rate=200.0)
        counters = publisher.close()
        decisions = subscriber.wait_for(20)
    finally:
        subscriber.close()
        broker.stop()
    assert sorted(d["part_id"] for d in decisions) == list(range(1, 21))
    assert counters["dropped"] == 1 and counters["published"] == 20
    assert subscriber.statuses()[-1]["status_error"] == "ZeroDivisionError: division by zero"


def test_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
    with pytest.raises(LinesideError, match=r"paho-mqtt is not installed: pip install 'lineside\[mqtt\]'"):
        MqttPublisher("mqtt://127.0.0.1/t")


def test_fan_out_calls_every_observer() -> None:
    seen: list[tuple[str, int]] = []

    class Observer:
        def __init__(self, name: str) -> None:
            self.name = name

        def decided(self, record: dict, image: object, anomaly_map: object) -> None:
            seen.append((self.name, record["part_id"]))

    assert fan_out(None, None) is None
    single = Observer("a")
    assert fan_out(None, single) is single
    fan_out(Observer("a"), None, Observer("b")).decided({"part_id": 4}, None, None)
    assert seen == [("a", 4), ("b", 4)]

    class Broken:
        def decided(self, record: dict, image: object, anomaly_map: object) -> None:
            raise RuntimeError("dashboard down")

    with pytest.raises(RuntimeError, match="dashboard down"):
        fan_out(Broken(), Observer("c")).decided({"part_id": 5}, None, None)
    assert seen[-1] == ("c", 5)  # the publisher still got the record
