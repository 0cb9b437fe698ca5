"""docs/runtime.md cannot drift: its `lineside run` commands parse, every option is in its table, and every
actuator URL in it is accepted by `open_actuator`."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from lineside.cli import build_parser
from lineside.runtime.actuators.base import open_actuator

DOC = (Path(__file__).resolve().parents[1] / "docs" / "runtime.md").read_text(encoding="utf-8")


def _run_commands() -> list[str]:
    return [line.strip() for line in DOC.splitlines() if line.strip().startswith("lineside run ")]


@pytest.mark.parametrize("command", _run_commands())
def test_documented_run_command_parses(command: str):
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert args.command == "run"


def test_every_run_option_is_documented():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["run"]  # type: ignore[union-attr]
    options = {s for action in sub._actions for s in action.option_strings if s.startswith("--") and s != "--help"}
    documented = set(re.findall(r"^\| `(--[a-z-]+)`", DOC, flags=re.M))
    assert options == documented


@pytest.mark.parametrize("url", re.findall(r"^\| `([a-z+]+://[^`]*)`", DOC, flags=re.M))
def test_documented_actuator_urls_are_accepted(url: str):
    assert open_actuator(url).url == url
