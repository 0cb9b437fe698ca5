"""OPC UA reject outputs through asyncua: a Boolean variable node on the PLC's OPC UA server.

    opcua://HOST[:4840]/NODEID[?timeout=1&connect_timeout=10]
    opcua://USER@HOST:4840/NODEID?password_env=PLC_PASSWORD                 user name + password
    opcua://HOST:4840/NODEID?security=SignAndEncrypt&policy=Basic256Sha256&cert=client.der&key=client.pem
                            [&server_cert=server.der]                        signed (and encrypted) channel

NODEID is the node's string form, e.g. `ns=2;s=Line1.Reject` or, on a Siemens S7-1500, `ns=3;s="DB_Line"."Reject"`.
`;`, `=` and `"` may stay as they are; a `?`, `#`, `%` or `&` inside a node id must be percent-encoded (%3F, %23,
%25, %26), and the whole URL quoted for the shell. The password comes from the environment variable named by
`password_env` (or `user:password@` in the URL, which the logs then show as `***`). security=None|Sign|
SignAndEncrypt, policy=Basic256Sha256|Aes128Sha256RsaOaep|Aes256Sha256RsaPss; the client certificate's
application URI is taken from the certificate. The heartbeat is a second URL (`--heartbeat`) with its own node.

asyncua is asynchronous and the ejector is not: the client lives on an event loop in its own thread. A write is
cancelled after `timeout` seconds. Connecting (a secure channel with RSA on a PLC can take seconds) may take up
to `connect_timeout`: the start-up check waits for it, a reconnect during the run goes on in the background
while the actuation thread waits at most `timeout` per attempt.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from lineside.errors import LinesideError, missing_extra
from lineside.runtime.actuators.base import Actuator, query_params, redact_url
from lineside.runtime.actuators.bounded import CallTimeout, LoopThread

log = logging.getLogger(__name__)

SECURITY_MODES = ("None", "Sign", "SignAndEncrypt")
POLICIES = ("Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss")


@dataclass(frozen=True)
class OpcUaTarget:
    """Endpoint, node and session options of an opcua:// URL."""

    endpoint: str  # opc.tcp://host:port
    node_id: str
    timeout: float = 1.0
    connect_timeout: float = 10.0
    security: str = "None"
    policy: str = "Basic256Sha256"
    cert: Path | None = None
    key: Path | None = None
    server_cert: Path | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)


def _choice(params: dict[str, str], key: str, choices: tuple[str, ...], url: str) -> str:
    value = params.get(key, choices[0])
    match = [c for c in choices if c.lower() == value.lower()]
    if not match:
        raise LinesideError(f"actuator {url}: {key} must be one of {', '.join(choices)}, got {value!r}")
    return match[0]


def _file(params: dict[str, str], key: str, url: str) -> Path | None:
    if key not in params:
        return None
    path = Path(params[key]).expanduser()
    if not path.is_file():
        raise LinesideError(f"actuator {url}: {key}={params[key]} is not a file")
    return path


def _seconds(params: dict[str, str], key: str, default: float, shown: str) -> float:
    try:
        value = float(params.get(key, default))
    except ValueError as exc:
        raise LinesideError(f"actuator {shown}: {key} must be seconds, e.g. {key}=1") from exc
    if not 0 < value <= 60:
        raise LinesideError(f"actuator {shown}: {key} must be in (0, 60] seconds")
    return value


def _password(params: dict[str, str], parts: Any, url: str) -> str | None:
    if "password_env" not in params:
        return unquote(parts.password) if parts.password is not None else None
    name = params["password_env"]
    if name not in os.environ:
        raise LinesideError(f"actuator {url}: password_env={name} but the environment variable {name} is not set")
    return os.environ[name]


def parse_opcua_url(url: str) -> OpcUaTarget:
    """The OpcUaTarget of an opcua:// URL; LinesideError naming what is wrong."""
    parts, shown = urlsplit(url), redact_url(url)
    node_id = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not node_id:
        raise LinesideError(f"actuator {shown}: give host and node, e.g. opcua://10.0.0.5:4840/ns=2;s=Line1.Reject")
    try:
        endpoint = f"opc.tcp://{parts.hostname}:{parts.port or 4840}"
    except ValueError as exc:
        raise LinesideError(f"actuator {shown}: bad port") from exc
    params = query_params(url)
    timeout = _seconds(params, "timeout", 1.0, shown)
    connect_timeout = max(timeout, _seconds(params, "connect_timeout", 10.0, shown))
    security = _choice(params, "security", SECURITY_MODES, shown)
    cert, key = _file(params, "cert", shown), _file(params, "key", shown)
    if security != "None" and (cert is None or key is None):
        raise LinesideError(f"actuator {shown}: security={security} needs cert=CLIENT_CERT and key=CLIENT_KEY")
    if security == "None" and (cert or key or "policy" in params):
        raise LinesideError(f"actuator {shown}: cert/key/policy need security=Sign or security=SignAndEncrypt")
    user = unquote(parts.username) if parts.username else params.get("user")
    password = _password(params, parts, shown)
    if password is not None and not user:
        raise LinesideError(f"actuator {shown}: a password needs a user (opcua://USER@HOST/... or user=NAME)")
    return OpcUaTarget(
        endpoint=endpoint, node_id=node_id, timeout=timeout, connect_timeout=connect_timeout, security=security,
        policy=_choice(params, "policy", POLICIES, shown), cert=cert, key=key,
        server_cert=_file(params, "server_cert", shown), user=user, password=password,
    )  # fmt: skip


def _application_uri(cert_path: Path) -> str | None:
    """The URI in the client certificate's subjectAltName (servers check it against the client's application URI)."""
    from cryptography import x509

    data = cert_path.read_bytes()
    cert = x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


async def _quiet_disconnect(client: Any) -> None:
    try:
        await client.disconnect()
    except Exception as exc:  # the session may already be gone with the link; nothing left to do
        log.debug("OPC UA disconnect: %s", exc)


class OpcUaActuator(Actuator):
    """One Boolean node, written through an asyncua client running on its own event-loop thread."""

    def __init__(self, url: str) -> None:
        super().__init__(redact_url(url))  # the URL shows up in logs and errors: never with its password
        self.target = parse_opcua_url(url)
        self._loop: LoopThread | None = None  # started by the first connect
        self._client: Any = None
        self._node: Any = None
        self._closing: concurrent.futures.Future[None] | None = None
        self._opening: concurrent.futures.Future[None] | None = None  # a connect still running in the background
        self._starting = False

    async def _open(self) -> None:
        from asyncua import Client, ua
        from asyncua.crypto import security_policies

        target = self.target
        try:
            node_id = ua.NodeId.from_string(target.node_id)
        except Exception as exc:  # asyncua raises several parsing error types
            raise LinesideError(f"actuator {self.url}: {target.node_id!r} is not an OPC UA node id ({exc})") from exc
        client = Client(target.endpoint, timeout=target.connect_timeout)  # writes are bounded by `timeout` here
        if target.user:
            client.set_user(target.user)
        if target.password is not None:
            client.set_password(target.password)
        try:
            if target.security != "None" and target.cert and target.key:
                client.application_uri = _application_uri(target.cert) or client.application_uri
                await client.set_security(
                    getattr(security_policies, f"SecurityPolicy{target.policy}"), str(target.cert), str(target.key),
                    server_certificate=str(target.server_cert) if target.server_cert else None,
                    mode=getattr(ua.MessageSecurityMode, target.security),
                )  # fmt: skip
            await client.connect()
        except BaseException:  # incl. cancellation by the time bound: do not leave a half-open socket behind
            asyncio.ensure_future(_quiet_disconnect(client))
            raise
        self._client, self._node = client, client.get_node(node_id)

    def _connect(self) -> None:
        try:
            import asyncua  # noqa: F401
        except ImportError as exc:
            raise missing_extra("asyncua", "opcua") from exc
        if self._loop is None:
            self._loop = LoopThread("lineside-opcua")
        if self._opening is None:
            self._opening = self._loop.submit(self._open(), self.target.connect_timeout)
        opening = self._opening
        wait = self.target.connect_timeout + 0.5 if self._starting else self.target.timeout
        try:
            opening.result(wait)
        except Exception as exc:
            if not opening.done():
                raise CallTimeout(f"still connecting after {wait:g} s (goes on in the background)") from exc
            self._opening = None
            if isinstance(exc, (asyncio.TimeoutError, concurrent.futures.TimeoutError)):
                raise CallTimeout(f"no session within connect_timeout={self.target.connect_timeout:g} s") from exc
            raise
        self._opening = None

    def connect(self) -> None:
        """The start-up check: waits up to `connect_timeout` for the session (reconnects do not block that long)."""
        self._starting = True
        try:
            super().connect()
        finally:
            self._starting = False

    def _write(self, on: bool) -> None:
        from asyncua import ua

        node, loop = self._node, self._loop
        if node is None or loop is None:
            raise ConnectionError("OPC UA session is not open")
        value = ua.DataValue(ua.Variant(on, ua.VariantType.Boolean))  # no timestamps: S7-1500 refuses writes with them
        loop.run(node.write_attribute(ua.AttributeIds.Value, value), self.target.timeout)

    def _disconnect(self) -> None:
        client, self._client, self._node = self._client, None, None
        if client is not None and self._loop is not None:  # closing a session on a dead link takes a while: no wait
            self._closing = self._loop.submit(_quiet_disconnect(client), self.target.timeout)

    def close(self) -> None:
        """Switch off, close the session (waiting at most `timeout`), stop the event-loop thread."""
        super().close()
        if self._closing is not None:
            try:
                self._closing.result(self.target.timeout + 0.5)
            except (concurrent.futures.TimeoutError, asyncio.TimeoutError, concurrent.futures.CancelledError):
                log.warning("actuator %s: the OPC UA session did not close in time", self.url)
        if self._loop is not None:
            self._loop.close()
