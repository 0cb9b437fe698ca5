"""Output health: a reject relay whose serial writes fail is reported by the actuator itself (issue 16, finding 1)."""

from __future__ import annotations

import time

import pytest
from serial_faults import protocol_dead

from lineside.runtime.actuators.base import ActuatorError, open_actuator


@pytest.fixture
def dead_port():
    """The `dead://` pyserial port, plugged in; unplugged again by the test when it wants."""
    protocol_dead.UNPLUGGED.clear()
    protocol_dead.WRITTEN.clear()
    yield protocol_dead
    protocol_dead.UNPLUGGED.clear()


def test_failed_serial_writes_make_the_output_unhealthy_until_a_write_succeeds(dead_port):
    actuator = open_actuator("serial://dead://?on=ON&off=OFF")
    actuator.connect()
    actuator.set(True)
    assert actuator.ok and actuator.writes == 1 and dead_port.WRITTEN == [b"OFF\n", b"ON\n"]
    dead_port.UNPLUGGED.set()  # the USB adapter is pulled out
    with pytest.raises(ActuatorError, match="Input/output error"):
        actuator.set(False)
    assert not actuator.ok and actuator.errors == 1 and actuator.state is None
    with pytest.raises(ActuatorError, match="link down"):  # refused during the back-off: not a new error
        actuator.set(False)
    assert actuator.errors == 1
    health = actuator.health()
    assert health == {
        "url": "serial://dead://?on=ON&off=OFF", "ok": False, "errors": 1, "writes": 1,
        "last_error": "SerialException: write failed: [Errno 5] Input/output error",
    }  # fmt: skip
    dead_port.UNPLUGGED.clear()
    time.sleep(0.55)  # first back-off: 0.5 s
    actuator.set(False)
    assert actuator.ok and actuator.state is False and actuator.errors == 1 and actuator.writes == 2
    actuator.close()
