"""Every `lineside build` command in the engine docs parses with the real CLI, and every option is documented."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from lineside.cli import build_parser

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _build_commands() -> list[str]:
    commands = []
    for name in ("engines.md", "jetson.md"):
        for line in (DOCS / name).read_text(encoding="utf-8").splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("lineside build"):
                commands.append(line)
    return commands


@pytest.mark.parametrize("command", _build_commands())
def test_documented_build_command_parses(command: str) -> None:
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert args.command == "build"


def test_every_build_option_is_in_the_table() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["build"]  # type: ignore[union-attr]
    options = {s for action in sub._actions for s in action.option_strings if s.startswith("--") and s != "--help"}
    table = (DOCS / "engines.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(--[a-z-]+)", table, flags=re.M))
    assert options - {"--inspect"} == documented
    assert len(_build_commands()) >= 8
