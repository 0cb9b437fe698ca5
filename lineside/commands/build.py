"""`lineside build`: build a TensorRT / TensorRT-RTX engine from a bundle."""

from __future__ import annotations

import argparse

from lineside.commands._pending import not_implemented

HELP = "Build a TensorRT / TensorRT-RTX engine from a bundle."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside build`."""
    parser.add_argument("bundle", help="bundle folder")


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside build`."""
    raise not_implemented("build", 7)
