"""`lineside bench` orchestration: bundles or a training run -> variants -> accuracy -> interleaved timing."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lineside.bundle import PRECISIONS, Bundle, load_bundle
from lineside.errors import LinesideError
from lineside.export.bench import Variant, ort_variant, results, time_interleaved, torch_variant


@dataclass(frozen=True)
class BenchOptions:
    """What `lineside bench` was asked for."""

    precisions: tuple[str, ...] = PRECISIONS
    report: Path | None = None
    data: Path | None = None
    runs: int = 100
    warmup: int = 5
    threads: int = 2
    eval_limit: int | None = None


def checkpoint_of(target: Path) -> Path | None:
    """RUN/model.pt for a run folder or a .pt file; None for anything else (a bundle)."""
    if target.is_file() and target.suffix == ".pt":
        return target
    if target.is_dir() and (target / "model.pt").is_file() and not (target / "manifest.json").exists():
        return target / "model.pt"
    return None


def _bundle_variants(bundle: Bundle, threads: int) -> list[Variant]:
    manifest = bundle.manifest
    label = f"{manifest.model} ort {manifest.precision}"
    if manifest.precision == "int8" and manifest.cpu_model_file:
        return [
            ort_variant(f"{label} u8s8", "int8", bundle.file(manifest.cpu_model_file), threads),
            ort_variant(f"{label} s8s8", "int8", bundle.model_path, threads),
        ]
    return [ort_variant(label, manifest.precision, bundle.model_path, threads)]


def _export_run(checkpoint: Path, options: BenchOptions, folder: Path) -> list[Bundle]:
    from lineside.export.pipeline import ExportOptions, export_bundle

    if "int8" in options.precisions and options.data is None:
        raise LinesideError("benchmarking int8 from a run exports it first, which needs --data DIR")
    bundles = []
    for precision in options.precisions:
        export = ExportOptions(
            out=folder / precision,
            precision=precision,
            data=options.data,
            eval_limit=options.eval_limit,
            threads=options.threads,
            force=True,
        )
        bundles.append(export_bundle(checkpoint, export))
    return bundles


def collect(targets: list[Path], options: BenchOptions, work: Path) -> tuple[list[Variant], tuple[int, int]]:
    """Variants for the targets: a run (exported at every precision, plus torch eager) or bundles."""
    checkpoint = checkpoint_of(targets[0]) if len(targets) == 1 else None
    variants: list[Variant] = []
    if checkpoint is not None:
        from lineside.export.fuse import fuse_checkpoint
        from lineside.train.checkpoint import load_checkpoint

        bundles = _export_run(checkpoint, options, (options.report or work) / "bundles")
        variants.append(torch_variant(fuse_checkpoint(load_checkpoint(checkpoint)), options.threads))
    else:
        bundles = [load_bundle(t) for t in targets]
        bundles = [b for b in bundles if b.manifest.precision in options.precisions]
    if not bundles:
        raise LinesideError(
            f"no bundle among the targets has a precision in --precisions {','.join(options.precisions)}"
        )
    sizes = {tuple(b.manifest.input_size) for b in bundles}
    if len(sizes) > 1:
        raise LinesideError(f"bundles have different input sizes {sorted(sizes)}: bench bundles of one model together")
    for bundle in bundles:
        variants += _bundle_variants(bundle, options.threads)
    return variants, sizes.pop()  # type: ignore[return-value]


def _measure_accuracy(variants: list[Variant], eval_set: Any) -> None:
    from lineside.export.evalset import accuracy

    for variant in variants:
        maps, scores = [], []
        for image in eval_set.images:
            anomaly_map, score = variant.run(np.ascontiguousarray(image[None]))
            maps.append(np.asarray(anomaly_map)[0])
            scores.append(float(np.asarray(score).reshape(-1)[0]))
        variant.accuracy = accuracy(eval_set, np.asarray(scores, np.float32), np.stack(maps))["mean"]  # type: ignore[assignment]


def bench(targets: list[Path], options: BenchOptions) -> dict[str, Any]:
    """Run the whole benchmark; writes results.json and plots to `options.report` if given."""
    with tempfile.TemporaryDirectory(prefix="lineside-bench-") as work:
        variants, size = collect(targets, options, Path(work))
        image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
        if options.data is not None:
            from lineside.export.evalset import load_eval_set

            eval_set = load_eval_set(options.data, size, limit_per_category=options.eval_limit)
            _measure_accuracy(variants, eval_set)
            image = eval_set.images[0]
        time_interleaved(variants, image, options.runs, options.warmup)
    doc = results(variants, options.threads, options.runs, options.warmup, size)
    if options.report is not None:
        write_report(doc, options.report)
    return doc


def write_report(doc: dict[str, Any], folder: Path) -> None:
    """results.json + latency.png (+ accuracy_latency.png), written atomically."""
    import json

    from lineside.atomic import atomic_write_bytes, atomic_write_text
    from lineside.export.bench_plot import plot_accuracy_latency, plot_latency

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "results.json", json.dumps(doc, indent=2, sort_keys=True) + "\n")
    with tempfile.TemporaryDirectory(dir=folder) as staging:
        for plot, name in ((plot_latency, "latency.png"), (plot_accuracy_latency, "accuracy_latency.png")):
            written = plot(doc, Path(staging) / name)
            if written is not None:
                atomic_write_bytes(folder / name, written.read_bytes())
