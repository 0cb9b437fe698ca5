"""Interleaved timing: every round runs every variant once, so a busy machine slows them alike.

A round is one part through the line: decode + resize the camera frame, run every variant on it
(batch 1, in an order rotated each round so no variant always runs first), post-process one result,
decide, drive the actuator. Each variant's end-to-end time in a round is its inference plus that
round's host stages. Larger batches are timed afterwards in rounds of their own.
"""

from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from lineside.export.bench.stages import HostStages
from lineside.export.bench.variants import Outputs, Variant


def _rotated(variants: list[Variant], shift: int) -> list[Variant]:
    shift %= len(variants)
    return variants[shift:] + variants[:shift]


def _one_round(variants: list[Variant], stages: HostStages, index: int, keep: bool) -> None:
    image, host = stages.before()
    batch = np.ascontiguousarray(image[None])  # (1, H, W, 3) uint8
    inference: dict[str, float] = {}
    outputs: dict[str, Outputs] = {}
    for variant in _rotated(variants, index):
        start = time.perf_counter()
        outputs[variant.name] = variant.opened.run(batch)
        inference[variant.name] = (time.perf_counter() - start) * 1000.0
    host.update(stages.after(image, *outputs[variants[0].name], pulse=index % 2 == 0))
    if not keep:
        return
    stages.record(host)
    host_ms = sum(host.values())
    for variant in variants:
        variant.latencies_ms.append(inference[variant.name])
        variant.end_to_end_ms.append(inference[variant.name] + host_ms)


def time_rounds(variants: list[Variant], stages: HostStages, runs: int, warmup: int) -> None:
    """`warmup` untimed rounds, then `runs` timed ones."""
    for index in range(warmup):
        _one_round(variants, stages, index, keep=False)
    for index in tqdm(range(runs), desc="bench", unit="round", leave=False):
        _one_round(variants, stages, index, keep=True)


def time_batches(variants: list[Variant], image: np.ndarray, sizes: tuple[int, ...], runs: int) -> None:
    """Per batch size above 1: one warm-up batch per variant that accepts it, then `runs` interleaved rounds."""
    for size in (s for s in sizes if s > 1):
        chosen = [v for v in variants if v.accepts(size)]
        if not chosen:
            continue
        batch = np.ascontiguousarray(np.repeat(image[None], size, axis=0))  # (B, H, W, 3) uint8
        for variant in chosen:
            variant.opened.run(batch)
            variant.batch_ms[size] = []
        for index in tqdm(range(runs), desc=f"batch {size}", unit="round", leave=False):
            for variant in _rotated(chosen, index):
                start = time.perf_counter()
                variant.opened.run(batch)
                variant.batch_ms[size].append((time.perf_counter() - start) * 1000.0)
