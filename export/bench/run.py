"""`lineside bench` end to end: targets -> variants -> accuracy -> interleaved rounds -> batches -> memory -> report."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lineside.bench_options import BenchOptions
from lineside.errors import LinesideError
from lineside.export.bench.memory import METHOD, measure
from lineside.export.bench.results import document
from lineside.export.bench.stages import JPEG_QUALITY, HostStages, camera_jpeg
from lineside.export.bench.stats import load_average, machine_info
from lineside.export.bench.targets import Plan, bundle_variants, export_run, load_bundles, split_targets
from lineside.export.bench.timing import time_batches, time_rounds
from lineside.export.bench.variants import BackendSpec, Variant, variant


def _quiet(message: str) -> None:
    """Default progress sink: say nothing."""


def _collect(
    targets: list[Path], options: BenchOptions, work: Path, stack: contextlib.ExitStack, say: Callable[[str], None]
) -> Plan:
    """Every variant to time, opened; exports a lone run first."""
    checkpoint, paths = split_targets(targets)
    plan = Plan()
    if checkpoint is not None and not paths:
        paths = export_run(checkpoint, options, (options.report or work) / "bundles", plan, say)
        if not paths:
            raise LinesideError("export refused every precision: " + "; ".join(s["reason"] for s in plan.skipped))
    plan.bundles = load_bundles(paths, options.precisions)
    manifest = plan.bundles[0].manifest
    plan.input_size = tuple(manifest.input_size)  # type: ignore[assignment]
    wants_torch = options.backends is None or "torch" in options.backends
    if checkpoint is None and options.backends is not None and "torch" in options.backends:
        raise LinesideError("--backends torch times the checkpoint: add RUN/model.pt to the targets")
    if checkpoint is not None and wants_torch:
        plan.variants.append(
            variant(manifest.model, "fp32", BackendSpec("torch", str(checkpoint), options.threads), stack)
        )
        if plan.variants[0].opened.input_size != plan.input_size:
            raise LinesideError(
                f"{checkpoint} takes {plan.variants[0].opened.input_size}, the bundles {plan.input_size}"
            )
    bundle_variants(plan.bundles, options.backends, options.threads, plan, stack, say)
    if not plan.variants:
        raise LinesideError("nothing to time: " + "; ".join(f"{s['what']}: {s['reason']}" for s in plan.skipped))
    return plan


def _measure_accuracy(variants: list[Variant], eval_set: Any, say: Callable[[str], None]) -> None:
    from lineside.export.evalset import accuracy

    for item in variants:
        say(f"accuracy of {item.name} on {len(eval_set)} test images")
        outputs = [item.opened.run(np.ascontiguousarray(image[None])) for image in eval_set.images]
        maps = np.stack([np.asarray(m)[0] for m, _ in outputs])  # (N, 1, H, W)
        scores = np.asarray([float(np.asarray(s).reshape(-1)[0]) for _, s in outputs], np.float32)  # (N,)
        item.accuracy = accuracy(eval_set, scores, maps)["mean"]  # type: ignore[assignment]


def _threshold(plan: Plan, image: np.ndarray) -> dict[str, Any]:
    """The bundle's calibrated reject threshold, else the first variant's score of the frame."""
    thresholds = plan.bundles[0].manifest.thresholds
    if len(thresholds) == 1:
        return {"value": next(iter(thresholds.values())), "source": "calibrated (bundle manifest)"}
    score = plan.variants[0].opened.run(np.ascontiguousarray(image[None]))[1]
    return {"value": float(np.asarray(score).reshape(-1)[0]), "source": "not calibrated: score of the frame"}


def _frame(plan: Plan, options: BenchOptions, say: Callable[[str], None]) -> tuple[np.ndarray, dict[str, Any] | None]:
    """The image the timing runs on (first test image with --data, else a synthetic part) and the eval set info."""
    if options.data is None:
        from lineside.preprocess import resize_for_model
        from lineside.synth.scene import render_sample

        rendered = render_sample("washer", 0, "test", "good", 0, size=max(plan.input_size))
        return resize_for_model(rendered.image, plan.input_size), None
    from lineside.export.evalset import load_eval_set, one_pair_points

    eval_set = load_eval_set(options.data, plan.input_size, limit_per_category=options.eval_limit)
    _measure_accuracy(plan.variants, eval_set, say)
    info = {
        "root": str(options.data),
        "images": len(eval_set),
        "categories": len(set(eval_set.categories)),
        "one_pair_points": one_pair_points(eval_set),
    }
    return eval_set.images[0], info


def bench(targets: list[Path], options: BenchOptions, say: Callable[[str], None] = _quiet) -> dict[str, Any]:
    """Run the whole benchmark; returns results.json's document and writes the report when asked."""
    options.validate()
    started = time.monotonic()
    machine = machine_info(options.threads)
    with tempfile.TemporaryDirectory(prefix="lineside-bench-") as work, contextlib.ExitStack() as stack:
        plan = _collect(targets, options, Path(work), stack, say)
        image, eval_info = _frame(plan, options, say)
        jpeg = camera_jpeg(image, options.camera)
        threshold = _threshold(plan, image)
        stages = HostStages(jpeg, plan.input_size, threshold["value"], options.actuator)
        stack.callback(stages.close)
        say(f"timing {len(plan.variants)} variants: {options.warmup} warm-up + {options.runs} interleaved rounds")
        time_rounds(plan.variants, stages, options.runs, options.warmup)
        time_batches(plan.variants, image, options.batch_sizes, options.batch_runs)
        for item in plan.variants if options.memory else ():
            say(f"peak memory of {item.name} (child process)")
            item.memory = measure(item.spec, plan.input_size)
    machine["load_average_end"] = load_average()
    settings = {
        "runs": options.runs,
        "warmup": options.warmup,
        "threads": options.threads,
        "batch_sizes": list(options.batch_sizes),
        "batch_runs": options.batch_runs,
        "input_size": list(plan.input_size),
        "camera": {
            "width": options.camera[0],
            "height": options.camera[1],
            "jpeg_bytes": len(jpeg),
            "quality": JPEG_QUALITY,
        },
        "actuator": options.actuator,
        "threshold": threshold,
        "memory_method": METHOD if options.memory else None,
    }
    command = options.as_argv(targets)
    doc = document(plan.variants, stages.times_ms, machine, settings, plan.skipped, eval_info, command, started)
    if options.report is not None:
        from lineside.export.bench.report import write_report

        write_report(doc, options.report)
    return doc
