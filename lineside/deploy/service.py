"""A systemd unit that runs `lineside run` on the deployed `current` bundle."""

from __future__ import annotations

import re
from dataclasses import dataclass

UNIT_NAME = "lineside.service"
_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def systemd_quote(arg: str) -> str:
    """Quote one ExecStart argument by systemd's rules (double quotes, C escapes, %% and $$)."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if _SAFE.match(arg):
        return escaped
    escaped = escaped.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


@dataclass(frozen=True)
class ServiceSpec:
    """What the unit runs: the target's lineside command and `lineside run` arguments."""

    lineside: tuple[str, ...]  # absolute command on the target, e.g. ("/opt/lineside/bin/lineside",)
    root: str  # absolute deploy root on the target; the unit runs ROOT/current
    user: str
    source: str
    actuator: str
    extra_args: tuple[str, ...] = ()


def render_unit(spec: ServiceSpec) -> str:
    """The unit file text; restarts forever, logs to ROOT/logs/results.jsonl."""
    argv = [
        *spec.lineside,
        "run",
        f"{spec.root}/current",
        "--source",
        spec.source,
        "--actuator",
        spec.actuator,
        "--log",
        f"{spec.root}/logs/results.jsonl",
        *spec.extra_args,
    ]
    exec_start = " ".join(systemd_quote(a) for a in argv)
    return (
        "[Unit]\n"
        "Description=lineside line-side visual inspection\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"User={spec.user}\n"
        f"WorkingDirectory={systemd_quote(spec.root)}\n"
        f"ExecStartPre=/bin/mkdir -p {systemd_quote(spec.root + '/logs')}\n"
        f"ExecStart={exec_start}\n"
        "Restart=always\n"
        "RestartSec=2\n"
        "KillSignal=SIGINT\n"
        "TimeoutStopSec=20\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
