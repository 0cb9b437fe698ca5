"""The `lineside` command: one parser, one module per subcommand, heavy imports deferred.

Every subcommand lives in `lineside.commands.<name>` and exposes `HELP`, `add_arguments(parser)`
and `run(args) -> int`. Only the chosen subcommand's module is imported, and it imports torch,
onnxruntime or TensorRT inside `run`, so `lineside --help` stays fast on a Jetson.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from lineside import __version__
from lineside.errors import LinesideError
from lineside.redact import redact

COMMANDS: tuple[str, ...] = (
    "synth", "train", "eval", "export", "build", "calibrate", "run", "review", "bench", "deploy", "cameras",
)  # fmt: skip

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2

NO_OPENCV = (
    "OpenCV (cv2) is not importable: pip install 'lineside[opencv]', or on a Jetson use JetPack's GStreamer "
    "OpenCV in a --system-site-packages venv (docs/jetson.md)"
)


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(EXIT_BAD_INPUT)


def _one_line(exc: BaseException) -> str:
    """The exception's message with line breaks folded, so stderr gets exactly one line."""
    return " ".join(str(exc).split())


def build_parser() -> argparse.ArgumentParser:
    """The full parser; subcommand modules add their own arguments."""
    parser = _Parser(prog="lineside", description="Edge deployment toolkit for visual anomaly inspection.")
    parser.add_argument("--version", action="version", version=f"lineside {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"lineside.commands.{name}")
        sub_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args._module.run(args) or EXIT_OK)
    except LinesideError as exc:
        sys.stderr.write(f"lineside {args.command}: error: {redact(_one_line(exc))}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        sys.stderr.write(f"lineside {args.command}: interrupted\n")
        return 130
    except Exception as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == "cv2":
            sys.stderr.write(f"lineside {args.command}: error: {NO_OPENCV}\n")
            return EXIT_BAD_INPUT
        if os.environ.get("LINESIDE_DEBUG"):
            raise
        sys.stderr.write(
            f"lineside {args.command}: internal error: {type(exc).__name__}: {redact(_one_line(exc))} "
            "(set LINESIDE_DEBUG=1 for the traceback)\n"
        )
        return EXIT_INTERNAL
