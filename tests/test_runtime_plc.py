"""S7 and OPC UA reject outputs against the libraries' own servers on 127.0.0.1 (python-snap7, asyncua):
exact bits and nodes written, link loss and server restart survived, every call bounded in time, bad URLs refused."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from plc_support import S7_DB, OpcUaServer, S7Server, free_port, make_certificate

from lineside.errors import LinesideError
from lineside.runtime.actuators.base import Actuator, ActuatorError, open_actuator

pytest.importorskip("snap7", reason="python-snap7 is not installed: pip install 'lineside[s7]'")
pytest.importorskip("asyncua", reason="asyncua is not installed: pip install 'lineside[opcua]'")

REJECT, HEARTBEAT = "ns=2;s=Line1.Reject", "ns=2;s=Line1.Heartbeat"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s7://?area=DB&db=1&byte=0&bit=0", "no PLC host"),
        ("s7://plc?byte=0&bit=0", "area must be one of Q, M, DB"),
        ("s7://plc?area=I&byte=0&bit=0", "area must be one of Q, M, DB"),
        ("s7://plc?area=DB&byte=0&bit=0", "needs ?db=N"),
        ("s7://plc?area=M&db=3&byte=0&bit=0", "db= goes with area=DB only"),
        ("s7://plc?area=Q&byte=0&bit=8", "bit must be 0..7"),
        ("s7://plc?area=Q&byte=0", "needs ?bit=N"),
        ("s7://plc?area=Q&byte=x&bit=1", "byte='x' is not an integer"),
        ("s7://plc?area=Q&byte=0&bit=1&slot=40", "slot must be 0..31"),
        ("s7://plc?area=Q&byte=0&bit=1&timeout=0", "timeout must be in (0, 30]"),
        ("opcua://plc:4840", "give host and node"),
        ("opcua://plc:4840/ns=2;s=X?security=Encrypt", "security must be one of None, Sign, SignAndEncrypt"),
        ("opcua://plc:4840/ns=2;s=X?security=Sign", "needs cert=CLIENT_CERT and key=CLIENT_KEY"),
        ("opcua://plc:4840/ns=2;s=X?policy=Basic256Sha256", "need security=Sign or security=SignAndEncrypt"),
        ("opcua://plc:4840/ns=2;s=X?security=Sign&cert=/nonexistent.der&key=/k.pem", "is not a file"),
        ("opcua://plc:4840/ns=2;s=X?password_env=LINESIDE_TEST_UNSET_VARIABLE", "is not set"),
        ("opcua://:secret@plc:4840/ns=2;s=X", "a password needs a user"),
        ("opcua://plc:4840/ns=2;s=X?timeout=soon", "timeout must be seconds"),
    ],
)
def test_bad_urls_are_one_line_errors(url: str, message: str) -> None:
    with pytest.raises(LinesideError, match=message.replace("(", r"\(").replace("?", r"\?")) as info:
        open_actuator(url)
    assert "\n" not in str(info.value)
    assert "secret" not in str(info.value)


def test_opcua_bad_node_id_is_refused_at_start(opcua_server: OpcUaServer) -> None:
    actuator = open_actuator(f"opcua://127.0.0.1:{opcua_server.port}/ns=2;x=Nope")
    with pytest.raises(LinesideError, match="is not an OPC UA node id"):
        actuator.connect()
    actuator.close()


@pytest.fixture
def s7_server():
    server = S7Server().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def opcua_server(tmp_path_factory: pytest.TempPathFactory):
    certs = tmp_path_factory.mktemp("opcua-certs")
    server = OpcUaServer(users={"line": "s3cret"}, certs=certs).start()  # one per module: loading takes seconds
    yield server
    server.close()


@pytest.mark.network
@pytest.mark.parametrize(
    ("area", "memory", "query"), [("DB", "db", f"area=DB&db={S7_DB}"), ("PA", "q", "area=Q"), ("MK", "m", "area=M")]
)
def test_s7_output_switches_exactly_its_bit(s7_server: S7Server, area: str, memory: str, query: str) -> None:
    getattr(s7_server, memory)[3] = 0b1010_0001  # other bits of the byte belong to the PLC program
    actuator = open_actuator(f"s7://127.0.0.1:{s7_server.port}?rack=0&slot=1&{query}&byte=3&bit=2")
    actuator.connect()  # drives the output off at start
    try:
        actuator.set(True)
        assert getattr(s7_server, memory)[3] == 0b1010_0101
        actuator.set(False)
        assert getattr(s7_server, memory)[3] == 0b1010_0001
    finally:
        actuator.close()
    db = S7_DB if area == "DB" else 0
    assert [value for _, value in s7_server.bit_changes(area, db, 3, 2)] == [False, True, False]
    assert actuator.health()["ok"] and actuator.health()["writes"] == 2


@pytest.mark.network
def test_s7_refused_address_is_a_start_up_error(s7_server: S7Server) -> None:
    actuator = open_actuator(f"s7://127.0.0.1:{s7_server.port}?area=DB&db=99&byte=0&bit=0")
    with pytest.raises(LinesideError, match=r"DB99\.DBX0\.0 refused.*optimized block access off"):
        actuator.connect()
    actuator.close()


def _until_written(actuator: Actuator, on: bool, within_s: float) -> int:
    """Retry `set(on)` as the ejector does until it lands; returns the failed attempts."""
    failures, deadline = 0, time.monotonic() + within_s
    while True:
        try:
            actuator.set(on)
            return failures
        except ActuatorError:
            failures += 1
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.network
def test_s7_link_loss_and_plc_restart(s7_server: S7Server) -> None:
    url = f"s7://127.0.0.1:{s7_server.port}?area=M&byte=0&bit=1&timeout=0.3"
    actuator = open_actuator(url)
    actuator.connect()
    actuator.set(True)
    s7_server.stop()
    with pytest.raises(ActuatorError):
        for _ in range(5):  # the server's handler of the open connection may answer one more request
            actuator.set(False)
            time.sleep(0.1)
    assert not actuator.ok and actuator.errors >= 1 and actuator.last_error
    revived = S7Server(s7_server.port).start()
    try:
        _until_written(actuator, True, within_s=6.0)
        assert actuator.ok and revived.m[0] == 0b10
    finally:
        actuator.close()
        revived.stop()
    assert revived.m[0] == 0  # left off


@pytest.mark.network
def test_opcua_writes_the_node_and_survives_a_server_restart(opcua_server: OpcUaServer) -> None:
    actuator = open_actuator(f"opcua://127.0.0.1:{opcua_server.port}/{REJECT}?timeout=0.5")
    actuator.connect()
    actuator.set(True)
    actuator.set(False)
    assert [v for _, v in opcua_server.changes(REJECT)][-3:] == [False, True, False]
    opcua_server.stop()
    with pytest.raises(ActuatorError):
        actuator.set(True)
    assert not actuator.ok
    opcua_server.start()  # same port, new server state
    try:
        failures = _until_written(actuator, True, within_s=8.0)
        assert actuator.ok and opcua_server.changes(REJECT)[-1][1] is True
        assert actuator.errors < failures  # calls during the back-off are refused without touching the network
    finally:
        actuator.close()
    assert opcua_server.changes(REJECT)[-1][1] is False


@pytest.mark.network
def test_opcua_user_login(opcua_server: OpcUaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    base = f"opcua://line@127.0.0.1:{opcua_server.port}/{HEARTBEAT}"
    monkeypatch.setenv("LINESIDE_TEST_PLC_PASSWORD", "s3cret")
    good = open_actuator(base + "?password_env=LINESIDE_TEST_PLC_PASSWORD")
    good.connect()
    good.set(True)
    good.close()
    assert [v for _, v in opcua_server.changes(HEARTBEAT)][-3:] == [False, True, False]
    in_url = open_actuator(f"opcua://line:wrong@127.0.0.1:{opcua_server.port}/{HEARTBEAT}")
    with pytest.raises(LinesideError, match="does not respond") as info:
        in_url.connect()
    in_url.close()
    assert "wrong" not in str(info.value) and "line:***@" in str(info.value)
    assert in_url.health()["url"].startswith("opcua://line:***@")


@pytest.mark.network
@pytest.mark.parametrize("mode", ["Sign", "SignAndEncrypt"])
def test_opcua_secure_channel(opcua_server: OpcUaServer, tmp_path: Path, mode: str) -> None:
    key, cert = asyncio.run(make_certificate(tmp_path, "client", "urn:lineside:test:client"))
    query = f"security={mode}&policy=Basic256Sha256&cert={cert}&key={key}"
    actuator = open_actuator(f"opcua://127.0.0.1:{opcua_server.port}/{HEARTBEAT}?{query}")
    actuator.connect()
    try:
        actuator.set(True)
        assert opcua_server.changes(HEARTBEAT)[-1][1] is True
        channel = actuator._client.security_policy  # type: ignore[attr-defined]
        assert channel.URI.endswith("#Basic256Sha256") and channel.Mode.name == mode
    finally:
        actuator.close()
    assert opcua_server.changes(HEARTBEAT)[-1][1] is False


class SilentPlc:
    """Accepts TCP connections and never answers: a PLC that hangs mid-handshake."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.mark.network
@pytest.mark.parametrize("scheme", ["s7", "opcua"])
def test_a_silent_plc_never_blocks_longer_than_the_timeout(scheme: str) -> None:
    plc = SilentPlc()
    url = (
        f"s7://127.0.0.1:{plc.port}?area=M&byte=0&bit=0&timeout=0.3"
        if scheme == "s7"
        else f"opcua://127.0.0.1:{plc.port}/{REJECT}?timeout=0.3&connect_timeout=0.3"
    )
    actuator = open_actuator(url)
    try:
        start = time.monotonic()
        with pytest.raises(LinesideError, match="does not respond"):
            actuator.connect()
        assert time.monotonic() - start < 0.3 + 1.0  # the drivers' own timeouts are 4-5 s; slack for a loaded box
        for _ in range(3):  # link down: later writes fail fast (back-off, or the stuck call not yet returned)
            start = time.monotonic()
            with pytest.raises(ActuatorError):
                actuator.set(True)
            assert time.monotonic() - start < 0.3 + 1.0
    finally:
        actuator.close()
        plc.close()


@pytest.mark.network
def test_opcua_reconnect_runs_in_the_background_while_writes_stay_bounded() -> None:
    plc = SilentPlc()
    actuator = open_actuator(f"opcua://127.0.0.1:{plc.port}/{REJECT}?timeout=0.2&connect_timeout=2")
    try:
        start = time.monotonic()
        with pytest.raises(LinesideError, match="connect_timeout=2"):
            actuator.connect()  # the start-up check waits for the whole connect_timeout
        assert 2.0 <= time.monotonic() - start < 4.0
        attempts = []
        for _ in range(6):  # the line's retries: each waits at most `timeout`, the connect goes on meanwhile
            start = time.monotonic()
            with pytest.raises(ActuatorError):
                actuator.set(True)
            attempts.append(time.monotonic() - start)
            if len(attempts) == 1:
                assert "still connecting after 0.2 s" in (actuator.last_error or "")
            time.sleep(0.3)
        assert max(attempts) < 0.2 + 1.0, attempts
        assert actuator.errors >= 2 and not actuator.ok
    finally:
        actuator.close()
        plc.close()


def test_dead_port_is_refused_quickly() -> None:
    actuator = open_actuator(f"s7://127.0.0.1:{free_port()}?area=M&byte=0&bit=0")
    with pytest.raises(LinesideError, match="does not respond"):
        actuator.connect()
    actuator.close()


def _cell_doc_commands() -> list[str]:
    """The `lineside run` commands of docs/cell.md's PLC and MQTT sections, continuation lines joined."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "cell.md").read_text(encoding="utf-8")
    text = doc[doc.index("## PLC outputs") :].replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip().startswith("lineside run ")]


@pytest.mark.parametrize("command", _cell_doc_commands())
def test_cell_doc_commands_parse_and_their_urls_are_accepted(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shlex

    from lineside.cli import build_parser
    from lineside.runtime.publish import parse_mqtt_url

    args = build_parser().parse_args(shlex.split(command)[1:])
    for url in (args.actuator, args.heartbeat):
        if url is not None:
            assert open_actuator(url).url == url
    if args.publish:
        (tmp_path / "ca.pem").write_text("")
        monkeypatch.setenv("MQTT_PASSWORD", "x")
        assert parse_mqtt_url(args.publish.replace("/etc/lineside/ca.pem", str(tmp_path / "ca.pem"))).topic


@pytest.mark.parametrize(
    ("module", "url", "extra"),
    [("snap7", "s7://127.0.0.1?area=M&byte=0&bit=0", "s7"), ("asyncua", "opcua://127.0.0.1/ns=2;s=X", "opcua")],
)
def test_missing_extra_is_named(module: str, url: str, extra: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import snap7` / `import asyncua` now raises ImportError
    actuator = open_actuator(url)
    with pytest.raises(LinesideError, match=rf"is not installed: pip install 'lineside\[{extra}\]'"):
        actuator.connect()
    actuator.close()
