"""The deploy and calibrate docs stay true: their commands parse with the real CLI, every option is documented."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from lineside.cli import build_parser

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = {"deploy": "jetson.md", "calibrate": "calibrate.md"}


def _commands(name: str) -> list[str]:
    text = (DOCS / PAGES[name]).read_text(encoding="utf-8").replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip().startswith(f"lineside {name} ")]


def _options(name: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[name]  # type: ignore[union-attr]
    return {s for action in sub._actions for s in action.option_strings if s.startswith("--") and s != "--help"}


@pytest.mark.parametrize("command", _commands("deploy") + _commands("calibrate"))
def test_documented_command_parses(command):
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert args.command in PAGES


@pytest.mark.parametrize("name", sorted(PAGES))
def test_every_option_is_documented(name):
    text = (DOCS / PAGES[name]).read_text(encoding="utf-8")
    documented = set(re.findall(r"`(--[a-z-]+)", text))
    assert _options(name) <= documented
    assert len(_commands(name)) >= 2
