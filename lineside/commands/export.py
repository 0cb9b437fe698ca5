"""`lineside export`: export a checkpoint to a deploy bundle (fused ONNX at fp32/fp16/int8)."""

from __future__ import annotations

import argparse

from lineside.commands._pending import not_implemented

HELP = "Export a checkpoint to a deploy bundle (fused ONNX at fp32/fp16/int8)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside export`."""
    parser.add_argument("checkpoint", help="RUN/model.pt")
    parser.add_argument("--out", required=True, help="bundle folder")


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside export`."""
    raise not_implemented("export", 6)
