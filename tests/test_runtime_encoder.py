"""Reject pulses follow the belt: a PLC counter register (pymodbus server on 127.0.0.1) counts encoder ticks at
a belt speed that halves mid-run and wraps at 16 bits; each pulse must fire at capture count + delay counts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pymodbus.client import ModbusTcpClient
from runtime_support import ModbusServer, make_bundle, write_folder

from lineside.runtime.actuators.log import LogActuator
from lineside.runtime.backends.onnxruntime import OrtBackend
from lineside.runtime.ejector import EjectorConfig
from lineside.runtime.encoder import EncoderTrack, ModbusCounter
from lineside.runtime.pipeline import Pipeline
from lineside.runtime.results import ResultsLog
from lineside.runtime.sources.base import source_factory
from lineside.runtime.sources.capture import Capture, CaptureConfig

DELAY_COUNTS = 250
REGISTER = 4


BELT = r"""
import sys, time
from pymodbus.client import ModbusTcpClient
port, register, count, slow_at = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
client = ModbusTcpClient("127.0.0.1", port=port, timeout=1)
client.connect()
start = last = time.monotonic()
while True:
    now = time.monotonic()
    count += (1000.0 if now - start < slow_at else 400.0) * (now - last)  # counts per second
    last = now
    client.write_register(register, int(count) % 65536, device_id=1)
    print(f"{now:.6f} {count:.3f}", flush=True)
    time.sleep(0.005)
"""


class Belt:
    """The PLC side, in its own process: writes the encoder count into a holding register every 5 ms at
    1000 counts/s, 400 counts/s after `slow_at` seconds; `history` is the true (monotonic, count)."""

    def __init__(self, port: int, start: float, slow_at: float) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", BELT, str(port), str(REGISTER), str(start), str(slow_at)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert self._proc.stdout is not None
        self._proc.stdout.readline()  # the register holds a belt count before the runtime first reads it
        self.history: list[tuple[float, float]] = []

    def stop(self) -> None:
        self._proc.terminate()
        out, _ = self._proc.communicate(timeout=5)
        self.history = [(float(a), float(b)) for a, b in (row.split() for row in out.splitlines())]

    def at(self, mono: float) -> float:
        times, counts = zip(*self.history, strict=True)
        return float(np.interp(mono, times, counts))


@pytest.mark.slow
@pytest.mark.network
def test_pulses_fire_at_capture_count_plus_delay_counts(tmp_path: Path):
    defects = [i % 3 == 1 for i in range(24)]
    folder = write_folder(tmp_path / "frames", defects)
    bundle = make_bundle(tmp_path / "bundle")
    server = ModbusServer().start()
    belt = Belt(server.port, start=65536 - 700, slow_at=1.2)  # wraps about 0.7 s into the run
    counter = ModbusCounter(f"modbus+tcp://127.0.0.1:{server.port}?register={REGISTER}&unit=1")
    counter.connect()
    actuator = LogActuator("log://")
    actuator.connect()
    capture = Capture(source_factory(str(folder), rate=10), CaptureConfig(rate=10))
    capture.open()
    log = ResultsLog(tmp_path / "r.jsonl")
    config = EjectorConfig(pulse_s=0.02, delay_counts=DELAY_COUNTS)
    pipeline = Pipeline(
        capture, OrtBackend(bundle), log, 0.7, config, actuator, paced=True, track=EncoderTrack(counter)
    )
    wall_minus_mono = time.time() - time.monotonic()
    try:
        pipeline.run()
    finally:
        belt.stop()
        counter.close()
        server.stop()
        log.close()
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    rejected = [r for r in records if r["verdict"] == "REJECT"]
    assert [r["part_id"] for r in rejected] == [i for i, d in enumerate(defects) if d]
    pulses = [t for t, on in actuator.transitions if on]
    assert len(pulses) == len(rejected)
    for record, pulse in zip(rejected, pulses, strict=True):
        due = belt.at(record["capture_time"] - wall_minus_mono) + DELAY_COUNTS  # count when the part is at the ejector
        # resolution: the stand-in PLC writes the register every 5 ms, but on a loaded 2-core box its process
        # can stall for tens of ms (a stale count at capture makes the pulse early by the staleness); a time-based
        # schedule would be off by 150 counts after the belt slows down, so +-40 counts still tells them apart
        assert -40 <= belt.at(pulse) - due <= 50, (record["part_id"], belt.at(pulse) - due)
    # the logged eject counts are unwrapped across the 16-bit wrap: their spacing is the belt's
    logged = np.diff([r["eject_count"] for r in rejected])
    truth = np.diff([belt.at(r["capture_time"] - wall_minus_mono) for r in rejected])
    assert np.all(np.abs(logged - truth) <= 40), (logged, truth)  # two lookups, each within the register lag


@pytest.mark.network
def test_lost_encoder_link_keeps_the_position_and_recovers():
    server = ModbusServer().start()
    writer = ModbusTcpClient("127.0.0.1", port=server.port)
    writer.connect()
    writer.write_register(REGISTER, 65530, device_id=1)
    counter = ModbusCounter(f"modbus+tcp://127.0.0.1:{server.port}?register={REGISTER}")
    counter.connect()
    track = EncoderTrack(counter)
    assert track.sample() == 0.0
    writer.write_register(REGISTER, 10, device_id=1)  # wrapped: +16 counts
    assert track.sample() == 16.0 and track.ok
    writer.close()
    server.stop()
    assert track.sample() is None and not track.ok  # PLC gone: no exception, position unknown, line unhealthy
    revived = ModbusServer(server.port).start()
    try:
        writer = ModbusTcpClient("127.0.0.1", port=server.port)
        writer.connect()
        writer.write_register(REGISTER, 40, device_id=1)
        writer.close()
        deadline = time.monotonic() + 5
        while not track.ok and time.monotonic() < deadline:
            track.sample()
            time.sleep(0.05)
        assert track.ok and track.sample() == 46.0
    finally:
        counter.close()
        revived.stop()
