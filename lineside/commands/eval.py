"""`lineside eval`: evaluate a checkpoint: I-AUROC, P-AUROC, AUPRO, AP, F1-max per category."""

from __future__ import annotations

import argparse

from lineside.commands._pending import not_implemented

HELP = "Evaluate a checkpoint: I-AUROC, P-AUROC, AUPRO, AP, F1-max per category."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside eval`."""
    parser.add_argument("checkpoint", help="RUN/model.pt")
    parser.add_argument("--data", required=True)


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside eval`."""
    raise not_implemented("eval", 4)
