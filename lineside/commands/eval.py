"""`lineside eval`: evaluate a checkpoint: I-AUROC, P-AUROC, AUPRO, AP, F1-max per category."""

from __future__ import annotations

import argparse

from lineside.errors import LinesideError, missing_extra
from lineside.validate import int_arg

HELP = "Evaluate a checkpoint: I-AUROC, P-AUROC, AUPRO, AP, F1-max per category."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside eval`."""
    parser.add_argument("checkpoint", help="RUN/model.pt")
    parser.add_argument("--data", required=True, help="data set folder with a test split")
    parser.add_argument("--category", nargs="+", metavar="C", help="categories (default: the model's classes)")
    parser.add_argument("--json", metavar="OUT", help="write the metrics as JSON to OUT")
    parser.add_argument("--heatmaps", metavar="DIR", help="save overlays of the worst cases to DIR")
    parser.add_argument(
        "--worst", type=int_arg(at_least=1), default=3, help="worst cases per kind and category (default 3)"
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--threads", type=int_arg(at_least=1, at_most=1024), help="CPU threads for torch (default: torch's choice)"
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside eval`."""
    try:
        import torch
    except ImportError as exc:
        raise missing_extra("torch", "train") from exc
    from lineside.atomic import atomic_write_json
    from lineside.data import open_dataset
    from lineside.train.checkpoint import load_checkpoint
    from lineside.train.evaluate import evaluate_model, format_table

    if args.device == "cuda" and not torch.cuda.is_available():
        raise LinesideError("--device cuda: no CUDA GPU is visible to torch; use --device cpu")
    if args.worst < 1:
        raise LinesideError(f"--worst must be >= 1, got {args.worst}")
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_checkpoint(args.checkpoint, map_location=args.device)
    dataset = open_dataset(args.data)
    result = evaluate_model(
        loaded.model, dataset, args.category, device=args.device, heatmap_dir=args.heatmaps, worst=args.worst
    )
    result["checkpoint"] = str(args.checkpoint)
    result["model"] = f"{loaded.model_name}/{loaded.preset}"
    print(format_table(result))
    print(f"{loaded.model_name}/{loaded.preset}, {result['images']} test images, {result['seconds_per_image']} s/image")
    if args.json:
        atomic_write_json(args.json, result)
    return 0
