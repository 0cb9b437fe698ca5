"""Evaluate a model per category and on average (I-AUROC, P-AUROC, AUPRO, AP, F1-max at 256x256).

Maps are resized to the protocol's 256x256 evaluation size (masks with nearest neighbour), so
models with other input sizes compare fairly. Heatmap overlays of the worst cases (defects that
scored lowest = would-be false passes, goods that scored highest = would-be false rejects) show
what the model gets wrong.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from lineside.atomic import atomic_write_bytes
from lineside.data import DataSet, Sample
from lineside.errors import LinesideError
from lineside.metrics import average_categories, evaluate
from lineside.preprocess import resize_for_model, resize_mask
from lineside.train.models.base import AnomalyModel
from lineside.train.preprocess import Preprocess

EVAL_SIZE = (256, 256)
COLUMNS = (("I-AUROC", "image_auroc"), ("P-AUROC", "pixel_auroc"), ("AUPRO", "aupro"), ("I-AP", "image_ap"),
           ("P-AP", "pixel_ap"), ("I-F1", "image_f1_max"), ("P-F1", "pixel_f1_max"))  # fmt: skip


@torch.no_grad()
def predict(
    model: AnomalyModel, samples: Sequence[Sample], device: str = "cpu", batch_size: int = 8, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scores (N,), maps (N, 256, 256) float16, masks (N, 256, 256) bool, labels (N,) of `samples`."""
    model.eval().to(device)
    preprocess = Preprocess(model.mean, model.std).to(device)
    n = len(samples)
    scores = np.empty(n, np.float32)
    maps = np.empty((n, *EVAL_SIZE), np.float16)
    masks = np.empty((n, *EVAL_SIZE), bool)
    for start in tqdm(range(0, n, batch_size), desc="evaluating", unit="batch", disable=not progress):
        chunk = samples[start : start + batch_size]
        frames = []
        for i, sample in enumerate(chunk):
            image, mask = sample.load()
            frames.append(resize_for_model(image, model.input_size))
            masks[start + i] = resize_mask(mask, EVAL_SIZE)
        out = model(preprocess(torch.from_numpy(np.stack(frames)).to(device)))
        scores[start : start + len(chunk)] = out.score.float().cpu().numpy()
        for i, heat in enumerate(out.anomaly_map[:, 0].float().cpu().numpy()):
            maps[start + i] = cv2.resize(heat, EVAL_SIZE[::-1], interpolation=cv2.INTER_LINEAR)
    labels = np.array([s.label for s in samples], np.int64)
    return scores, maps, masks, labels


def evaluate_model(
    model: AnomalyModel,
    dataset: DataSet,
    categories: Sequence[str] | None = None,
    *,
    device: str = "cpu",
    heatmap_dir: str | Path | None = None,
    worst: int = 3,
    progress: bool = True,
) -> dict[str, Any]:
    """Metrics per category (default: the model's classes that have test images) and their mean."""
    names = list(categories) if categories else [c for c in model.classes if c in dataset.categories]
    if not names:
        raise LinesideError(f"{dataset.root} has none of the model's classes ({', '.join(model.classes)}) to test")
    per_category: dict[str, dict[str, float]] = {}
    started, count = time.perf_counter(), 0
    for category in names:
        samples = dataset.select(split="test", category=category)
        scores, maps, masks, labels = predict(model, samples, device, progress=progress)
        has_pixels = bool(masks.any()) and bool((~masks).any())
        metrics = evaluate(scores, labels, maps if has_pixels else None, masks if has_pixels else None)
        per_category[category] = {k: round(float(v), 5) for k, v in metrics.items()}
        count += len(samples)
        if heatmap_dir is not None:
            save_worst_heatmaps(Path(heatmap_dir), category, samples, scores, maps, labels, worst)
    return {
        "categories": per_category,
        "mean": {k: round(v, 5) for k, v in average_categories(per_category).items()},
        "eval_size": list(EVAL_SIZE),
        "images": count,
        "seconds_per_image": round((time.perf_counter() - started) / max(1, count), 4),
    }


def overlay(image: np.ndarray, heat: np.ndarray, mask: np.ndarray, scale: float) -> np.ndarray:
    """Side by side: the image with the true defect outlined, and the heatmap (JET, 0..scale) over it."""
    image = resize_for_model(image, EVAL_SIZE)
    level = np.clip(heat.astype(np.float32) / max(scale, 1e-8) * 255, 0, 255).astype(np.uint8)
    colour = cv2.applyColorMap(level, cv2.COLORMAP_JET)
    blended = cv2.addWeighted(image, 0.5, colour, 0.5, 0)
    outlined = image.copy()
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(outlined, contours, -1, (0, 255, 0), 1)
    return np.concatenate([outlined, blended], axis=1)


def save_worst_heatmaps(
    out_dir: Path,
    category: str,
    samples: Sequence[Sample],
    scores: np.ndarray,
    maps: np.ndarray,
    labels: np.ndarray,
    count: int,
) -> None:
    """PNG overlays of the `count` lowest-scored defects and highest-scored goods of a category."""
    scale = float(np.quantile(maps.astype(np.float32), 0.999))
    defects, goods = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    picks = [("false_pass", i) for i in defects[np.argsort(scores[defects])][:count]]
    picks += [("high_good", i) for i in goods[np.argsort(-scores[goods])][:count]]
    for rank, (kind, i) in enumerate(picks):
        image, mask = samples[i].load()
        picture = overlay(image, maps[i], resize_mask(mask, EVAL_SIZE), scale)
        ok, png = cv2.imencode(".png", picture)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode the heatmap of {samples[i].image_path}")
        name = f"{category}_{kind}_{rank % count}_{samples[i].defect_type}_{samples[i].image_path.stem}.png"
        atomic_write_bytes(out_dir / name, png.tobytes())


def format_table(result: dict[str, Any]) -> str:
    """Per-category rows and the mean, metrics in percent."""
    width = max(8, *(len(c) for c in result["categories"]))
    header = f"{'category':<{width}}  " + "  ".join(f"{title:>7}" for title, _ in COLUMNS)
    lines = [header, "-" * len(header)]
    rows = [*result["categories"].items(), ("mean", result["mean"])]
    for index, (name, metrics) in enumerate(rows):
        if index == len(rows) - 1:
            lines.append("-" * len(header))
        cells = [f"{100 * metrics[key]:7.2f}" if key in metrics else f"{'-':>7}" for _, key in COLUMNS]
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)
