"""What `lineside train` does, as a function: data -> model -> fit -> checkpoint + metrics.json."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lineside.atomic import atomic_write_json
from lineside.data.split import DEFAULT_FRACTION
from lineside.train.data import load_train_data, open_for_training
from lineside.train.evaluate import evaluate_model, format_table
from lineside.train.loop import LoopOptions, _distributed, fit
from lineside.train.models import build_model
from lineside.train.synthesis import DefectSynthesizer, load_textures


@dataclass(frozen=True)
class TrainRequest:
    """The user's training request (CLI arguments, typed)."""

    data: Path
    model: str
    out: Path
    categories: list[str] | None = None
    preset: str = "edge"
    epochs: int | None = None
    seed: int = 0
    backbone_weights: str | None = None
    random_init_backbone: bool = False
    textures: str | None = None
    resume: bool = False
    device: str = "cpu"
    eval_every: int = 0
    evaluate: bool = True
    progress: bool = True
    val_fraction: float = DEFAULT_FRACTION


def train_run(request: TrainRequest) -> dict[str, Any]:
    """Train, evaluate on the test split, write OUT/model.pt and OUT/metrics.json; returns a summary."""
    started = time.perf_counter()
    dataset, classes = open_for_training(request.data, request.categories)
    model = build_model(
        request.model, request.preset, classes,
        backbone_weights=request.backbone_weights, random_init_backbone=request.random_init_backbone,
    )  # fmt: skip
    data, model.held_out = load_train_data(
        dataset, classes, model.input_size, progress=request.progress, val_fraction=request.val_fraction
    )
    textures = load_textures(request.textures, model.input_size) if request.textures else []
    has_test = any(s.split == "test" and s.category in classes for s in dataset.samples)

    def eval_fn(m: Any) -> dict[str, Any]:
        return evaluate_model(m, dataset, device=request.device, progress=request.progress)

    options = LoopOptions(
        out_dir=request.out, seed=request.seed, device=request.device, epochs=request.epochs,
        eval_every=request.eval_every, resume=request.resume, progress=request.progress,
        synthesizer=DefectSynthesizer(textures),
    )  # fmt: skip
    result = fit(model, data, options, eval_fn if request.evaluate and has_test else None)
    rank, _ = _distributed()
    summary: dict[str, Any] = {
        "model": model.name,
        "preset": request.preset,
        "classes": classes,
        "train_images": int(len(data.images)),
        "validation_images": sum(len(names) for names in model.held_out.values()),
        "trainable_parameters": sum(p.numel() for n, p in model.named_parameters() if not n.startswith("encoder.")),
        "parameters": sum(p.numel() for p in model.parameters()),
        "fit_seconds": round(result.seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "seed": request.seed,
        "eval": result.metrics,
    }
    if rank == 0:
        atomic_write_json(request.out / "metrics.json", summary)
    table = format_table(result.metrics) if result.metrics else "(no test images: evaluation skipped)"
    report = f"{table}\ntrained {model.name}/{request.preset} on {summary['train_images']} images "
    report += f"in {summary['total_seconds']:.0f} s -> {request.out / 'model.pt'}"
    return {**summary, "rank": rank, "report": report}
