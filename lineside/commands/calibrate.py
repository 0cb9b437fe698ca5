"""`lineside calibrate`: set per-class reject thresholds from good parts."""

from __future__ import annotations

import argparse

from lineside.commands._pending import not_implemented

HELP = "Set per-class reject thresholds from good parts."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside calibrate`."""
    parser.add_argument("bundle", help="bundle folder")
    parser.add_argument("--good", required=True, help="folder of good images")


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside calibrate`."""
    raise not_implemented("calibrate", 9)
