"""`lineside train`: train a CRR or RLR model on good images (multi-class)."""

from __future__ import annotations

import argparse

from lineside.commands._pending import not_implemented

HELP = "Train a CRR or RLR model on good images (multi-class)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside train`."""
    parser.add_argument("--data", required=True, help="data set folder (MVTec layout)")
    parser.add_argument("--model", choices=["crr", "rlr"], required=True)
    parser.add_argument("--out", required=True, help="run folder")


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside train`."""
    raise not_implemented("train", 4)
