"""`lineside run` as the line runs it, with one stand-in: `--source soak://HOST:PORT` is the soak camera.

    python -m soak.line BUNDLE --source soak://127.0.0.1:PORT?fps=40 [every other `lineside run` option]

Everything else (option parsing and checks, backend, ejector, outputs, results log, signals, exit
status) is the real CLI: this module only adds the camera stand-in to the source lookup, because no
camera with its own frame counter can be reached from a `--source` string on this machine.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from lineside.cli import main as cli_main
from lineside.runtime import runner
from lineside.runtime.sources.base import FrameSource, source_factory
from soak.source import SCHEME, SoakCameraSource


def factory_with_soak_camera(spec: str, *, rate: float | None = None) -> Callable[[], FrameSource]:
    """`source_factory`, plus soak:// specs for the soak camera."""
    if spec.startswith(SCHEME):
        return lambda: SoakCameraSource(spec)
    return source_factory(spec, rate=rate)


def main(argv: list[str] | None = None) -> int:
    """Run `lineside run ARGV` with the soak camera available; returns its exit status."""
    runner.source_factory = factory_with_soak_camera  # type: ignore[assignment]
    return cli_main(["run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
