"""The README's commands must stay true: CI runs the same test command, the CLI block lists real subcommands."""

from __future__ import annotations

import re
from pathlib import Path

from lineside.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command() -> None:
    test_command = next(block.strip() for block in _bash_blocks(README) if "pytest" in block)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install, pytest_command = test_command.split(" && ", 1)
    assert install in ci
    assert pytest_command in ci


def test_readme_demo_command_scripts_exist() -> None:
    demo = next(block.strip() for block in _bash_blocks(README) if "demo" in block)
    for script in re.findall(r"\./(scripts/\S+\.sh)", demo):
        assert (ROOT / script).is_file(), script


def test_readme_cli_block_matches_the_parser() -> None:
    listed = re.findall(r"^lineside (\w+)", README, flags=re.M)
    assert sorted(set(listed)) == sorted(COMMANDS)
    help_text = build_parser().format_help()
    for name in COMMANDS:
        assert name in help_text
