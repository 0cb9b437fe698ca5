"""Small mends from the issue-16 review: the Modbus link's shape, no dead command module, no unused extra."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

from lineside.cli import COMMANDS
from lineside.errors import LinesideError
from lineside.runtime.actuators.modbus import ModbusActuator, RtuLink, TcpLink

ROOT = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = ("lineside", "train", "export", "calibration", "runtime", "benchmarks")


def test_modbus_rtu_link_holds_the_baud_rate_as_baud_not_port() -> None:
    rtu = ModbusActuator("modbus+rtu:///dev/ttyUSB1?baud=19200&parity=e&coil=2")
    assert rtu.link == RtuLink(device="/dev/ttyUSB1", baud=19200, parity="E")
    assert not hasattr(rtu, "port") and not hasattr(rtu.link, "port")
    tcp = ModbusActuator("modbus+tcp://10.0.0.5?register=7&on=255")
    assert tcp.link == TcpLink(host="10.0.0.5", port=502) and not hasattr(tcp.link, "baud")
    assert (tcp.address, tcp.on_value, tcp.off_value, tcp.timeout) == (7, 255, 0, 0.5)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("modbus+tcp://plc?coil=0&timeout=nan", "timeout must be a finite number"),
        ("modbus+tcp://plc?coil=0&timeout=soon", "timeout='soon' is not a number"),
        ("modbus+tcp://plc?coil=0&timeout=0", "timeout must be a number above 0"),
        ("modbus+tcp://plc:0?coil=0", "port must be 1..65535"),
        ("modbus+tcp://plc:70000?coil=0", "port must be 1..65535"),
        ("modbus+tcp://plc?coil=65536", "coil must be an integer at least 0 and at most 65535"),
        ("modbus+tcp://plc?register=1&on=-1", "on must be an integer at least 0"),
        ("modbus+tcp://plc?coil=1&unit=300", "unit must be an integer at least 0 and at most 247"),
        ("modbus+rtu:///dev/ttyUSB0?coil=1&baud=0", "baud must be an integer at least 1"),
        ("modbus+rtu:///dev/ttyUSB0?coil=1&parity=X", "parity must be one of N, E, O"),
    ],
)
def test_modbus_url_values_are_checked_at_start(url: str, message: str) -> None:
    with pytest.raises(LinesideError, match=re.escape(message)) as info:
        ModbusActuator(url)
    assert "\n" not in str(info.value)


def test_every_command_module_is_a_subcommand() -> None:
    modules = {p.stem for p in (ROOT / "lineside" / "commands").glob("*.py") if p.stem != "__init__"}
    assert modules <= set(COMMANDS), f"dead command modules: {sorted(modules - set(COMMANDS))}"


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_no_extra_installs_paramiko_which_nothing_imports() -> None:
    requirements = [r for reqs in _extras().values() for r in reqs]
    assert not [r for r in requirements if r.lower().startswith("paramiko")]
    for folder in SOURCE_FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            assert not re.search(r"^\s*(import|from)\s+paramiko", path.read_text(), re.M), path


def test_install_script_and_readme_name_only_extras_that_exist() -> None:
    extras = set(_extras())
    install = re.search(r'-e "\.\[([^\]]+)\]"', (ROOT / "scripts" / "install.sh").read_text())
    assert install is not None and set(install.group(1).split(",")) <= extras
    table = re.findall(r"^\| (`[^|]+`) \|", (ROOT / "README.md").read_text(), re.M)
    named = {name for cell in table for name in re.findall(r"`([^`]+)`", cell)}
    assert named and named <= extras | {"(core)", "core"}, sorted(named - extras)
