"""`export_bundle`: checkpoint -> fused ONNX -> simplified -> fp16 / int8 -> measured -> bundle.

Every step is a small function of its own module; this one only sequences them, measures each
graph against FP32 on the eval set, and writes the bundle and its report.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lineside.bundle import PRECISIONS, Bundle
from lineside.errors import LinesideError
from lineside.export.int8 import METHODS

log = logging.getLogger(__name__)

FP16_MAX_DROP = 0.1  # I-AUROC points: FP16 that loses more than this is a broken conversion
PARITY_MAX_REL = 1e-3  # FP32 ORT vs torch: map max abs error relative to the map's range


@dataclass(frozen=True)
class ExportOptions:
    """What `lineside export` was asked for."""

    out: Path
    precision: str = "fp32"
    data: Path | None = None
    calib: Path | None = None
    calib_size: int = 64
    calib_method: str = "minmax"
    max_drop: float = 0.5  # I-AUROC points
    max_pixel_drop: float = 0.5  # P-AUROC points
    max_aupro_drop: float = 1.5  # AUPRO points
    dynamic_batch: bool = False
    force: bool = False
    eval_limit: int | None = None
    threads: int = 2
    progress: bool = True

    def validate(self) -> None:
        """Refuse inconsistent options before any work is done."""
        if self.precision not in PRECISIONS:
            raise LinesideError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.calib_method not in METHODS:
            raise LinesideError(f"--calib-method must be one of {', '.join(METHODS)}, got {self.calib_method!r}")
        if self.precision == "int8" and self.data is None:
            raise LinesideError("int8 export measures the accuracy drop on an eval set: pass --data DIR")
        for flag, value in (
            ("--max-drop", self.max_drop), ("--max-pixel-drop", self.max_pixel_drop),
            ("--max-aupro-drop", self.max_aupro_drop),
        ):  # fmt: skip
            if not 0 <= value < float("inf"):  # also refuses NaN
                raise LinesideError(f"{flag} must be a finite number of points >= 0, got {value}")
        if self.out.exists() and not self.force:
            raise LinesideError(f"{self.out} already exists: choose another --out or pass --force to replace it")


class _Stages:
    """A tqdm bar over the named export stages, plus wall time per stage for the report."""

    def __init__(self, names: list[str], enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=len(names), desc="export", unit="step", disable=not enabled, leave=False)
        self.times: dict[str, float] = {}
        self._start = time.perf_counter()
        self._name: str | None = None

    def start(self, name: str) -> None:
        self._finish()
        self._name, self._start = name, time.perf_counter()
        self.bar.set_description(f"export: {name}")

    def _finish(self) -> None:
        if self._name is not None:
            self.times[self._name] = round(time.perf_counter() - self._start, 3)
            self.bar.update(1)

    def close(self) -> None:
        self._finish()
        self._name = None
        self.bar.close()


def _stage_names(options: ExportOptions) -> list[str]:
    names = ["load", "fuse", "onnx", "simplify", "parity"]
    names += {"fp32": [], "fp16": ["fp16"], "int8": ["calibrate", "int8"]}[options.precision]
    return [*names, "bundle"]


def export_bundle(checkpoint: str | Path, options: ExportOptions) -> Bundle:
    """Export a checkpoint to a bundle at `options.out`; returns the written bundle."""
    import torch

    from lineside.train.checkpoint import load_checkpoint

    options.validate()
    torch.set_num_threads(options.threads)
    stages = _Stages(_stage_names(options), options.progress)
    started = time.perf_counter()
    try:
        stages.start("load")
        loaded = load_checkpoint(checkpoint)
        with tempfile.TemporaryDirectory(prefix="lineside-export-") as work:
            from lineside.export.steps import run_steps

            files, report = run_steps(loaded, options, Path(work), stages)
            stages.start("bundle")
            report["export_seconds"] = round(time.perf_counter() - started, 2)
            report["stage_seconds"] = stages.times
            from lineside.export.bundle_writer import write_export_bundle

            return write_export_bundle(loaded, options, files, report)
    finally:
        stages.close()


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| divided by the range of `b`."""
    span = float(np.ptp(b)) or 1.0
    return float(np.abs(a - b).max()) / span


def drop_points(reference: dict[str, Any], other: dict[str, Any]) -> float:
    """I-AUROC drop in points (x100), mean over categories."""
    return 100.0 * (float(reference["mean"]["image_auroc"]) - float(other["mean"]["image_auroc"]))
