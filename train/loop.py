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
from lineside.train.photometric import LOOK_SEED
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


def _epoch_looks(n: int, looks: int, seed: int, stage: int, epoch: int) -> torch.Tensor | None:
    """Which photometric look (0: the image itself) each image is seen in this epoch; None without looks."""
    if looks == 0:
        return None
    generator = torch.Generator().manual_seed(seed * 7919 + 1000 * stage + epoch + LOOK_SEED)
    return torch.randint(0, looks + 1, (n,), generator=generator)


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
        if not stages:
            raise LinesideError("this model trains no epochs (it builds a memory bank): leave out --epochs")
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
    if not state["done"] and (record := model.fit_memory(prepared, options.seed, options.progress and rank == 0)):
        history.append(record)
    for index, stage in enumerate(stages):
        if index < state["stage"]:
            continue
        runner = _Stage(model, prepared, stage, index, epochs[index], options)
        first_epoch = 0
        if index == state["stage"] and state.get("optimizer") is not None:
            runner.load_state(state["optimizer"])
            first_epoch = state["epoch"]
        _run_stage(runner, first_epoch, history, eval_fn)
    if not state["done"] and (record := model.fit_statistics(prepared, options.progress and rank == 0)):
        history.append(record)
    metrics = eval_fn(model) if eval_fn is not None and rank == 0 else {}
    if rank == 0:
        final_state = {"stage": len(stages), "epoch": 0, "history": history, "done": True}
        save_checkpoint(options.out_dir / "model.pt", model, metrics=metrics, train_state=final_state)
        _write_log(options.out_dir, history)
    return TrainResult(history, time.perf_counter() - started, metrics)


@dataclass
class _Stage:
    """Optimiser, schedule and step module of one stage; `epoch()` trains one epoch."""

    model: AnomalyModel
    prepared: PreparedSet
    stage: TrainingStage
    index: int
    n_epochs: int
    options: LoopOptions
    step_module: nn.Module = field(init=False)
    optimizer: torch.optim.Optimizer = field(init=False)
    scheduler: torch.optim.lr_scheduler.LambdaLR = field(init=False)

    def __post_init__(self) -> None:
        self.device = torch.device(self.options.device)
        self.rank, world = _distributed()
        trainable = {id(p) for p in self.stage.parameters}
        for param in self.model.parameters():
            param.requires_grad_(id(param) in trainable)
        step: nn.Module = _StageStep(self.model, self.stage.loss)
        self.step_module = nn.parallel.DistributedDataParallel(step) if world > 1 else step
        self.optimizer = torch.optim.AdamW(
            self.stage.parameters, lr=self.stage.lr, weight_decay=self.options.weight_decay
        )
        self.batch_size = int(getattr(self.model.config, "batch_size", 8))
        steps = self.n_epochs * math.ceil(math.ceil(len(self.prepared) / world) / self.batch_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(steps, self.options.warmup_fraction)
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda")
        self.preprocess = Preprocess(self.model.mean, self.model.std).to(self.device)

    def load_state(self, opt_state: dict[str, Any]) -> None:
        """Restore optimiser and schedule (resume)."""
        self.optimizer.load_state_dict(opt_state["optimizer"])
        self.scheduler.load_state_dict(opt_state["scheduler"])

    def _step(self, batch: TrainBatch) -> dict[str, torch.Tensor]:
        autocast = (
            torch.autocast("cuda", dtype=torch.float16) if self.device.type == "cuda" else contextlib.nullcontext()
        )
        with autocast:
            losses = self.step_module(batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["loss"]).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {k: v.detach() for k, v in losses.items()}

    def epoch(self, epoch: int) -> dict[str, Any]:
        """Train one epoch; returns its log record (mean losses, lr, seconds)."""
        tick = time.perf_counter()
        self.model.train()
        torch.manual_seed(self.options.seed * 7919 + 1000 * self.index + epoch + 17 * self.rank)
        variant = epoch % max(1, self.prepared.variants)
        batches = list(_epoch_indices(len(self.prepared), self.options.seed, self.index, epoch, self.batch_size))
        looks = _epoch_looks(len(self.prepared), self.prepared.looks, self.options.seed, self.index, epoch)
        desc = f"{self.stage.name} {epoch + 1}/{self.n_epochs}"
        sums: dict[str, float] = {}
        for indices in (bar := tqdm(batches, desc=desc, disable=not self.options.progress or self.rank != 0)):
            batch_looks = None if looks is None else looks[indices]
            losses = self._step(self.prepared.batch(indices, variant, self.preprocess, self.device, batch_looks))
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + float(value)
            bar.set_postfix(loss=f"{float(losses['loss']):.4f}")
        record: dict[str, Any] = {"stage": self.stage.name, "epoch": epoch + 1, "lr": self.scheduler.get_last_lr()[0]}
        record.update({k: v / max(1, len(batches)) for k, v in sums.items()})
        record["seconds"] = round(time.perf_counter() - tick, 2)
        return record

    def state(self, epoch: int, history: list[dict[str, Any]]) -> dict[str, Any]:
        """Resumable training state after `epoch` epochs of this stage."""
        opt = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        return {"stage": self.index, "epoch": epoch, "history": history, "optimizer": opt, "done": False}


def _run_stage(runner: _Stage, first_epoch: int, history: list[dict[str, Any]], eval_fn: EvalFn | None) -> None:
    """Train one stage from `first_epoch`, saving a resumable checkpoint after every epoch."""
    options = runner.options
    for epoch in range(first_epoch, runner.n_epochs):
        record = runner.epoch(epoch)
        if eval_fn is not None and runner.rank == 0 and options.eval_every and (epoch + 1) % options.eval_every == 0:
            record["eval"] = eval_fn(runner.model)
        history.append(record)
        if runner.rank == 0:
            save_checkpoint(options.out_dir / "model.pt", runner.model, train_state=runner.state(epoch + 1, history))
            _write_log(options.out_dir, history)
    for param in runner.stage.parameters:
        param.requires_grad_(False)
