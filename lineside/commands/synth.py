"""`lineside synth`: generate a synthetic MVTec-layout defect data set with exact masks."""

from __future__ import annotations

import argparse

from lineside.validate import int_arg

HELP = "Generate a synthetic MVTec-layout defect data set with exact masks."


def _categories(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside synth`."""
    parser.add_argument("out", help="output folder (must not exist or be empty, unless --force)")
    parser.add_argument(
        "--categories",
        type=_categories,
        default=None,
        metavar="N|NAMES",
        help="the first N categories, or comma-separated names (mesh, brushed_metal, wood, washer, screw, "
        "capsule); default: all",
    )
    parser.add_argument(
        "--seed",
        type=int_arg(at_least=0),
        default=0,
        help="random seed; the same seed gives identical files (default 0)",
    )
    parser.add_argument(
        "--train",
        type=int_arg(at_least=1),
        default=60,
        metavar="N",
        help="good training images per category (default 60)",
    )
    parser.add_argument(
        "--test-good",
        type=int_arg(at_least=0),
        default=20,
        metavar="N",
        help="good test images per category (default 20)",
    )
    parser.add_argument(
        "--test-defect",
        type=int_arg(at_least=0),
        default=20,
        metavar="N",
        help="defect test images per category, cycling through its defect types (default 20)",
    )
    parser.add_argument(
        "--size",
        type=int_arg(at_least=64, at_most=2048),
        default=256,
        metavar="PX",
        help="image side in pixels (default 256)",
    )
    parser.add_argument("--force", action="store_true", help="replace a non-empty OUT")
    parser.add_argument(
        "--workers",
        type=int_arg(at_least=1, at_most=64),
        default=None,
        metavar="N",
        help="worker processes (default: CPU count, at most 4)",
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside synth`."""
    from lineside.synth import generate_dataset

    summary = generate_dataset(
        args.out,
        categories=args.categories,
        seed=args.seed,
        n_train=args.train,
        n_test_good=args.test_good,
        n_test_defect=args.test_defect,
        size=args.size,
        force=args.force,
        workers=args.workers,
    )
    print(summary.line())
    return 0
