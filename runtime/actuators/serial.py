"""Serial reject outputs via pyserial: ASCII line commands or USB relay byte protocols."""

from __future__ import annotations

from lineside.errors import LinesideError, missing_extra
from lineside.runtime.actuators.base import Actuator, int_param, query_params

EOLS: dict[str, bytes] = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r", "none": b""}
PROTOCOLS: tuple[str, ...] = ("ascii", "lcus", "hex")


def lcus_command(channel: int, on: bool) -> bytes:
    """LCUS-type USB relay frame: A0, channel, state, checksum (e.g. A0 01 01 A2 = relay 1 on)."""
    state = 1 if on else 0
    return bytes([0xA0, channel, state, (0xA0 + channel + state) & 0xFF])


def _hex_bytes(value: str | None, key: str, url: str) -> bytes:
    if not value:
        raise LinesideError(f"actuator {url}: protocol=hex needs {key}=HEXBYTES (e.g. {key}=A00101A2)")
    try:
        return bytes.fromhex(value.replace(":", " "))
    except ValueError as exc:
        raise LinesideError(f"actuator {url}: {key}={value!r} is not hex bytes") from exc


def serial_commands(url: str) -> tuple[str, int, bytes, bytes]:
    """(port, baud, on-bytes, off-bytes) of a serial:// URL."""
    rest = url.split("://", 1)[1]
    port = rest.partition("?")[0]
    if not port:
        raise LinesideError(f"actuator {url}: no serial port (serial:///dev/ttyUSB0?... or serial://loop://)")
    params = query_params(url)
    baud = int_param(params, "baud", 9600, url)
    protocol = params.get("protocol", "ascii").lower()
    if protocol == "lcus":
        channel = int_param(params, "channel", 1, url)
        if not 1 <= channel <= 255:
            raise LinesideError(f"actuator {url}: channel must be 1..255")
        return port, baud, lcus_command(channel, True), lcus_command(channel, False)
    if protocol == "hex":
        return port, baud, _hex_bytes(params.get("on"), "on", url), _hex_bytes(params.get("off"), "off", url)
    if protocol != "ascii":
        raise LinesideError(f"actuator {url}: unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    eol_name = params.get("eol", "lf").lower()
    if eol_name not in EOLS:
        raise LinesideError(f"actuator {url}: eol must be one of {', '.join(EOLS)}")
    eol = EOLS[eol_name]
    return port, baud, params.get("on", "ON").encode("ascii") + eol, params.get("off", "OFF").encode("ascii") + eol


class SerialActuator(Actuator):
    """A relay or PLC input driven by fixed command bytes over a serial port (or pyserial URL)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.port_name, self.baud, self.on_bytes, self.off_bytes = serial_commands(url)
        self._port = None

    def _connect(self) -> None:
        try:
            import serial
        except ImportError as exc:
            raise missing_extra("pyserial", "plc") from exc
        self._port = serial.serial_for_url(self.port_name, baudrate=self.baud, timeout=0.5, write_timeout=0.5)

    def _write(self, on: bool) -> None:
        if self._port is None:
            raise ConnectionError("serial port is not open")
        self._port.write(self.on_bytes if on else self.off_bytes)
        self._port.flush()

    def _disconnect(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except OSError:
                pass
