"""`lineside synth`: generate a synthetic MVTec-layout defect data set with exact masks."""

from __future__ import annotations

import argparse

from lineside.commands._pending import not_implemented

HELP = "Generate a synthetic MVTec-layout defect data set with exact masks."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside synth`."""
    parser.add_argument("out", help="output folder")


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside synth`."""
    raise not_implemented("synth", 3)
