"""`lineside deploy`: deploy a bundle to a Jetson over SSH and build the engine there."""

from __future__ import annotations

import argparse

from lineside.commands._pending import not_implemented

HELP = "Deploy a bundle to a Jetson over SSH and build the engine there."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside deploy`."""
    parser.add_argument("bundle", help="bundle folder")
    parser.add_argument("--host", required=True, help="user@host")


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside deploy`."""
    raise not_implemented("deploy", 9)
