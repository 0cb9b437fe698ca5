"""docs/models.md stays true: every train/eval flag it names exists, and its preset table matches the code."""

from __future__ import annotations

import re
from pathlib import Path

from lineside.cli import build_parser

DOC = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text(encoding="utf-8")


def _flags(command: str) -> set[str]:
    sub = build_parser()._subparsers._group_actions[0].choices[command]  # noqa: SLF001
    return {opt for action in sub._actions for opt in action.option_strings}  # noqa: SLF001


def test_documented_flags_exist():
    for command in ("train", "eval"):
        usage = re.search(rf"`lineside {command} (.*?)`", DOC, flags=re.S)
        assert usage, command
        documented = set(re.findall(r"--[a-z][a-z-]*", usage.group(1)))
        assert documented and documented <= _flags(command), documented - _flags(command)


def test_preset_table_matches_code():
    from lineside.train.models.crr import PRESETS

    for name, config in PRESETS.items():
        row = re.search(rf"^\| `{name}`.*$", DOC, flags=re.M)
        assert row, name
        cells = [c.strip() for c in row.group(0).split("|")[1:-1]]
        assert cells[2] == str(config.input_size[0])
        assert f"{config.depth} blocks, dim {config.embed_dim}" == cells[4]
        assert cells[5].startswith(f"{config.recon_epochs} + {config.seg_epochs} epochs, batch {config.batch_size}")
