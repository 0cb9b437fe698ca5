"""`lineside run`: run line-side inspection: camera frames in, verdicts and reject signals out."""

from __future__ import annotations

import argparse

from lineside.commands._pending import not_implemented

HELP = "Run line-side inspection: camera frames in, verdicts and reject signals out."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside run`."""
    parser.add_argument("bundle", help="bundle folder")
    parser.add_argument("--source", required=True)
    parser.add_argument("--actuator", default="log://")


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside run`."""
    raise not_implemented("run", 8)
