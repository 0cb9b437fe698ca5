"""`lineside train`: train a CRR, RLR or PatchCore model on good images (multi-class)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from lineside.errors import LinesideError, missing_extra
from lineside.validate import int_arg

COUNT, SEED = int_arg(at_least=1), int_arg(at_least=0)  # --epochs/--threads, --seed/--eval-every

HELP = "Train a CRR, RLR or PatchCore model on good images (multi-class)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside train`."""
    parser.add_argument("--data", required=True, help="data set folder (MVTec layout, VisA or plain folder)")
    parser.add_argument("--model", choices=["crr", "rlr", "patchcore"], required=True)
    parser.add_argument("--out", required=True, help="run folder: model.pt, metrics.json, train_log.jsonl")
    parser.add_argument("--category", nargs="+", metavar="C", help="categories to train on (default: all)")
    parser.add_argument("--preset", choices=["tiny", "edge", "paper"], default="edge", help="default: edge")
    parser.add_argument("--epochs", type=COUNT, help="epochs of the main stage (default: the preset's)")
    parser.add_argument("--seed", type=SEED, default=0)
    parser.add_argument("--backbone-weights", metavar="PATH", help="encoder weights file (DINOv2, WideResNet50)")
    parser.add_argument("--random-init-backbone", action="store_true", help="random encoder weights (tests only)")
    parser.add_argument("--textures", metavar="DIR", help="texture images for synthetic defects (e.g. DTD)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--eval-every", type=SEED, default=0, metavar="N", help="evaluate every N epochs (0: at end)")
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation on the test split")
    parser.add_argument("--threads", type=COUNT, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument(
        "--val-fraction", type=float, default=0.1, metavar="F",
        help="good training images held out per category for export's accuracy gates (default 0.1, 2..40 each)",
    )  # fmt: skip


def _setup_distributed(device: str) -> str:
    """Join the torchrun process group if WORLD_SIZE > 1; returns this process's device."""
    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    torch.distributed.init_process_group("nccl" if device == "cuda" else "gloo")
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def _check_args(args: argparse.Namespace, out: Path) -> None:
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise LinesideError("--device cuda: no CUDA GPU is visible to torch; use --device cpu")
    if (out / "model.pt").exists() and not args.resume:
        raise LinesideError(f"{out} already holds model.pt: pass --resume to continue it or choose a new --out")
    if args.threads is not None and args.threads < 1:
        raise LinesideError(f"--threads must be >= 1, got {args.threads}")
    if not 0.0 <= args.val_fraction < 1.0:  # also refuses NaN
        raise LinesideError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside train`."""
    try:
        import torch
    except ImportError as exc:
        raise missing_extra("torch", "train") from exc
    from lineside.train.runner import TrainRequest, train_run

    out = Path(args.out)
    _check_args(args, out)
    if args.threads:
        torch.set_num_threads(args.threads)
    request = TrainRequest(
        data=Path(args.data), model=args.model, out=out, categories=args.category, preset=args.preset,
        epochs=args.epochs, seed=args.seed, backbone_weights=args.backbone_weights,
        random_init_backbone=args.random_init_backbone, textures=args.textures, resume=args.resume,
        device=_setup_distributed(args.device), eval_every=args.eval_every, evaluate=not args.no_eval,
        val_fraction=args.val_fraction,
    )  # fmt: skip
    summary: dict[str, Any] = train_run(request)
    if summary["rank"] == 0:
        print(summary["report"])
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0
