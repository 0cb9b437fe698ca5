"""What a bench run was asked for, validated once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lineside.bundle import PRECISIONS
from lineside.errors import LinesideError

BACKENDS: tuple[str, ...] = ("torch", "ort", "tensorrt")
DEFAULT_CAMERA = (1280, 960)  # (width, height) of the JPEG frame that decode/resize is timed on
DEFAULT_ACTUATOR = "serial://loop://"  # a real pyserial write + flush, looped back


@dataclass(frozen=True)
class BenchOptions:
    """Settings of one `lineside bench` run."""

    precisions: tuple[str, ...] = PRECISIONS
    backends: tuple[str, ...] | None = None  # None: every backend that applies; skipped ones are recorded
    report: Path | None = None
    data: Path | None = None
    runs: int = 100
    warmup: int = 5
    threads: int = 2
    eval_limit: int | None = None
    batch_sizes: tuple[int, ...] = (1, 4, 8)
    batch_runs: int = 10
    camera: tuple[int, int] = DEFAULT_CAMERA
    actuator: str = DEFAULT_ACTUATOR
    memory: bool = True

    def as_argv(self, targets: list[Path]) -> list[str]:
        """The `lineside bench` command line that repeats this run."""
        argv = ["lineside", "bench", *map(str, targets), "--precisions", ",".join(self.precisions)]
        if self.backends is not None:
            argv += ["--backends", ",".join(self.backends)]
        for flag, value in (("--report", self.report), ("--data", self.data), ("--eval-limit", self.eval_limit)):
            argv += [flag, str(value)] if value is not None else []
        argv += ["--runs", str(self.runs), "--warmup", str(self.warmup), "--threads", str(self.threads)]
        argv += ["--batch-sizes", ",".join(map(str, self.batch_sizes)), "--batch-runs", str(self.batch_runs)]
        argv += ["--camera", "x".join(map(str, self.camera)), "--actuator", self.actuator]
        return argv + ([] if self.memory else ["--no-memory"])

    def validate(self) -> None:
        """LinesideError naming the first setting that cannot work."""
        for flag, value in (
            ("--runs", self.runs),
            ("--threads", self.threads),
            ("--eval-limit", self.eval_limit),
            ("--batch-runs", self.batch_runs),
        ):
            if value is not None and value < 1:
                raise LinesideError(f"{flag} must be at least 1, got {value}")
        if self.warmup < 0:
            raise LinesideError(f"--warmup must be >= 0, got {self.warmup}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise LinesideError(f"--batch-sizes takes positive integers, got {self.batch_sizes}")
        if not self.actuator.strip():
            raise LinesideError("--actuator needs a URL, e.g. serial://loop:// or log://")
        if min(self.camera) < 1:
            raise LinesideError(f"--camera takes WIDTHxHEIGHT in pixels, got {self.camera}")


def parse_choices(text: str, allowed: tuple[str, ...], flag: str) -> tuple[str, ...]:
    """'fp32,int8' -> ('fp32', 'int8'); LinesideError on an empty list or an unknown name."""
    chosen = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in chosen if p not in allowed]
    if unknown or not chosen:
        raise LinesideError(f"{flag} takes a comma-separated subset of {','.join(allowed)}, got {text!r}")
    return chosen


def parse_backends(text: str | None) -> tuple[str, ...] | None:
    """None (all that apply) or the backends asked for."""
    return None if text is None else parse_choices(text, BACKENDS, "--backends")


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """'1,4,8' -> (1, 4, 8), sorted and unique; batch 1 is always measured."""
    try:
        sizes = {int(p) for p in text.split(",") if p.strip()}
    except ValueError as exc:
        raise LinesideError(f"--batch-sizes takes comma-separated integers, got {text!r}") from exc
    if not sizes or min(sizes) < 1:
        raise LinesideError(f"--batch-sizes takes positive integers, got {text!r}")
    return tuple(sorted(sizes | {1}))


def parse_camera(text: str) -> tuple[int, int]:
    """'1280x960' -> (1280, 960)."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) < 16 or int(height) < 16:
        raise LinesideError(f"--camera takes WIDTHxHEIGHT, e.g. 1280x960, got {text!r}")
    return int(width), int(height)
