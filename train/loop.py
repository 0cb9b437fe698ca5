"""One training loop for every model: stages, AdamW, warm-up + cosine, AMP (CUDA), checkpoints, resume, DDP.

The loop iterates `model.training_stages()`; only the stage's parameters train. Randomness is
derived from (seed, stage, epoch), so a resumed run continues exactly like an uninterrupted one,
and CPU runs are deterministic. Under `torchrun` (WORLD_SIZE > 1) the stage step is wrapped in
DistributedDataParallel and each rank gets its DistributedSampler shard.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from lineside.atomic import atomic_write_text
from lineside.errors import LinesideError
from lineside.train.checkpoint import read_checkpoint, save_checkpoint
from lineside.train.features import PreparedSet, TrainData, prepare
from lineside.train.models.base import AnomalyModel, TrainBatch, TrainingStage
from lineside.train.preprocess import Preprocess
from lineside.train.synthesis import DefectSynthesizer

EvalFn = Callable[[AnomalyModel], dict[str, Any]]


@dataclass(frozen=True)
class LoopOptions:
    """How to train (the model's config says what)."""

    out_dir: Path
    seed: int = 0
    device: str = "cpu"
    epochs: int | None = None  # overrides the first (main) stage's epochs
    eval_every: int = 0  # epochs between periodic evaluations (0: only at the end)
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    resume: bool = False
    progress: bool = True
    synthesizer: DefectSynthesizer = field(default_factory=DefectSynthesizer)


@dataclass
class TrainResult:
    """What `fit` did: per-epoch log records, wall time and the final metrics."""

    history: list[dict[str, Any]]
    seconds: float
    metrics: dict[str, Any]


class _StageStep(nn.Module):
    """Wraps a stage's loss as a module so DistributedDataParallel can hook its backward."""

    def __init__(self, model: AnomalyModel, loss: Callable[[TrainBatch], dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, batch: TrainBatch) -> dict[str, torch.Tensor]:
        return self.loss(batch)


def _distributed() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torchrun."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def warmup_cosine(total_steps: int, warmup_fraction: float, floor: float = 0.01) -> Callable[[int], float]:
    """LR multiplier: linear warm-up over `warmup_fraction` of the steps, then cosine down to `floor`."""
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _epoch_indices(n: int, seed: int, stage: int, epoch: int, batch_size: int) -> Iterator[torch.Tensor]:
    """This rank's shuffled batches of one epoch (DistributedSampler shard under torchrun)."""
    rank, world = _distributed()
    if world > 1:
        sampler = torch.utils.data.DistributedSampler(range(n), world, rank, shuffle=True, seed=seed + 1000 * stage)
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler))
    else:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + 1000 * stage + epoch))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _stage_epochs(stages: list[TrainingStage], options: LoopOptions) -> list[int]:
    epochs = [s.epochs for s in stages]
    if options.epochs is not None:
        if options.epochs < 1:
            raise LinesideError(f"--epochs must be >= 1, got {options.epochs}")
        epochs[0] = options.epochs
    return epochs


def _resume_point(options: LoopOptions, model: AnomalyModel) -> dict[str, Any] | None:
    path = options.out_dir / "model.pt"
    if not options.resume:
        return None
    if not path.is_file():
        raise LinesideError(f"--resume: no checkpoint at {path}: train without --resume first")
    data = read_checkpoint(path)
    if data["model_name"] != model.name or data["classes"] != model.classes:
        raise LinesideError(f"--resume: {path} was trained for another model or class list: use a new --out")
    model.load_state_dict(data["state_dict"], strict=True)
    return data["train_state"]


def _write_log(out_dir: Path, history: list[dict[str, Any]]) -> None:
    import json

    atomic_write_text(out_dir / "train_log.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in history))


def fit(model: AnomalyModel, data: TrainData, options: LoopOptions, eval_fn: EvalFn | None = None) -> TrainResult:
    """Train `model` on `data` through all its stages; writes OUT/model.pt and OUT/train_log.jsonl."""
    started = time.perf_counter()
    device = torch.device(options.device)
    rank, _ = _distributed()
    torch.manual_seed(options.seed)
    model.to(device)
    state = _resume_point(options, model) or {"stage": 0, "epoch": 0, "history": [], "done": False}
    prepared = prepare(model, data, seed=options.seed, device=device, synthesizer=options.synthesizer,
                       progress=options.progress and rank == 0)  # fmt: skip
    stages = model.training_stages()
    epochs = _stage_epochs(stages, options)
    history: list[dict[str, Any]] = list(state["history"])
    for index, stage in enumerate(stages):
        if index < state["stage"]:
            continue
        first_epoch = state["epoch"] if index == state["stage"] else 0
        opt_state = state.get("optimizer") if index == state["stage"] else None
        _run_stage(model, prepared, stage, index, epochs[index], first_epoch, opt_state, options, history, eval_fn)
    metrics = eval_fn(model) if eval_fn is not None and rank == 0 else {}
    if rank == 0:
        final_state = {"stage": len(stages), "epoch": 0, "history": history, "done": True}
        save_checkpoint(options.out_dir / "model.pt", model, metrics=metrics, train_state=final_state)
        _write_log(options.out_dir, history)
    return TrainResult(history, time.perf_counter() - started, metrics)


def _run_stage(
    model: AnomalyModel,
    prepared: PreparedSet,
    stage: TrainingStage,
    index: int,
    n_epochs: int,
    first_epoch: int,
    opt_state: dict[str, Any] | None,
    options: LoopOptions,
    history: list[dict[str, Any]],
    eval_fn: EvalFn | None,
) -> None:
    """Train one stage from `first_epoch`, saving a resumable checkpoint after every epoch."""
    device = torch.device(options.device)
    rank, world = _distributed()
    trainable = {id(p) for p in stage.parameters}
    for param in model.parameters():
        param.requires_grad_(id(param) in trainable)
    step_module: nn.Module = _StageStep(model, stage.loss)
    if world > 1:
        step_module = nn.parallel.DistributedDataParallel(step_module)
    optimizer = torch.optim.AdamW(stage.parameters, lr=stage.lr, weight_decay=options.weight_decay)
    batch_size = int(getattr(model.config, "batch_size", 8))
    steps_per_epoch = math.ceil(math.ceil(len(prepared) / world) / batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(n_epochs * steps_per_epoch, options.warmup_fraction)
    )
    if opt_state is not None:
        optimizer.load_state_dict(opt_state["optimizer"])
        scheduler.load_state_dict(opt_state["scheduler"])
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    preprocess = Preprocess(model.mean, model.std).to(device)
    for epoch in range(first_epoch, n_epochs):
        tick = time.perf_counter()
        model.train()
        torch.manual_seed(options.seed * 7919 + 1000 * index + epoch + 17 * rank)
        variant = epoch % max(1, prepared.variants)
        sums: dict[str, float] = {}
        batches = list(_epoch_indices(len(prepared), options.seed, index, epoch, batch_size))
        bar = tqdm(batches, desc=f"{stage.name} {epoch + 1}/{n_epochs}", disable=not options.progress or rank != 0)
        for indices in bar:
            batch = prepared.batch(indices, variant, preprocess, device)
            autocast = (
                torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else contextlib.nullcontext()
            )
            with autocast:
                losses = step_module(batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(losses["loss"]).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            bar.set_postfix(loss=f"{float(losses['loss'].detach()):.4f}")
        record: dict[str, Any] = {"stage": stage.name, "epoch": epoch + 1, "lr": scheduler.get_last_lr()[0]}
        record.update({k: v / max(1, len(batches)) for k, v in sums.items()})
        record["seconds"] = round(time.perf_counter() - tick, 2)
        if eval_fn is not None and rank == 0 and options.eval_every and (epoch + 1) % options.eval_every == 0:
            record["eval"] = eval_fn(model)
        history.append(record)
        if rank == 0:
            opt = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
            state = {"stage": index, "epoch": epoch + 1, "history": history, "optimizer": opt, "done": False}
            save_checkpoint(options.out_dir / "model.pt", model, train_state=state)
            _write_log(options.out_dir, history)
    for param in stage.parameters:
        param.requires_grad_(False)
