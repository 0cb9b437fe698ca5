"""Modbus reject outputs (pymodbus 3.x): a coil, or a holding register with on/off values, over TCP or RTU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lineside.errors import LinesideError, missing_extra
from lineside.runtime.actuators.base import Actuator, int_param, query_params
from lineside.validate import bounded_int, finite_float

PARITIES = ("N", "E", "O")


@dataclass(frozen=True)
class TcpLink:
    """Modbus TCP: the device's host and TCP port."""

    host: str
    port: int = 502

    def describe(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RtuLink:
    """Modbus RTU: the serial device, its baud rate and parity (N, E or O)."""

    device: str
    baud: int = 9600
    parity: str = "N"

    def describe(self) -> str:
        return f"{self.device} ({self.baud} baud, parity {self.parity})"


def parse_link(url: str, params: dict[str, str]) -> TcpLink | RtuLink:
    """The link of a `modbus+tcp://HOST:PORT` or `modbus+rtu:///dev/ttyX?baud=N&parity=N|E|O` URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "modbus+tcp":
        if not parts.hostname:
            raise LinesideError(f"actuator {url}: no host (modbus+tcp://HOST:PORT?coil=N)")
        try:
            port = 502 if parts.port is None else parts.port
        except ValueError:  # not a number, or outside 0..65535
            port = 0
        if port == 0:
            raise LinesideError(f"actuator {url}: the port must be 1..65535")
        return TcpLink(parts.hostname, port)
    device = parts.path or parts.netloc
    if not device:
        raise LinesideError(f"actuator {url}: no serial port (modbus+rtu:///dev/ttyUSB0?coil=N)")
    parity = params.get("parity", "N").upper()
    if parity not in PARITIES:
        raise LinesideError(f"actuator {url}: parity must be one of {', '.join(PARITIES)}, got {parity!r}")
    baud = _ranged(url, "baud", int_param(params, "baud", 9600, url), 1, 4_000_000)
    return RtuLink(device, baud, parity)


def _ranged(url: str, key: str, value: int, low: int, high: int) -> int:
    """An integer URL parameter in low..high; LinesideError naming the URL and the key otherwise."""
    return bounded_int(f"actuator {url}: {key}", value, at_least=low, at_most=high)


class ModbusActuator(Actuator):
    """`modbus+tcp://host:502?coil=N&unit=1` or `modbus+rtu:///dev/ttyUSB0?baud=9600&register=N&on=1&off=0`."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        params = query_params(url)
        self.link = parse_link(url, params)
        self.unit = _ranged(url, "unit", int_param(params, "unit", 1, url), 0, 247)
        if ("coil" in params) == ("register" in params):
            raise LinesideError(f"actuator {url}: give exactly one of ?coil=N or ?register=N")
        self.is_coil = "coil" in params
        key = "coil" if self.is_coil else "register"
        self.address = _ranged(url, key, int_param(params, key, None, url), 0, 65535)
        self.on_value = _ranged(url, "on", int_param(params, "on", 1, url), 0, 65535)
        self.off_value = _ranged(url, "off", int_param(params, "off", 0, url), 0, 65535)
        self.timeout = _timeout(url, params.get("timeout", "0.5"))
        self._client: Any = None

    def _connect(self) -> None:
        try:
            from pymodbus.client import ModbusSerialClient, ModbusTcpClient
        except ImportError as exc:
            raise missing_extra("pymodbus", "plc") from exc
        client: ModbusTcpClient | ModbusSerialClient
        if isinstance(self.link, TcpLink):
            client = ModbusTcpClient(self.link.host, port=self.link.port, timeout=self.timeout, retries=0)
        else:
            client = ModbusSerialClient(
                self.link.device, baudrate=self.link.baud, parity=self.link.parity, timeout=self.timeout, retries=0
            )
        if not client.connect():
            client.close()
            raise ConnectionError(f"cannot connect to {self.link.describe()}")
        self._client = client

    def _write(self, on: bool) -> None:
        if self._client is None:
            raise ConnectionError("modbus link is not open")
        if self.is_coil:
            response = self._client.write_coil(self.address, on, device_id=self.unit)
        else:
            value = self.on_value if on else self.off_value
            response = self._client.write_register(self.address, value, device_id=self.unit)
        if response.isError():
            raise ConnectionError(f"device {self.unit} answered {response}")

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _timeout(url: str, raw: str) -> float:
    """The ?timeout= seconds: a finite number in (0, 60]."""
    try:
        return finite_float(f"actuator {url}: timeout", float(raw), above=0.0, at_most=60.0)
    except ValueError:
        raise LinesideError(f"actuator {url}: timeout={raw!r} is not a number of seconds") from None
