"""Score histograms with the calibrated threshold, one PNG per class (matplotlib, Agg)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from lineside.atomic import atomic_write_bytes
from lineside.calibration.thresholds import ClassThreshold
from lineside.errors import missing_extra


def plot_class_scores(result: ClassThreshold, good: np.ndarray, defect: np.ndarray | None, out: Path) -> Path:
    """Write `out/<class>_scores.png`: good (and defect) score histograms and the threshold line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError as exc:
        raise missing_extra("matplotlib", "calibrate") from exc
    values = [good] if defect is None or defect.size == 0 else [good, defect]
    low = min(float(v.min()) for v in values)
    high = max(max(float(v.max()) for v in values), result.threshold)
    bins = np.linspace(low, high + 1e-9 * max(1.0, abs(high)), 61).tolist()  # 61 shared bin edges
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.hist(good, bins=bins, color="tab:green", alpha=0.6, label=f"good (n={good.size})")
    if defect is not None and defect.size:
        ax.hist(defect, bins=bins, color="tab:red", alpha=0.6, label=f"defect (n={defect.size})")
    ax.axvline(result.threshold, color="black", linestyle="--", label=f"threshold {result.threshold:.4g}")
    ax.set_yscale("log")
    ax.set_xlabel("image anomaly score")
    ax.set_ylabel("images")
    frr = f"false-reject seen {result.false_reject_observed:.2%}"
    miss = "" if result.miss_rate is None else f", miss {result.miss_rate:.2%}"
    ax.set_title(f"{result.name}: {result.method} threshold ({frr}{miss})", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    path = out / f"{result.name}_scores.png"
    atomic_write_bytes(path, buffer.getvalue())
    return path
