"""Is a test split lit differently from its training images, and does a model's score follow the light?

    python benchmarks/lighting_shift.py --data ../shared/data/magnetic_tile [--checkpoint RUN/model.pt]
                                        [--out benchmarks/results] [--name magnetic_tile]

Per category, brightness (mean grey level, 0-255) and contrast (grey std) of four groups: the good
training images, the held-out validation goods (lineside.data.split: never trained on), the good test
images and the defective test images. With a checkpoint, each group is also scored and the report adds:

* I-AUROC of the defects against the good test images (the usual figure), and against the validation
  goods (good parts lit like the training images): a large difference means the goods of the test split
  are not the goods the model was trained on;
* the correlation between a good test image's score and its brightness.

Nothing here changes a model; it explains a result (docs/models.md). Writes OUT/lighting_shift_NAME.json,
.md and .png (brightness histograms per group).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from lineside.atomic import atomic_write_json, atomic_write_text
from lineside.errors import LinesideError
from lineside.train.photometric import GREY_WEIGHTS

GROUPS = ("train good", "validation good", "test good", "test defect")


def _light(samples: list) -> tuple[np.ndarray, np.ndarray]:
    """(brightness, contrast) per image: mean and std of its grey level at full resolution."""
    grey = [sample.load_image().astype(np.float32) @ GREY_WEIGHTS for sample in samples]
    return np.array([g.mean() for g in grey]), np.array([g.std() for g in grey])


def _groups(dataset: Any, category: str) -> dict[str, list]:
    from lineside.data.split import split_validation

    train_good = [s for s in dataset.select(split="train", category=category) if s.label == 0]
    kept, held_out = split_validation(train_good)
    test = dataset.select(split="test", category=category)
    samples = [kept, held_out, [s for s in test if s.label == 0], [s for s in test if s.label == 1]]
    return dict(zip(GROUPS, samples, strict=True))


def _auroc(defect: np.ndarray, good: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if not len(defect) or not len(good):
        return None
    labels = np.r_[np.zeros(len(good)), np.ones(len(defect))]
    return round(100.0 * float(roc_auc_score(labels, np.r_[good, defect])), 2)


def category_report(dataset: Any, category: str, model: Any | None, progress: bool) -> dict[str, Any]:
    """Light (and scores) of the four groups of one category."""
    from lineside.train.evaluate import predict

    report: dict[str, Any] = {"category": category, "groups": {}}
    scores: dict[str, np.ndarray] = {}
    for name, samples in _groups(dataset, category).items():
        brightness, contrast = _light(samples)
        group = {"images": len(samples), "brightness": _summary(brightness), "contrast": _summary(contrast)}
        group["brightness_values"] = [round(float(v), 2) for v in brightness]
        if model is not None and samples:
            scores[name] = predict(model, samples, progress=progress)[0].astype(np.float64)
            group["score"] = _summary(scores[name])
            if name == "test good" and len(samples) > 2:
                group["score_brightness_correlation"] = round(float(np.corrcoef(scores[name], brightness)[0, 1]), 3)
        report["groups"][name] = group
    if scores:
        defect = scores.get("test defect", np.empty(0))
        report["i_auroc_vs_test_good"] = _auroc(defect, scores.get("test good", np.empty(0)))
        report["i_auroc_vs_validation_good"] = _auroc(defect, scores.get("validation good", np.empty(0)))
    return report


def _summary(values: np.ndarray) -> dict[str, float | None]:
    if not len(values):
        return {"mean": None, "std": None}
    return {"mean": round(float(values.mean()), 3), "std": round(float(values.std()), 3)}


def markdown(reports: list[dict[str, Any]]) -> str:
    """One row per (category, group): images, brightness and contrast (mean +- std), score."""
    lines = [
        "| category | group | images | brightness | contrast | score |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]

    def cell(stat: dict[str, Any] | None) -> str:
        return "-" if not stat or stat["mean"] is None else f"{stat['mean']:.1f} +- {stat['std']:.1f}"

    for report in reports:
        for name, group in report["groups"].items():
            score = cell(group.get("score"))
            row = [report["category"], name, str(group["images"]), cell(group["brightness"]), cell(group["contrast"])]
            lines.append("| " + " | ".join([*row, score]) + " |")
    notes = [
        f"- {r['category']}: I-AUROC {r['i_auroc_vs_test_good']} against the good test images, "
        f"{r['i_auroc_vs_validation_good']} against the validation goods; score-brightness correlation on the "
        f"good test images {r['groups']['test good'].get('score_brightness_correlation')}"
        for r in reports
        if "i_auroc_vs_test_good" in r
    ]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def plot(reports: list[dict[str, Any]], path: Path) -> None:
    """Brightness histograms of the four groups, one panel per category."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(reports), figsize=(6 * len(reports), 3.5), squeeze=False)
    for axis, report in zip(axes[0], reports, strict=True):
        for name, group in report["groups"].items():
            if group["brightness_values"]:
                axis.hist(group["brightness_values"], bins=40, range=(0, 255), alpha=0.5, density=True, label=name)
        axis.set(title=report["category"], xlabel="mean grey level", ylabel="density")
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="MVTec-layout data set root")
    parser.add_argument("--checkpoint", type=Path, help="a trained model.pt to score the groups with")
    parser.add_argument("--categories", help="comma-separated (default: the checkpoint's classes, else all)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", help="report name (default: the data folder's name)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    from lineside.data import open_dataset

    dataset = open_dataset(args.data)
    model = None
    if args.checkpoint is not None:
        from lineside.train.checkpoint import load_checkpoint

        model = load_checkpoint(args.checkpoint).model
    categories = args.categories.split(",") if args.categories else None
    categories = categories or [c for c in (model.classes if model is not None else dataset.categories)
                                if c in dataset.categories]  # fmt: skip
    if not categories:
        raise LinesideError(f"{args.data} has none of the categories asked for")
    reports = [category_report(dataset, c, model, not args.quiet) for c in categories]
    name = args.name or args.data.resolve().name
    result = {"data": str(args.data), "checkpoint": str(args.checkpoint) if args.checkpoint else None,
              "categories": reports}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / f"lighting_shift_{name}.json", result)
    table = markdown(reports)
    atomic_write_text(args.out / f"lighting_shift_{name}.md", table)
    plot(reports, args.out / f"lighting_shift_{name}.png")
    print(table, end="")
    return result


if __name__ == "__main__":
    try:
        main()
    except LinesideError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
