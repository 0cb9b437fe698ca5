"""Results to the plant's message bus: every decision and a periodic status to an MQTT broker (paho-mqtt 2.x).

    --publish mqtt://[USER@]HOST[:1883]/TOPIC[?qos=1&client_id=line1&queue=10000&status_s=5&password_env=VAR]
    --publish mqtts://HOST[:8883]/TOPIC?ca=ca.pem[&cert=client.pem&key=client.key]

Messages (JSON, UTF-8):
    TOPIC          one per decision: the results-log record (no images) plus `station` and `run_id`
    TOPIC/status   every `status_s` seconds, retained: parts, verdicts, rate, latency, health, publisher counters;
                   `state` is running, then stopped at the end; the broker publishes `offline` (last will) if the
                   station vanishes without saying goodbye.

Publishing never blocks or slows the line: the line's threads only put the record into a bounded hand-off
queue; a publisher thread serialises it and hands it to paho, whose outgoing queue is bounded by `queue`
(QoS 1/2 messages wait there while the broker is away and are sent on reconnect). A message that finds either
queue full is dropped and counted (`dropped`, in the status messages and the run summary). QoS 0 messages
published while the link is down are dropped too (at most once). Part ids restart at 0 with every run:
(`station`, `run_id`, `part_id`) identifies a part across runs and stations.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from lineside.errors import LinesideError, missing_extra
from lineside.redact import redact

if TYPE_CHECKING:
    from lineside.runtime.pipeline import Pipeline

log = logging.getLogger(__name__)

MQTT_ERR_QUEUE_SIZE = 15  # paho's rc when its outgoing queue is full (QoS 1/2 without a link are kept: rc NO_CONN)
CONNECT_WAIT_S = 3.0  # how long the start waits for the broker before going on without it (it keeps retrying)


@dataclass(frozen=True)
class MqttTarget:
    """Broker, topic and options of an mqtt:// or mqtts:// URL."""

    host: str
    port: int
    topic: str
    tls: bool = False
    qos: int = 1
    client_id: str = ""
    queue: int = 10000
    status_s: float = 5.0
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)


def _shown(url: str) -> str:
    return redact(url) or url


def _number(params: dict[str, str], key: str, default: float, low: float, high: float, shown: str) -> float:
    try:
        value = float(params.get(key, default))
    except ValueError as exc:
        raise LinesideError(f"--publish {shown}: {key} must be a number") from exc
    if not low <= value <= high:
        raise LinesideError(f"--publish {shown}: {key} must be {low:g}..{high:g}, got {value:g}")
    return value


def _file(params: dict[str, str], key: str, shown: str) -> Path | None:
    if key not in params:
        return None
    path = Path(params[key]).expanduser()
    if not path.is_file():
        raise LinesideError(f"--publish {shown}: {key}={params[key]} is not a file")
    return path


def parse_mqtt_url(url: str) -> MqttTarget:
    """The MqttTarget of a --publish URL; LinesideError naming what is wrong."""
    parts, shown = urlsplit(url), _shown(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise LinesideError(f"--publish {shown}: use mqtt://HOST:1883/TOPIC or mqtts://HOST:8883/TOPIC")
    topic = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not topic:
        raise LinesideError(f"--publish {shown}: give broker and topic, e.g. mqtt://broker:1883/plant/line1")
    if any(c in topic for c in "+#") or topic.endswith("/"):
        raise LinesideError(f"--publish {shown}: the topic {topic!r} must not contain + or # or end with /")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError as exc:
        raise LinesideError(f"--publish {shown}: bad port") from exc
    params = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = set(params) - {"qos", "client_id", "queue", "status_s", "ca", "cert", "key", "user", "password_env"}
    if unknown:
        raise LinesideError(f"--publish {shown}: unknown option(s) {', '.join(sorted(unknown))}")
    tls = parts.scheme == "mqtts"
    if not tls and ({"ca", "cert", "key"} & set(params)):
        raise LinesideError(f"--publish {shown}: ca/cert/key need mqtts://")
    if ("cert" in params) != ("key" in params):
        raise LinesideError(f"--publish {shown}: a client certificate needs both cert= and key=")
    password = unquote(parts.password) if parts.password is not None else None
    if "password_env" in params:
        if params["password_env"] not in os.environ:
            raise LinesideError(f"--publish {shown}: environment variable {params['password_env']} is not set")
        password = os.environ[params["password_env"]]
    user = unquote(parts.username) if parts.username else params.get("user")
    if password is not None and not user:
        raise LinesideError(f"--publish {shown}: a password needs a user (mqtt://USER@HOST/... or user=NAME)")
    return MqttTarget(
        host=parts.hostname, port=port, topic=topic, tls=tls, qos=int(_number(params, "qos", 1, 0, 2, shown)),
        client_id=params.get("client_id", ""), queue=int(_number(params, "queue", 10000, 1, 10_000_000, shown)),
        status_s=_number(params, "status_s", 5.0, 0.1, 3600, shown), ca=_file(params, "ca", shown),
        cert=_file(params, "cert", shown), key=_file(params, "key", shown), user=user, password=password,
    )  # fmt: skip


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class MqttPublisher:
    """A DecisionObserver that publishes each record; `start` connects, `close` sends the last status."""

    def __init__(self, url: str, run_id: str | None = None) -> None:
        self.url = _shown(url)
        self.target = parse_mqtt_url(url)
        self.station = self.target.client_id or f"lineside-{uuid.uuid4().hex[:8]}"
        self.run_id = run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
        self.dropped = 0  # records lost: a queue full, or QoS 0 while the link was down
        self.published = 0  # records the broker acknowledged (QoS 0: written to the socket)
        self.connected = False
        self._status: Callable[[], dict[str, Any]] = dict
        self._closed: dict[str, Any] | None = None
        self._handoff: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=self.target.queue)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._connack = threading.Event()
        self._refused: str | None = None
        self._decision_mids: set[int] = set()  # published decisions awaiting the broker's acknowledgement
        self._other_mids: set[int] = set()  # status messages awaiting it
        self._early_acks: set[int] = set()  # acknowledgements that arrived before publish() returned
        self._thread = threading.Thread(target=self._loop, name="lineside-mqtt", daemon=True)
        self._client = self._make_client()

    # ---- the line's side ------------------------------------------------------------------------------------
    def decided(self, record: dict[str, Any], image: object, anomaly_map: object) -> None:
        """Queue the record (never waits; drops and counts when the queue is full)."""
        try:
            self._handoff.put_nowait(record)
        except queue.Full:
            with self._lock:
                self.dropped += 1

    # ---- paho --------------------------------------------------------------------------------------------------
    def _make_client(self) -> Any:
        try:
            import paho.mqtt.client as mqtt
        except ImportError as exc:
            raise missing_extra("paho-mqtt", "mqtt") from exc
        target = self.target
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.station)
        client.max_queued_messages_set(target.queue)
        client.reconnect_delay_set(1, 10)
        if target.user:
            client.username_pw_set(target.user, target.password)
        if target.tls:
            client.tls_set(
                ca_certs=str(target.ca) if target.ca else None,
                certfile=str(target.cert) if target.cert else None, keyfile=str(target.key) if target.key else None,
            )  # fmt: skip
        offline = {"type": "status", "station": self.station, "run_id": self.run_id, "state": "offline"}
        client.will_set(f"{target.topic}/status", json.dumps(offline), qos=target.qos, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            log.error("MQTT broker %s refused the connection: %s", self.url, reason)
        else:
            self.connected, self._refused = True, None
            log.info("MQTT: connected to %s", self.url)
        self._connack.set()

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        if self.connected and not self._stop.is_set():
            log.warning("MQTT: lost %s (%s); reconnecting, records wait in the queue", self.url, reason)
        self.connected = False

    def _on_publish(self, _client: Any, _userdata: Any, mid: int, _reason: Any, _properties: Any) -> None:
        with self._lock:
            self._acked(mid)

    def _acked(self, mid: int) -> None:
        """Count an acknowledged decision (lock held); an ack may arrive before `publish` returned its mid."""
        if mid in self._decision_mids:
            self._decision_mids.discard(mid)
            self.published += 1
        elif mid in self._other_mids:
            self._other_mids.discard(mid)
        else:
            self._early_acks.add(mid)

    def _track(self, mid: int, decision: bool) -> None:
        """Remember a published mid until its ack (lock held)."""
        if mid in self._early_acks:
            self._early_acks.discard(mid)
            self.published += decision
        else:
            (self._decision_mids if decision else self._other_mids).add(mid)

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def start(self, status: Callable[[], dict[str, Any]] | None = None) -> None:
        """Connect (waiting at most CONNECT_WAIT_S) and start publishing; LinesideError if the broker refuses us.

        `status()` gives the line's figures for the status messages (called on the publisher's thread).
        """
        target = self.target
        self._status = status or dict
        try:
            self._client.connect_async(target.host, target.port, keepalive=30)
        except (OSError, ValueError) as exc:
            raise LinesideError(f"--publish {self.url}: {exc}") from exc
        self._client.loop_start()
        if self._connack.wait(CONNECT_WAIT_S) and self._refused is not None:
            self._client.loop_stop()
            raise LinesideError(f"--publish {self.url}: the broker refused the connection: {self._refused}")
        if not self.connected:
            log.warning(
                "MQTT broker %s does not answer: the line runs, records are queued (%d max)", self.url, target.queue
            )
        self._thread.start()

    def _publish(self, topic: str, message: dict[str, Any], decision: bool = False, retain: bool = False) -> Any:
        """Hand one message to paho (not under `_lock`: paho calls `_on_publish` holding its own lock)."""
        payload = json.dumps(message, separators=(",", ":"), default=_json_default)
        info = self._client.publish(topic, payload, qos=self.target.qos, retain=retain)
        with self._lock:
            if info.rc == MQTT_ERR_QUEUE_SIZE or (info.rc != 0 and self.target.qos == 0):  # QoS 0: no link, no send
                self.dropped += decision
            elif self.target.qos == 0:
                self.published += decision
            else:
                self._track(info.mid, decision)
        return info

    def _send_decision(self, record: dict[str, Any]) -> None:
        self._publish(self.target.topic, {**record, "station": self.station, "run_id": self.run_id}, decision=True)

    def _loop(self) -> None:
        next_status = time.monotonic()
        while True:
            try:
                record = self._handoff.get(timeout=max(0.0, min(0.1, next_status - time.monotonic())))
            except queue.Empty:
                if self._stop.is_set():
                    return
            else:
                try:
                    self._send_decision(record)
                except Exception:  # one record that cannot be sent must not end publishing
                    log.exception("MQTT: part %s could not be published", record.get("part_id"))
                    with self._lock:
                        self.dropped += 1
            if time.monotonic() >= next_status:
                self._publish(f"{self.target.topic}/status", self.status("running"), retain=True)
                next_status = time.monotonic() + self.target.status_s

    def counters(self) -> dict[str, Any]:
        """Publisher counters for the status message and the run summary."""
        with self._lock:
            return {
                "connected": self.connected, "queued": self._handoff.qsize() + len(self._decision_mids),
                "published": self.published, "dropped": self.dropped,
            }  # fmt: skip

    def brief(self) -> str:
        """The publisher's part of the console status line."""
        c = self.counters()
        link = "" if c["connected"] else ", DISCONNECTED"
        return f"mqtt published {c['published']}, queued {c['queued']}, dropped {c['dropped']}{link}"

    def status(self, state: str) -> dict[str, Any]:
        """The status message: the line's figures plus this publisher's counters."""
        try:
            line = self._status()
        except Exception as exc:  # a broken figure must not stop the status (nor the decisions behind it)
            line = {"status_error": f"{type(exc).__name__}: {exc}"}
        return {
            "type": "status", "station": self.station, "run_id": self.run_id, "time": time.time(), "state": state,
            **line, "publish": self.counters(),
        }  # fmt: skip

    def close(self, flush_s: float = 5.0) -> dict[str, Any]:
        """Publish what is queued (waiting at most `flush_s` for the broker), a `stopped` status, disconnect.

        Returns the final counters (again on a second call)."""
        if self._closed is not None:
            return self._closed
        deadline = time.monotonic() + flush_s
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(flush_s)
        while self._decision_mids and self.connected and time.monotonic() < deadline:
            time.sleep(0.02)  # acknowledgements of the last records
        info = self._publish(f"{self.target.topic}/status", self.status("stopped"), retain=True)
        if self.connected:
            try:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass  # the link went away meanwhile: the broker's last will says offline instead
        self._client.disconnect()
        self._client.loop_stop()
        counters = self.counters()
        if counters["queued"] or counters["dropped"]:
            log.warning(
                "MQTT: %d records dropped, %d not confirmed by the broker", counters["dropped"], counters["queued"]
            )
        self._closed = counters
        return counters


def line_status(pipeline: Pipeline) -> dict[str, Any]:
    """The line's figures for a status message: parts, verdicts, rate, latency, health."""
    p50, p99 = pipeline.total_ms.percentiles(50, 99)
    counters, capture = pipeline.counters, pipeline.capture.stats
    return {
        "parts": counters.decisions, "verdicts": dict(counters.verdicts), "dropped": counters.dropped,
        "timeouts": counters.timeouts, "missed": capture.missed, "fps": round(pipeline.total_ms.rate(), 2),
        "latency_ms": {"p50": round(p50, 3) if p50 == p50 else None, "p99": round(p99, 3) if p99 == p99 else None},
        "healthy": pipeline.healthy(), "faults": pipeline.health.faults(),
    }  # fmt: skip


def fan_out(*observers: Any) -> Any:
    """One DecisionObserver calling each of `observers` that is not None (None when there is none)."""
    present = [o for o in observers if o is not None]
    if len(present) <= 1:
        return present[0] if present else None
    return _FanOut(present)


class _FanOut:
    def __init__(self, observers: list[Any]) -> None:
        self._observers = observers

    def decided(self, record: dict[str, Any], image: object, anomaly_map: object) -> None:
        """Every observer sees the record even if an earlier one raised; the first error is raised after."""
        error: Exception | None = None
        for observer in self._observers:
            try:
                observer.decided(record, image, anomaly_map)
            except Exception as exc:  # re-raised below, for the pipeline to count
                error = error or exc
        if error is not None:
            raise error
