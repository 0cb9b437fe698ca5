"""`lineside export`: export a checkpoint to a deploy bundle (fused ONNX at fp32/fp16/int8)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lineside.errors import LinesideError, missing_extra

HELP = "Export a checkpoint to a deploy bundle (fused ONNX at fp32/fp16/int8)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside export`."""
    parser.add_argument("checkpoint", type=Path, help="RUN/model.pt written by 'lineside train'")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32", help="graph precision")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to create")
    parser.add_argument(
        "--data",
        type=Path,
        help="the training data set: its held-out good images + synthetic defects gate the export (required for "
        "int8); its test split, if any, is measured and reported only",
    )
    parser.add_argument("--calib", type=Path, help="good images for INT8 calibration (default: --data's train split)")
    parser.add_argument("--calib-size", type=int, default=64, help="calibration images, stratified (default 64)")
    parser.add_argument(
        "--calib-method", choices=("minmax", "percentile", "entropy"), default="minmax", help="activation ranges"
    )
    parser.add_argument(
        "--max-drop", type=float, default=0.5, help="INT8: largest accepted I-AUROC drop vs FP32, points (0.5)"
    )
    parser.add_argument(
        "--max-pixel-drop", type=float, default=0.5, help="INT8: largest accepted P-AUROC drop vs FP32, points (0.5)"
    )
    parser.add_argument(
        "--max-aupro-drop", type=float, default=1.5, help="INT8: largest accepted AUPRO drop vs FP32, points (1.5)"
    )
    parser.add_argument("--eval-limit", type=int, help="at most this many test images per category")
    parser.add_argument("--dynamic-batch", action="store_true", help="dynamic batch axis (default: static batch 1)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and ONNX Runtime (default 2)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out bundle")


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside export`."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise missing_extra(exc.name or "onnx", "export") from exc
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise missing_extra("torch", "train") from exc
    from lineside.export.pipeline import ExportOptions, export_bundle

    if not args.checkpoint.is_file():
        raise LinesideError(f"checkpoint {args.checkpoint} not found: pass RUN/model.pt written by 'lineside train'")
    for flag, value in (
        ("--calib-size", args.calib_size),
        ("--threads", args.threads),
        ("--eval-limit", args.eval_limit),
    ):
        if value is not None and value < 1:
            raise LinesideError(f"{flag} must be at least 1, got {value}")
    options = ExportOptions(
        out=args.out,
        precision=args.precision,
        data=args.data,
        calib=args.calib,
        calib_size=args.calib_size,
        calib_method=args.calib_method,
        max_drop=args.max_drop,
        max_pixel_drop=args.max_pixel_drop,
        max_aupro_drop=args.max_aupro_drop,
        dynamic_batch=args.dynamic_batch,
        force=args.force,
        eval_limit=args.eval_limit,
        threads=args.threads,
    )
    bundle = export_bundle(args.checkpoint, options)
    print(summary(bundle.path))
    return 0


def summary(bundle_path: Path) -> str:
    """A few lines on what was exported and how it measured."""
    import json

    report = json.loads((bundle_path / "report.json").read_text(encoding="utf-8"))
    parity = report["parity"]
    lines = [
        f"bundle {bundle_path}: {report['model']} ({report['preset']}) {report['precision']}, "
        f"{report['export_seconds']:.1f} s",
        f"  parity ORT fp32 vs torch on {parity['images']} images: map max err {parity['map_max_abs_err_rel']:.2e} "
        f"of range, score max err {parity['score_max_abs_err']:.2e}",
    ]
    if not parity["real_images"]:
        lines.append("  WARNING: no --data: parity ran on random images and accuracy was not measured")
    for split in ("validation", "accuracy"):
        for name, result in report.get(split, {}).items():
            mean = result["mean"]
            lines.append(
                f"  {'test' if split == 'accuracy' else split:<10} {name:<10} I-AUROC {mean['image_auroc']:.4f}  "
                f"P-AUROC {mean.get('pixel_auroc', float('nan')):.4f}  AUPRO {mean.get('aupro', float('nan')):.4f}"
            )
    for name, size in report["file_sizes"].items():
        lines.append(f"  {name}: {size / 1e6:.2f} MB")
    return "\n".join(lines)
