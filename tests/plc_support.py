"""Real PLC stand-ins on 127.0.0.1: python-snap7's S7 server and an asyncua OPC UA server, each recording writes.

Both are the libraries' own server implementations speaking the real protocols; the tests read back what the
runtime wrote (the reject and heartbeat bits/nodes) with timestamps.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from typing import Any

S7_DB = 10  # the data block the tests use; Q and M areas are registered too
S7_AREA_BYTES = 16


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bit_server_class() -> type:
    import snap7
    from snap7.datatypes import S7WordLen

    class BitServer(snap7.Server):  # type: ignore[misc, valid-type]
        """snap7 3.3's server, plus: a BIT write changes only its bit (the stock one writes the value to the whole
        byte, ignoring the bit offset, which a real PLC does not) and every write is recorded with its time."""

        def __init__(self) -> None:
            super().__init__(log=False)
            self.writes: list[tuple[float, str, int, int, int]] = []  # (time.time(), area name, db, byte, new byte)

        def _parse_address_specification(self, addr_spec: bytes) -> dict[str, Any]:
            spec = super()._parse_address_specification(addr_spec)
            if spec and spec["word_len"] == S7WordLen.BIT:
                spec["bit"] = addr_spec[11] & 7  # low 3 bits of the byte.bit address
            return spec

        def _parse_write_address(self, request: dict[str, Any]) -> Any:
            parsed = super()._parse_write_address(request)
            spec = request.get("parameters", {}).get("address_spec", {})
            if parsed is None:
                return None
            area, db, start, count, data = parsed
            memory = self.memory_areas.get((area, db))
            if "bit" in spec and memory is not None and start < len(memory):
                mask = 1 << spec["bit"]
                data = bytearray([memory[start] | mask if data[0] & 1 else memory[start] & ~mask & 0xFF])
            self.writes.append((time.time(), area.name, db, start, data[0]))
            return area, db, start, count, data

    return BitServer


class S7Server:
    """python-snap7's S7 server on 127.0.0.1 with a DB, the Q (outputs) and M (markers) areas registered."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.db = bytearray(S7_AREA_BYTES)
        self.q = bytearray(S7_AREA_BYTES)
        self.m = bytearray(S7_AREA_BYTES)
        self._server: Any = None

    def start(self) -> S7Server:
        from snap7.type import SrvArea

        server = _bit_server_class()()
        server.register_area(SrvArea.DB, S7_DB, self.db)
        server.register_area(SrvArea.PA, 0, self.q)
        server.register_area(SrvArea.MK, 0, self.m)
        server.start_to("127.0.0.1", self.port)
        self._server = server
        return self

    @property
    def writes(self) -> list[tuple[float, str, int, int, int]]:
        return self._server.writes

    def bit_changes(self, area: str, db: int, byte: int, bit: int) -> list[tuple[float, bool]]:
        """(time, value) of each write to that byte that changed the bit (or set it first)."""
        changes: list[tuple[float, bool]] = []
        for when, name, number, start, value in self.writes:
            if name == area and number == db and start == byte:
                state = bool(value >> bit & 1)
                if not changes or changes[-1][1] != state:
                    changes.append((when, state))
        return changes

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()


class OpcUaServer:
    """An asyncua server on 127.0.0.1 in its own thread with Boolean nodes ns=2;s=Line1.Reject and .Heartbeat.

    Logins: anonymous, or a name and password from `users`. Every value a client writes is recorded with its time
    (the server's PostWrite callback). `stop()` and `start()` again restart it on the same port.
    """

    def __init__(self, port: int | None = None, users: dict[str, str] | None = None, certs: Path | None = None) -> None:
        self.port = port or free_port()
        self.users = users
        self.certs = certs  # with a folder: also Basic256Sha256 Sign / SignAndEncrypt, server certificate made there
        self.writes: list[tuple[float, str, bool]] = []  # (time.time(), node id string, value)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="opcua-test-server", daemon=True)
        self._server: Any = None
        self.running = False

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}"

    async def _init(self) -> None:
        from asyncua import Server, ua
        from asyncua.common.callback import CallbackType

        server = Server(user_manager=_Users(self.users))
        await server.init()  # the standard address space: seconds on a busy 2-core box, so once per server
        server.set_endpoint(self.endpoint + "/")
        policies = [ua.SecurityPolicyType.NoSecurity]
        if self.certs is not None:
            key, cert = await make_certificate(self.certs, "server", "urn:lineside:test:server", server=True)
            await server.load_certificate(str(cert))
            await server.load_private_key(str(key))
            policies += [
                ua.SecurityPolicyType.Basic256Sha256_Sign,
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
            ]
        server.set_security_policy(policies)
        server.set_security_IDs(["Anonymous", "Username"])
        namespace = await server.register_namespace("urn:lineside:test")
        line = await server.nodes.objects.add_object(ua.NodeId("Line1", namespace), "Line1")
        for name in ("Reject", "Heartbeat"):
            node = await line.add_variable(ua.NodeId(f"Line1.{name}", namespace), name, False, ua.VariantType.Boolean)
            await node.set_writable()
        server.subscribe_server_callback(CallbackType.PostWrite, self._written)
        self._server = server

    def _written(self, event: Any, _dispatcher: Any) -> None:
        now = time.time()
        for item, status in zip(event.request_params.NodesToWrite, event.response_params, strict=True):
            if status.is_good():
                self.writes.append((now, item.NodeId.to_string(), bool(item.Value.Value.Value)))

    def start(self) -> OpcUaServer:
        """Serve (again, after `stop`: same port, same nodes)."""
        if not self._thread.is_alive():
            self._thread.start()
        if self._server is None:
            asyncio.run_coroutine_threadsafe(self._init(), self._loop).result(120)
        asyncio.run_coroutine_threadsafe(self._server.start(), self._loop).result(30)
        self.running = True
        return self

    def changes(self, node_id: str) -> list[tuple[float, bool]]:
        """(time, value) of each write to `node_id` that changed its value (or set it first)."""
        changes: list[tuple[float, bool]] = []
        for when, node, value in self.writes:
            if node == node_id and (not changes or changes[-1][1] != value):
                changes.append((when, value))
        return changes

    def stop(self) -> None:
        """Stop serving: every session and connection is dropped."""
        if self.running:
            asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(30)
            self.running = False

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


async def make_certificate(folder: Path, name: str, app_uri: str, server: bool = False) -> tuple[Path, Path]:
    """A self-signed OPC UA application certificate (DER) and its key (PEM) in `folder`: (key, cert)."""
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    folder.mkdir(parents=True, exist_ok=True)
    key, cert = folder / f"{name}-key.pem", folder / f"{name}-cert.der"
    use = [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
    await setup_self_signed_certificate(key, cert, app_uri, socket.gethostname(), use, {"commonName": name})
    return key, cert


class _Users:
    """asyncua user manager: anonymous, or a user name with its password from the dict (a wrong one is refused)."""

    def __init__(self, users: dict[str, str] | None) -> None:
        self.users = users or {}

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> Any:
        from asyncua.crypto.permission_rules import User, UserRole

        if username is None:
            return User(role=UserRole.User)  # anonymous, but allowed to write (asyncua's Anonymous role may not)
        if self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None
