"""Write a bench run to a folder: results.json, the PNG plots and report.md (tables + plots + conditions)."""

from __future__ import annotations

import json
import shlex
import tempfile
from pathlib import Path
from typing import Any

from lineside.atomic import atomic_write_bytes, atomic_write_text
from lineside.export.bench.tables import as_markdown, conditions, tables

PLOTS: tuple[tuple[str, str], ...] = (
    ("latency.png", "Latency histogram and CDF per variant (batch 1)"),
    ("stages.png", "End-to-end time by stage (p50)"),
    ("accuracy_latency.png", "Accuracy vs latency"),
)


def _machine_lines(doc: dict[str, Any]) -> list[str]:
    machine, settings = doc["machine"], doc["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    camera = settings["camera"]
    return [
        f"- Machine: {machine['cpu_model']}, {machine['logical_cpus']} logical CPUs ({machine['usable_cpus']} usable), "
        f"{machine['platform']}, Python {machine['python']}",
        f"- Libraries: {versions}",
        f"- {conditions(doc)}",
        f"- Camera frame: {camera['width']}x{camera['height']} JPEG ({camera['jpeg_bytes']} bytes), model input "
        f"{settings['input_size'][0]}x{settings['input_size'][1]}; actuator `{settings['actuator']}`; reject "
        f"threshold {settings['threshold']['value']:.4g} ({settings['threshold']['source']})",
        f"- Memory: {settings['memory_method']}",
    ]


def markdown(doc: dict[str, Any], plots: list[str]) -> str:
    """The whole report."""
    lines = ["# lineside bench report", "", f"Created {doc['created']} by lineside {doc['lineside_version']}:", ""]
    lines += ["```", shlex.join(doc["command"]), "```", ""]
    lines += _machine_lines(doc)
    if doc["eval_set"]:
        ev = doc["eval_set"]
        lines.append(
            f"- Accuracy: test split of `{ev['root']}`, {ev['images']} images in {ev['categories']} categories "
            f"(one swapped good/defect pair = {ev['one_pair_points']:.3f} I-AUROC points)"
        )
    lines.append("")
    for table in tables(doc):
        if table[2]:
            lines += [as_markdown(table), ""]
    if doc["skipped"]:
        lines += ["**Skipped**", ""] + [f"- {s['what']}: {s['reason']}" for s in doc["skipped"]] + [""]
    for name, caption in PLOTS:
        if name in plots:
            lines += [f"![{caption}]({name})", ""]
    lines.append("Latencies come from one interleaved run (every round runs every variant), so ratios within it hold")
    lines.append("even on a loaded machine; absolute times depend on the load average recorded above.")
    return "\n".join(lines) + "\n"


def write_report(doc: dict[str, Any], folder: Path) -> list[Path]:
    """results.json, plots and report.md in `folder`, each written atomically; returns the files."""
    from lineside.export.bench.plots import plot_accuracy_latency, plot_latency, plot_stages

    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "results.json"]
    atomic_write_text(written[0], json.dumps(doc, indent=2, sort_keys=True) + "\n")
    plots = []
    with tempfile.TemporaryDirectory(dir=folder) as staging:
        for plot, name in ((plot_latency, "latency.png"), (plot_stages, "stages.png")):
            plot(doc, Path(staging) / name)
            plots.append(name)
        if plot_accuracy_latency(doc, Path(staging) / "accuracy_latency.png") is not None:
            plots.append("accuracy_latency.png")
        for name in plots:
            atomic_write_bytes(folder / name, (Path(staging) / name).read_bytes())
            written.append(folder / name)
    atomic_write_text(folder / "report.md", markdown(doc, plots))
    return [*written, folder / "report.md"]
