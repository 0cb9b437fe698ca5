"""Modbus reject outputs (pymodbus 3.x): a coil, or a holding register with on/off values, over TCP or RTU."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from lineside.errors import LinesideError, missing_extra
from lineside.runtime.actuators.base import Actuator, int_param, query_params


class ModbusActuator(Actuator):
    """`modbus+tcp://host:502?coil=N&unit=1` or `modbus+rtu:///dev/ttyUSB0?baud=9600&register=N&on=1&off=0`."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        params = query_params(url)
        parts = urlsplit(url)
        self.transport = parts.scheme.lower().split("+", 1)[1]
        self.unit = int_param(params, "unit", 1, url)
        if ("coil" in params) == ("register" in params):
            raise LinesideError(f"actuator {url}: give exactly one of ?coil=N or ?register=N")
        self.is_coil = "coil" in params
        self.address = int_param(params, "coil" if self.is_coil else "register", None, url)
        self.on_value = int_param(params, "on", 1, url)
        self.off_value = int_param(params, "off", 0, url)
        self.timeout = float(params.get("timeout", "0.5"))
        if self.transport == "tcp":
            if not parts.hostname:
                raise LinesideError(f"actuator {url}: no host (modbus+tcp://HOST:PORT?coil=N)")
            self.host, self.port = parts.hostname, parts.port or 502
        else:
            self.host = parts.path or parts.netloc
            self.port = int_param(params, "baud", 9600, url)
            if not self.host:
                raise LinesideError(f"actuator {url}: no serial port (modbus+rtu:///dev/ttyUSB0?coil=N)")
            self.parity = params.get("parity", "N").upper()
        self._client: Any = None

    def _connect(self) -> None:
        try:
            from pymodbus.client import ModbusSerialClient, ModbusTcpClient
        except ImportError as exc:
            raise missing_extra("pymodbus", "plc") from exc
        client: ModbusTcpClient | ModbusSerialClient
        if self.transport == "tcp":
            client = ModbusTcpClient(self.host, port=self.port, timeout=self.timeout, retries=0)
        else:
            client = ModbusSerialClient(
                self.host, baudrate=self.port, parity=self.parity, timeout=self.timeout, retries=0
            )
        if not client.connect():
            client.close()
            raise ConnectionError(f"cannot connect to {self.host}:{self.port}")
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
