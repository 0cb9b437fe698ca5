"""Pictures of a bench run: latency histograms + CDF per variant, accuracy vs latency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def plot_latency(doc: dict[str, Any], path: Path) -> Path:
    """Histogram and CDF of per-image latency for every variant, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 4))
    every = np.concatenate([row["latencies_ms"] for row in doc["variants"]])
    bins = np.linspace(every.min(), every.max(), 50)  # shared, so the histograms compare
    for row in doc["variants"]:
        values = np.sort(np.asarray(row["latencies_ms"]))
        hist.hist(values, bins=bins, histtype="step", linewidth=1.5, label=row["name"])
        cdf.plot(values, np.arange(1, values.size + 1) / values.size, label=row["name"])
    hist.set(xlabel="latency per image (ms)", ylabel="runs", title="latency histogram (batch 1)")
    cdf.set(xlabel="latency per image (ms)", ylabel="fraction of runs", title="latency CDF")
    cdf.grid(alpha=0.3)
    hist.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_accuracy_latency(doc: dict[str, Any], path: Path) -> Path | None:
    """I-AUROC against median latency per variant; None when no variant has accuracy."""
    rows = [r for r in doc["variants"] if r["accuracy"]]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6, 4))
    for row in rows:
        x, y = row["latency"]["p50_ms"], row["accuracy"]["image_auroc"]
        axis.scatter([x], [y])
        axis.annotate(row["name"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axis.set(xlabel="p50 latency per image (ms)", ylabel="image AUROC", title="accuracy vs latency")
    axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_stages(doc: dict[str, Any], path: Path) -> Path:
    """Median time of every stage, stacked, one bar per variant (end-to-end breakdown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    host = {name: stats["p50_ms"] for name, stats in doc["stages"].items() if not stats.get("in_graph")}
    names = [row["name"] for row in doc["variants"]]
    fig, axis = plt.subplots(figsize=(9, 2.0 + 0.5 * len(names)))
    left = np.zeros(len(names))
    parts = [("decode", host["decode"]), ("resize", host["resize"])]
    parts.append(("inference (incl. pre-processing)", [row["latency"]["p50_ms"] for row in doc["variants"]]))
    parts += [(name, host[name]) for name in ("postprocess", "decision", "actuation")]
    for label, values in parts:
        widths = np.broadcast_to(np.asarray(values, dtype=np.float64), left.shape)
        axis.barh(names, widths, left=left, label=label)
        left = left + widths
    axis.set(xlabel="p50 ms per image (batch 1)", title="end-to-end time by stage")
    axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.5), ncol=6, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
