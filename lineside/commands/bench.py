"""`lineside bench`: benchmark latency and accuracy per stage and precision."""

from __future__ import annotations

import argparse

from lineside.commands._pending import not_implemented

HELP = "Benchmark latency and accuracy per stage and precision."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside bench`."""
    parser.add_argument("target", help="bundle folder or run folder")


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside bench`."""
    raise not_implemented("bench", 6)
