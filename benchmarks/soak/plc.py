"""The PLC stand-in, a process of its own (a PLC is its own device; in the orchestrator it would share a GIL):
a pymodbus TCP server on 127.0.0.1 with a heartbeat and an alarm coil and the belt encoder register.

    python -m soak.plc PORT COILS_LOG

Coil writes are appended to COILS_LOG as `WALL ADDRESS 0|1`. The encoder register (16 bits) holds the belt
count, COUNTS_PER_S since start, computed when read. First line: `ok ZERO_WALL` (time.time() of count 0).
Commands on stdin, each answered `ok`: `stop` and
`start` (the server goes away and comes back on the same port), `encoder_fail 1|0` (counter reads get a
Modbus exception while set), `quit`.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from typing import Any

from soak.device import act_as_device

HEARTBEAT_COIL = 0
ALARM_COIL = 1
ENCODER_REGISTER = 4
COUNTS_PER_S = 1000.0


class PlcServer:
    """The server and its fault switches."""

    def __init__(self, port: int, coils_log: str) -> None:
        self.port = port
        self.encoder_fail = False
        self._out = open(coils_log, "a", encoding="ascii")  # noqa: SIM115 - open for the process's life
        self._start = time.monotonic()
        self.zero_wall = time.time() - (time.monotonic() - self._start)
        self._loop = asyncio.new_event_loop()
        self._server: Any = None
        threading.Thread(target=self._loop.run_forever, daemon=True).start()

    async def _action(self, fc: int, start: int, address: int, count: int, registers: list, values: list | None):  # noqa: ANN201
        from pymodbus.constants import ExcCodes

        if values is not None and fc == 5 and address in (HEARTBEAT_COIL, ALARM_COIL):
            self._out.write(f"{time.time():.6f} {address} {int(bool(values[0]))}\n")
            self._out.flush()
        if fc == 3 and address == ENCODER_REGISTER:
            if self.encoder_fail:
                return ExcCodes.DEVICE_BUSY
            registers[address - start] = int((time.monotonic() - self._start) * COUNTS_PER_S) % 65536
        return None

    async def _serve(self) -> None:
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        bits, regs = DataType.BITS, DataType.REGISTERS
        blocks = ([SimData(0, count=16, values=False, datatype=bits)], [SimData(0, count=16, values=False, datatype=bits)],
                  [SimData(0, count=16, values=0, datatype=regs)], [SimData(0, count=16, values=0, datatype=regs)])  # fmt: skip
        device = SimDevice(id=1, simdata=blocks, action=self._action)
        self._server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
        await self._server.serve_forever()

    def start(self) -> None:
        """Serve on the port; returns once it accepts connections."""
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.01)
        raise RuntimeError("the PLC server did not start")

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(10)
            self._server = None


def main() -> None:
    act_as_device()
    server = PlcServer(int(sys.argv[1]), sys.argv[2])
    server.start()
    print(f"ok {server.zero_wall:.6f}", flush=True)  # when the belt count was 0, on the wall clock
    for line in sys.stdin:
        command, *arg = line.split()
        if command == "quit":
            break
        if command == "stop":
            server.stop()
        elif command == "start":
            server.start()
        elif command == "encoder_fail":
            server.encoder_fail = arg == ["1"]
        print("ok", flush=True)
    server.stop()


if __name__ == "__main__":
    main()
