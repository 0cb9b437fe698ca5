"""Siemens S7 reject outputs through python-snap7 (3.x, pure Python): one bit in Q, M or a data block.

    s7://HOST[:102]?rack=0&slot=1&area=DB&db=10&byte=0&bit=0[&timeout=0.5]
    s7://HOST?rack=0&slot=1&area=M&byte=20&bit=1          (marker M20.1)
    s7://HOST?rack=0&slot=1&area=Q&byte=0&bit=7           (output Q0.7)

The bit is written with a BIT-sized S7 write (transport size BIT), so the PLC changes exactly that bit and no
other bit of its byte (no read-modify-write race with the PLC program). S7-1200/1500: PUT/GET access must be
enabled and a DB needs "optimized block access" off (absolute addresses). Rack/slot: S7-1200/1500 0/1 (CPU in
slot 1), S7-300 0/2. Every request waits at most `timeout` seconds (default 0.5), connecting included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lineside.errors import LinesideError, missing_extra
from lineside.runtime.actuators.base import Actuator, int_param, query_params
from lineside.runtime.actuators.bounded import BlockingWorker

AREAS: dict[str, str] = {"Q": "PA", "M": "MK", "DB": "DB"}  # URL area -> snap7.type.Area member


@dataclass(frozen=True)
class S7Bit:
    """Where the output lives: PLC endpoint and the bit address."""

    host: str
    port: int
    rack: int
    slot: int
    area: str  # Q, M or DB
    db: int  # 0 unless area is DB
    byte: int
    bit: int
    timeout: float

    def __str__(self) -> str:
        """Siemens notation: DB10.DBX0.0, M20.1, Q0.7."""
        if self.area == "DB":
            return f"DB{self.db}.DBX{self.byte}.{self.bit}"
        return f"{self.area}{self.byte}.{self.bit}"


def _bounded(params: dict[str, str], key: str, default: int | None, low: int, high: int, url: str) -> int:
    value = int_param(params, key, default, url)
    if not low <= value <= high:
        raise LinesideError(f"actuator {url}: {key} must be {low}..{high}, got {value}")
    return value


def parse_s7_url(url: str) -> S7Bit:
    """The S7Bit of an s7:// URL; LinesideError naming what is wrong."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise LinesideError(f"actuator {url}: no PLC host (s7://HOST?rack=0&slot=1&area=DB&db=1&byte=0&bit=0)")
    try:
        port = parts.port or 102
    except ValueError as exc:
        raise LinesideError(f"actuator {url}: bad port") from exc
    params = query_params(url)
    area = params.get("area", "").upper()
    if area not in AREAS:
        raise LinesideError(f"actuator {url}: area must be one of {', '.join(AREAS)} (got {area or 'nothing'!r})")
    if area == "DB":
        db = _bounded(params, "db", None, 1, 65535, url)
    elif "db" in params:
        raise LinesideError(f"actuator {url}: db= goes with area=DB only")
    else:
        db = 0
    try:
        timeout = float(params.get("timeout", "0.5"))
    except ValueError as exc:
        raise LinesideError(f"actuator {url}: timeout must be seconds, e.g. timeout=0.5") from exc
    if not 0 < timeout <= 30:
        raise LinesideError(f"actuator {url}: timeout must be in (0, 30] seconds")
    return S7Bit(
        host=parts.hostname, port=port, rack=_bounded(params, "rack", 0, 0, 7, url),
        slot=_bounded(params, "slot", 1, 0, 31, url), area=area, db=db,
        byte=_bounded(params, "byte", None, 0, 65535, url), bit=_bounded(params, "bit", None, 0, 7, url),
        timeout=timeout,
    )  # fmt: skip


class S7Actuator(Actuator):
    """One bit of an S7 PLC, written over ISO-on-TCP (port 102) with a time bound on every request."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.target = parse_s7_url(url)
        self._worker = BlockingWorker("lineside-s7")
        self._client: Any = None

    def _connect(self) -> None:
        try:
            import snap7
        except ImportError as exc:
            raise missing_extra("python-snap7", "s7") from exc
        target = self.target

        def connect() -> None:  # on the worker: a late connect is still closed by the _disconnect queued after it
            client = snap7.Client()
            client.connect(target.host, target.rack, target.slot, target.port)
            self._client = client

        self._worker.call(connect, target.timeout)

    def _write(self, on: bool) -> None:
        client = self._client
        if client is None:
            raise ConnectionError("S7 link is not open")
        from snap7.type import Area, WordLen

        target = self.target
        area = getattr(Area, AREAS[target.area])
        start = target.byte * 8 + target.bit  # BIT requests address bits
        try:
            self._worker.call(
                lambda: client.write_area(area, target.db, start, bytearray([int(on)]), WordLen.Bit), target.timeout
            )
        except Exception as exc:
            if type(exc).__name__ == "S7ProtocolError":  # the PLC answered, but refused
                raise ConnectionError(
                    f"{target} refused: {exc} (is PUT/GET enabled, does the address exist, "
                    "is the DB's optimized block access off?)"
                ) from exc
            raise

    def _disconnect(self) -> None:
        def disconnect() -> None:
            client, self._client = self._client, None
            if client is not None:
                client.disconnect()

        self._worker.submit(disconnect)  # after a call that may still be stuck; never blocks this thread

    def close(self) -> None:
        """Switch off, close the link, stop the worker."""
        super().close()
        self._worker.close()
