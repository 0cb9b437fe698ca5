"""Why an RLR map loses on real parts: one trained checkpoint re-scored with every map form, side by side.

    python benchmarks/rlr_maps.py --checkpoint RUN/model.pt --data ../shared/data/magnetic_tile
                                  [--train-images 200] [--out benchmarks/results] [--name magnetic_tile]

The checkpoint's decoders run once over a sample of its good training images (never the held-out
validation images, never a test image) and over the test split, keeping each level's raw per-position
error. Every map form is then scored on the same errors:

* error: "mse+cos" (the paper), "mse", "cos" (1 - cosine only);
* standardise: "none", "level" (each level divided by its mean over the good training maps),
  "position" (each level z-scored per position with the good training maps' mean and std, std floored
  at `STD_FLOOR` of its mean, as `RLR.fit_statistics` does);
* levels: both (stride 8 + 16), or one alone;
* score: map max, or mean of the top 1 % of pixels.

Per form: I-AUROC, P-AUROC and I-AUROC per defect type (each type against all good test images).
Nothing is chosen from these numbers here; they explain a choice made once for the edge preset.
Writes OUT/rlr_maps_NAME.json and OUT/rlr_maps_NAME.md.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from lineside.atomic import atomic_write_json, atomic_write_text
from lineside.train.models.rlr import STD_FLOOR

ERRORS = ("mse+cos", "mse", "cos")
STANDARDISE = ("none", "level", "position")
LEVELS = ("both", "stride8", "stride16")
SCORES = ("max", "top1%")
BATCH = 8


def level_errors(model: Any, samples: list, progress: bool) -> dict[str, Any]:
    """Raw (N, 2, h, w) [mse, cos] errors per level, masks (N, H, W) at the input size, labels, defect types."""
    from lineside.preprocess import resize_for_model, resize_mask
    from lineside.train.preprocess import Preprocess

    preprocess = Preprocess(model.mean, model.std)
    levels: list[list[np.ndarray]] = [[], []]
    masks, labels, types = [], [], []
    for start in tqdm(range(0, len(samples), BATCH), desc="decoding", unit="batch", disable=not progress):
        frames = []
        for sample in samples[start : start + BATCH]:
            image, mask = sample.load()
            frames.append(resize_for_model(image, model.input_size))
            masks.append(resize_mask(mask, model.input_size))
            labels.append(sample.label)
            types.append(sample.defect_type)
        with torch.no_grad():
            encoded = model.encode(preprocess(torch.from_numpy(np.stack(frames))))
            for index, (cos, mse) in enumerate(model.level_terms(encoded, with_mse=True)):
                levels[index].append(torch.cat([mse, cos], 1).numpy())  # (B, 2, h, w)
    return {
        "levels": [np.concatenate(parts) for parts in levels],
        "masks": np.stack(masks),
        "labels": np.array(labels),
        "types": np.array(types),
    }


def _error(level: np.ndarray, error: str) -> np.ndarray:
    """(N, 2, h, w) [mse, cos] -> (N, h, w) of one error form."""
    return {"mse+cos": level[:, 0] + level[:, 1], "mse": level[:, 0], "cos": level[:, 1]}[error]


def build_maps(model: Any, test: list[np.ndarray], good: list[np.ndarray], error: str, standardise: str,
               levels: str) -> np.ndarray:  # fmt: skip
    """(N, H, W) anomaly maps of one form: per-level errors, standardised with `good`, through the model's tail."""
    maps = []
    for index in {"both": (0, 1), "stride8": (0,), "stride16": (1,)}[levels]:
        raw, reference = _error(test[index], error), _error(good[index], error)
        if standardise == "level":
            raw = raw / reference.mean()
        elif standardise == "position":
            std = reference.std(0)
            raw = (raw - reference.mean(0)) / np.maximum(std, STD_FLOOR * std.mean() + 1e-12)
        maps.append(torch.from_numpy(raw[:, None]).float())
    with torch.no_grad():
        return model.map_tail(maps)[:, 0].numpy()


def score_maps(maps: np.ndarray, how: str) -> np.ndarray:
    """Image scores: map max or mean of the top 1 % of pixels."""
    flat = maps.reshape(len(maps), -1)
    if how == "max":
        return flat.max(1)
    top = max(1, flat.shape[1] // 100)
    return np.sort(flat, 1)[:, -top:].mean(1)


def analyse(model: Any, train: list, test: list, progress: bool = True) -> list[dict[str, Any]]:
    """One row per map form: I-AUROC, P-AUROC and per-defect-type I-AUROC, in percent."""
    from lineside.metrics import auroc

    good = level_errors(model, train, progress)
    seen = level_errors(model, test, progress)
    labels, types, masks = seen["labels"], seen["types"], seen["masks"]
    rows = []
    for error, standardise, levels in itertools.product(ERRORS, STANDARDISE, LEVELS):
        maps = build_maps(model, seen["levels"], good["levels"], error, standardise, levels)
        pixel = auroc(maps[:, ::2, ::2].ravel(), masks[:, ::2, ::2].ravel()) if masks.any() else float("nan")
        for how in SCORES:
            scores = score_maps(maps, how)
            per_type = {
                kind: round(100 * auroc(scores[(types == kind) | (labels == 0)], labels[(types == kind) | (labels == 0)]), 2)
                for kind in sorted(set(types[labels == 1]))
            }  # fmt: skip
            rows.append({
                "error": error, "standardise": standardise, "levels": levels, "score": how,
                "i_auroc": round(100 * auroc(scores, labels), 2), "p_auroc": round(100 * pixel, 2),
                "per_type": per_type,
            })  # fmt: skip
    return rows


def markdown(rows: list[dict[str, Any]], title: str) -> str:
    """The rows as a markdown table, per-type columns last."""
    kinds = sorted({k for row in rows for k in row["per_type"]})
    head = ["error", "standardise", "levels", "score", "I-AUROC", "P-AUROC", *kinds]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows:
        cells = [row["error"], row["standardise"], row["levels"], row["score"], f"{row['i_auroc']:.1f}",
                 f"{row['p_auroc']:.1f}", *(f"{row['per_type'].get(k, float('nan')):.1f}" for k in kinds)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="an RLR RUN/model.pt")
    parser.add_argument("--data", type=Path, required=True, help="the data set it was trained on")
    parser.add_argument("--train-images", type=int, default=200, help="good training images for the statistics")
    parser.add_argument("--name", default=None, help="output name (default: the data folder's name)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    from lineside.data import open_dataset
    from lineside.train.checkpoint import load_checkpoint

    loaded = load_checkpoint(args.checkpoint)
    if loaded.model_name != "rlr":
        parser.error(f"{args.checkpoint} holds a {loaded.model_name} model; this analysis reads RLR decoders")
    dataset = open_dataset(args.data)
    held = {name for names in (loaded.held_out or {}).values() for name in names}
    train = [s for s in dataset.select(split="train") if s.category in loaded.classes and s.image_path.name not in held]
    picks = np.random.default_rng(0).choice(len(train), min(args.train_images, len(train)), replace=False)
    test = [s for s in dataset.select(split="test") if s.category in loaded.classes]
    rows = analyse(loaded.model, [train[i] for i in sorted(picks)], test, progress=not args.quiet)
    name = args.name or args.data.resolve().name
    result = {"checkpoint": str(args.checkpoint), "data": str(args.data), "train_images": len(picks),
              "test_images": len(test), "rows": rows}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / f"rlr_maps_{name}.json", result)
    atomic_write_text(args.out / f"rlr_maps_{name}.md", markdown(rows, f"RLR map forms on {name}"))
    if not args.quiet:
        print(markdown(rows, f"RLR map forms on {name}"))
    return result


if __name__ == "__main__":
    main()
