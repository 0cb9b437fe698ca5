"""Reject outputs: one interface, link retry with back-off, and `open_actuator(url)` by URL scheme.

serial:///dev/ttyUSB0?baud=9600&on=ON&off=OFF      ASCII line protocol (eol=lf|crlf|cr|none)
serial:///dev/ttyUSB0?protocol=lcus&channel=1      LCUS-type USB relay (A0 01 01 A2 / A0 01 00 A1)
serial:///dev/ttyUSB0?protocol=hex&on=A00101A2&off=A00100A1   any fixed byte commands
serial://loop://                                   pyserial loopback (tests, dry runs)
modbus+tcp://host:502?coil=N&unit=1                or register=N&on=1&off=0
modbus+rtu:///dev/ttyUSB0?baud=9600&coil=N&unit=1
s7://host:102?rack=0&slot=1&area=DB&db=N&byte=B&bit=b   Siemens S7 bit (python-snap7; area Q, M or DB)
opcua://host:4840/ns=2;s=Line1.Reject              OPC UA Boolean node (asyncua; security/user options)
gpio://gpiochip0/17                                libgpiod; gpio://jetson/BOARD_PIN for Jetson.GPIO
log://                                             no hardware: transitions go to the log
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lineside.errors import LinesideError
from lineside.redact import redact

log = logging.getLogger(__name__)


class ActuatorError(RuntimeError):
    """Writing the output failed (link down, device error); the link is retried with back-off."""


def query_params(url: str) -> dict[str, str]:
    """The URL's query as a flat dict (last value wins), percent-decoded."""
    query = url.partition("?")[2]
    return {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}


def int_param(params: dict[str, str], key: str, default: int | None, url: str) -> int:
    """An integer query parameter; LinesideError if it is missing (no default) or not an integer."""
    raw = params.get(key)
    if raw is None:
        if default is None:
            raise LinesideError(f"actuator {url} needs ?{key}=N")
        return default
    try:
        return int(raw, 0)
    except ValueError as exc:
        raise LinesideError(f"actuator {url}: {key}={raw!r} is not an integer") from exc


class Actuator(ABC):
    """One digital output. `set` reconnects a lost link itself, at most once per back-off interval.

    Health API (every subclass gets it from this class; the Ejector, console, dashboard and exit status read it):
        ok            False from a failed connect/write until the next successful write, True after one
        errors        failed connects and writes so far (waiting out the back-off is not counted)
        writes        successful writes so far
        last_error    the last failure as text, None before any
        last_failure  `time.monotonic()` of the last failure, None before any
        last_write    `time.monotonic()` of the last successful write (connect's OFF included), None before any
        health()      the above as a JSON-able dict (URL credentials removed), for status pages
    A subclass implements only `_connect`, `_write` and `_disconnect`, and lets every failure raise (any
    exception type): an error swallowed in `_write` makes a dead output look healthy, and then a part that
    should be ejected ships without an alarm. `set` raises ActuatorError on every attempt that did not
    reach the device, including those refused while the link waits out its back-off.
    """

    def __init__(self, url: str, retry_s: float = 0.5, retry_max_s: float = 5.0) -> None:
        self.url = url
        self.state: bool | None = None  # last state written successfully; None = unknown
        self.ok = True  # False while the output is known not to follow what is written
        self.errors = 0
        self.writes = 0
        self.last_error: str | None = None
        self.last_failure: float | None = None
        self.last_write: float | None = None
        self._connected = False
        self._retry_s = retry_s
        self._retry_max_s = retry_max_s
        self._delay = retry_s
        self._next_try = 0.0

    @abstractmethod
    def _connect(self) -> None:
        """Open the link; raise on failure."""

    @abstractmethod
    def _write(self, on: bool) -> None:
        """Drive the output; raise on failure."""

    @abstractmethod
    def _disconnect(self) -> None:
        """Close the link; must not raise."""

    def connect(self) -> None:
        """Open the link now and drive the output off; LinesideError when that fails (start-up check)."""
        try:
            self._connect()
            self._connected = True
            self._write(False)
            self.state, self.ok, self.last_write = False, True, time.monotonic()
        except LinesideError:
            raise
        except Exception as exc:  # start-up: tell the user which output does not answer
            self._disconnect()
            raise LinesideError(f"actuator {self.url} does not respond: {type(exc).__name__}: {exc}") from exc

    def set(self, on: bool) -> None:
        """Drive the output; raises ActuatorError (link marked down, retried after back-off)."""
        now = time.monotonic()
        if not self._connected:
            if now < self._next_try:
                raise ActuatorError(f"{self.url}: link down, next retry in {self._next_try - now:.2f} s")
            try:
                self._connect()
            except Exception as exc:  # any driver error means the link is still down
                self._fail(now, exc)
            self._connected = True
            log.warning("actuator %s: link restored", self.url)
        try:
            self._write(on)
        except Exception as exc:  # any driver error means the link dropped
            self._fail(now, exc)
        self.state, self.ok, self.last_write = on, True, time.monotonic()
        self.writes += 1
        self._delay = self._retry_s

    def _fail(self, now: float, exc: Exception) -> None:
        self.errors += 1
        self.ok = False
        self.last_error, self.last_failure = f"{type(exc).__name__}: {exc}", now
        self._connected = False
        self.state = None
        self._disconnect()
        self._next_try = now + self._delay
        self._delay = min(self._delay * 2, self._retry_max_s)
        raise ActuatorError(f"{self.url}: {self.last_error}") from exc

    def health(self) -> dict[str, Any]:
        """`ok`, `errors`, `writes` and `last_error` of this output, keyed with its URL (credentials removed)."""
        return {
            "url": redact(self.url), "ok": self.ok, "errors": self.errors, "writes": self.writes,
            "last_error": self.last_error,
        }  # fmt: skip

    def close(self) -> None:
        """Leave the output off (best effort) and close the link."""
        if self._connected:
            try:
                self._write(False)
                self.state = False
            except Exception as exc:  # closing must not raise; the failure is logged
                self.ok, self.last_error = False, f"{type(exc).__name__}: {exc}"
                log.error("actuator %s: could not switch off on close: %s", self.url, exc)
        self._disconnect()
        self._connected = False


def redact_url(url: str) -> str:
    """`url` without credentials (lineside.redact), for messages and status pages."""
    return redact(url) or url


def open_actuator(url: str) -> Actuator:
    """An actuator for `url` (not yet connected; call `connect()`)."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme == "serial":
        from lineside.runtime.actuators.serial import SerialActuator

        return SerialActuator(url)
    if scheme in ("modbus+tcp", "modbus+rtu"):
        from lineside.runtime.actuators.modbus import ModbusActuator

        return ModbusActuator(url)
    if scheme == "gpio":
        from lineside.runtime.actuators.gpio import GpioActuator

        return GpioActuator(url)
    if scheme == "log":
        from lineside.runtime.actuators.log import LogActuator

        return LogActuator(url)
    if scheme == "s7":
        from lineside.runtime.actuators.s7 import S7Actuator

        return S7Actuator(url)
    if scheme == "opcua":
        from lineside.runtime.actuators.opcua import OpcUaActuator

        return OpcUaActuator(url)
    raise LinesideError(
        f"unknown actuator {redact_url(url)!r}: use serial://PORT?..., modbus+tcp://HOST:PORT?coil=N, "
        "modbus+rtu://PORT?coil=N, gpio://CHIP/LINE, s7://HOST?area=DB&db=N&byte=B&bit=b, opcua://HOST:4840/NODEID "
        "or log://"
    )
