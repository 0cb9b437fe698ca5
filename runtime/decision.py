"""Verdicts: the reject threshold for a class, and PASS / REJECT / ERROR for a score."""

from __future__ import annotations

import math
from enum import Enum

from lineside.bundle import Bundle
from lineside.errors import LinesideError


class Verdict(str, Enum):
    """What happens to a part. Only PASS lets it through (unless the run is explicitly fail-open)."""

    PASS = "PASS"
    REJECT = "REJECT"
    ERROR = "ERROR"


class Eject(str, Enum):
    """What really happened to a part at the ejector: the `eject` field of its results-log record."""

    NONE = "none"  # PASS: no pulse wanted
    PENDING = "pending"  # a pulse is scheduled; the Ejector reports the outcome when the part has passed
    EJECTED = "ejected"  # the reject output was confirmed ON while the part was at the ejector
    FAILED = "eject_failed"  # a pulse was wanted but did not happen in the part's window (output or encoder fault)
    FAIL_OPEN = "not_ejected_fail_open"  # no PASS verdict, let through because the run is --fail-open


def resolve_threshold(bundle: Bundle, threshold: float | None, class_name: str | None) -> float:
    """The reject threshold: `threshold` if given, else the bundle's calibrated one for `class_name`."""
    classes = bundle.manifest.classes
    if class_name is not None and classes and class_name not in classes and "*" not in classes:
        raise LinesideError(f"class {class_name!r} is not in the bundle; it has: {', '.join(classes)}")
    if threshold is not None:
        if not math.isfinite(threshold):
            raise LinesideError(f"--threshold must be a finite number, got {threshold}")
        return float(threshold)
    if class_name is None and len(bundle.manifest.thresholds) > 1:
        names = ", ".join(sorted(bundle.manifest.thresholds))
        raise LinesideError(f"the bundle has thresholds for several classes ({names}): choose one with --class")
    found = bundle.threshold_for(class_name)
    if found is None:
        raise LinesideError(
            f"bundle {bundle.path} has no reject threshold"
            + (f" for class {class_name!r}" if class_name else "")
            + f": run `lineside calibrate {bundle.path} --good DIR` or pass --threshold"
        )
    return float(found)


def decide(score: float, threshold: float) -> Verdict:
    """REJECT when the score exceeds the threshold, ERROR when either is not a finite number, else PASS."""
    if not (math.isfinite(score) and math.isfinite(threshold)):
        return Verdict.ERROR
    return Verdict.REJECT if score > threshold else Verdict.PASS
