"""Reject pulses follow the belt: a PLC counter register (pymodbus server on 127.0.0.1) counts encoder ticks at
a belt speed that halves mid-run and wraps at 16 bits; each pulse must fire at capture count + delay counts."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
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


class Belt:
    """The PLC side: writes the encoder count into a holding register every 5 ms; remembers (monotonic, count)."""

    def __init__(self, port: int, start: float) -> None:
        from pymodbus.client import ModbusTcpClient

        self.client = ModbusTcpClient("127.0.0.1", port=port, timeout=1)
        self.client.connect()
        self.count, self.speed = start, 1000.0  # counts per second
        self.history: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(0.005):
            now = time.monotonic()
            self.count += self.speed * (now - last)
            last = now
            self.client.write_register(REGISTER, int(self.count) % 65536, device_id=1)
            self.history.append((time.monotonic(), self.count))

    def start(self) -> Belt:
        self._thread.start()
        while not self.history:  # the register holds a belt count before the runtime first reads it
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.client.close()

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
    belt = Belt(server.port, start=65536 - 700).start()  # wraps about 0.7 s into the run
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
    slow_down = threading.Timer(1.2, lambda: setattr(belt, "speed", 400.0))
    slow_down.start()
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
        # resolution: the PLC updates the register every 5 ms (5 counts) and the runtime polls every 2 ms
        assert -15 <= belt.at(pulse) - due <= 40, (record["part_id"], belt.at(pulse) - due)
    # the logged eject counts are unwrapped across the 16-bit wrap: their spacing is the belt's
    logged = np.diff([r["eject_count"] for r in rejected])
    truth = np.diff([belt.at(r["capture_time"] - wall_minus_mono) for r in rejected])
    assert np.all(np.abs(logged - truth) <= 15), (logged, truth)
