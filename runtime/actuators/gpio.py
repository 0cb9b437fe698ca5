"""GPIO reject output: libgpiod v2 (`gpio://gpiochip0/17`) or Jetson.GPIO (`gpio://jetson/BOARD_PIN`).

Both libraries are optional and only imported when a gpio:// actuator is opened. `?active_low=1`
inverts the output for relay boards that switch on a low level.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from lineside.errors import LinesideError
from lineside.runtime.actuators.base import Actuator, int_param, query_params


class GpioActuator(Actuator):
    """One GPIO line as a digital output."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        parts = urlsplit(url)
        self.chip = parts.netloc
        line = parts.path.strip("/")
        if not self.chip or not line.isdigit():
            raise LinesideError(f"actuator {url}: use gpio://gpiochip0/LINE or gpio://jetson/BOARD_PIN")
        self.line = int(line)
        self.active_low = bool(int_param(query_params(url), "active_low", 0, url))
        self._handle: Any = None

    def _level(self, on: bool) -> bool:
        return on != self.active_low

    def _connect(self) -> None:
        if self.chip == "jetson":
            try:
                import Jetson.GPIO as GPIO
            except ImportError as exc:
                raise LinesideError("Jetson.GPIO is not installed: pip install Jetson.GPIO (on the Jetson)") from exc
            GPIO.setmode(GPIO.BOARD)
            GPIO.setup(self.line, GPIO.OUT, initial=GPIO.HIGH if self._level(False) else GPIO.LOW)
            self._handle = GPIO
            return
        try:
            import gpiod
            from gpiod.line import Direction, Value
        except ImportError as exc:
            raise LinesideError("gpiod is not installed: pip install gpiod (libgpiod v2 bindings)") from exc
        settings = gpiod.LineSettings(
            direction=Direction.OUTPUT, output_value=Value.ACTIVE if self._level(False) else Value.INACTIVE
        )
        self._handle = gpiod.request_lines(f"/dev/{self.chip}", consumer="lineside", config={self.line: settings})

    def _write(self, on: bool) -> None:
        if self._handle is None:
            raise ConnectionError("GPIO line is not open")
        level = self._level(on)
        if self.chip == "jetson":
            self._handle.output(self.line, self._handle.HIGH if level else self._handle.LOW)
        else:
            from gpiod.line import Value

            self._handle.set_value(self.line, Value.ACTIVE if level else Value.INACTIVE)

    def _disconnect(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        if self.chip == "jetson":
            handle.cleanup(self.line)
        else:
            handle.release()
