"""A real mosquitto broker on 127.0.0.1 (Debian `mosquitto`) and a paho subscriber that records what arrives."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from plc_support import free_port

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def needs_mosquitto() -> str:
    """The mosquitto binary, or skip (scripts/install.sh installs it)."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed: apt-get install mosquitto (scripts/install.sh does)")
    return MOSQUITTO


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("lineside test CA")).issuer_name(name("lineside test CA"))
        .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    server = (
        x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(2).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


class Broker:
    """mosquitto with a generated config: 127.0.0.1 only, persistence (sessions survive a restart); anonymous, or
    with `users` a password file; with `tls` (ca, cert, key) a TLS listener."""

    def __init__(
        self,
        folder: Path,
        port: int | None = None,
        users: dict[str, str] | None = None,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        self.binary = needs_mosquitto()
        self.port = port or free_port()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "mosquitto.conf"
        access = "allow_anonymous true\n"
        if users:
            passwords = folder / "passwd"
            for user, password in users.items():
                create = [] if passwords.exists() else ["-c"]
                subprocess.run(
                    ["mosquitto_passwd", *create, "-b", str(passwords), user, password], check=True, capture_output=True
                )
            access = f"allow_anonymous false\npassword_file {passwords}\n"
        if tls:
            access += f"cafile {tls[0]}\ncertfile {tls[1]}\nkeyfile {tls[2]}\n"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"{access}"
            "persistence true\n"
            f"persistence_location {folder}/\n"
            "max_queued_messages 0\n"  # no broker-side cap for offline persistent subscribers
            "max_inflight_messages 0\n"
            f"log_dest file {folder}/mosquitto.log\n"
            + ("user root\n" if os.geteuid() == 0 else "")  # else it drops to `mosquitto`, who cannot read tmp_path
        )
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        self._process = subprocess.Popen(
            [self.binary, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self._process.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not start: {(self.folder / 'mosquitto.log').read_text(errors='replace')}")

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its persistence file) and wait."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._process = None


class Subscriber:
    """A persistent-session QoS 1 subscriber to TOPIC and TOPIC/#: it also gets what arrives while it reconnects."""

    def __init__(
        self,
        port: int,
        topic: str,
        client_id: str = "lineside-test-subscriber",
        ca: Path | None = None,
        login: tuple[str, str] | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.topic = topic
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        client.reconnect_delay_set(0.2, 1)  # type: ignore[arg-type]  # floats work
        client.on_connect = lambda c, *_: c.subscribe([(topic, 1), (f"{topic}/#", 1)])
        client.on_subscribe = lambda *_: self._subscribed.set()
        client.on_message = self._message
        if ca is not None:
            client.tls_set(ca_certs=str(ca))
        if login is not None:
            client.username_pw_set(*login)
        client.connect("127.0.0.1", port, keepalive=10)
        client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("subscriber did not subscribe")
        self._client = client

    def _message(self, _client: Any, _userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append((message.topic, json.loads(message.payload)))

    def decisions(self) -> list[dict[str, Any]]:
        with self._lock:
            return [m for topic, m in self.messages if topic == self.topic]

    def statuses(self) -> list[dict[str, Any]]:
        with self._lock:
            return [m for topic, m in self.messages if topic == f"{self.topic}/status"]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The decisions once `count` arrived (or what arrived by `timeout`)."""
        deadline = time.monotonic() + timeout
        while len(self.decisions()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.decisions()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
