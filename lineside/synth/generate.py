"""Write a synthetic data set in MVTec-AD layout, atomically, with a preview contact sheet."""

from __future__ import annotations

import functools
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lineside import __version__
from lineside.atomic import atomic_directory, atomic_write_json
from lineside.errors import LinesideError
from lineside.synth.preview import contact_sheet
from lineside.synth.scene import CATEGORIES, GOOD, RenderedSample, render_sample

PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
PREVIEW_NAME = "preview.png"
META_NAME = "synth.json"


@dataclass(frozen=True)
class SynthSummary:
    """What `generate_dataset` wrote: per category, the number of images per split/type folder."""

    root: Path
    categories: tuple[str, ...]
    counts: dict[str, dict[str, int]]  # category -> {"train/good": n, "test/good": n, "test/<type>": n}
    seed: int
    size: int
    seconds: float

    @property
    def n_images(self) -> int:
        """Total number of images written."""
        return sum(sum(c.values()) for c in self.counts.values())

    def line(self) -> str:
        """One-line human summary."""
        cats = ", ".join(self.categories)
        return (
            f"wrote {self.n_images} images ({len(self.categories)} categories: {cats}) of {self.size}x{self.size} px, "
            f"seed {self.seed}, to {self.root} in {self.seconds:.1f} s"
        )


def resolve_categories(categories: int | str | Sequence[str] | None) -> tuple[str, ...]:
    """Category names from None (all), a count N (the first N) or names (comma string or list)."""
    known = tuple(CATEGORIES)
    if categories is None:
        return known
    if isinstance(categories, int):
        if not 1 <= categories <= len(known):
            raise LinesideError(f"--categories must be 1..{len(known)} or names from {', '.join(known)}")
        return known[:categories]
    names = categories.split(",") if isinstance(categories, str) else list(categories)
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in CATEGORIES]
    if unknown or not names:
        raise LinesideError(f"unknown synthetic categories {unknown or names}: choose from {', '.join(known)}")
    return tuple(dict.fromkeys(names))


def plan(category: str, n_train: int, n_test_good: int, n_test_defect: int) -> list[tuple[str, str, int]]:
    """(split, defect_type, index) of every image of a category; defects cycle through the category's types."""
    jobs = [("train", GOOD, i) for i in range(n_train)] + [("test", GOOD, i) for i in range(n_test_good)]
    types = CATEGORIES[category].defect_types
    per_type = [0] * len(types)
    for k in range(n_test_defect):
        t = k % len(types)
        jobs.append(("test", types[t], per_type[t]))
        per_type[t] += 1
    return jobs


def _write_png(path: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", image, PNG_PARAMS)
    if not ok:
        raise RuntimeError(f"PNG encoding failed for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.tobytes())


def _write_sample(root: Path, category: str, split: str, kind: str, index: int, sample: RenderedSample) -> None:
    stem = f"{index:03d}"
    _write_png(root / category / split / kind / f"{stem}.png", sample.image)
    if kind != GOOD:
        mask = sample.mask.astype(np.uint8) * 255
        _write_png(root / category / "ground_truth" / kind / f"{stem}_mask.png", mask)


def _check_args(out: Path, force: bool, counts: tuple[int, int, int], size: int) -> None:
    if out.exists() and not out.is_dir():
        raise LinesideError(f"{out} exists and is not a folder: choose another OUT")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise LinesideError(f"{out} is not empty: choose another OUT or pass --force to replace it")
    if min(counts) < 0 or counts[0] < 1:
        raise LinesideError("image counts must be >= 0 and --train >= 1")
    if not 64 <= size <= 2048:
        raise LinesideError(f"--size {size} is out of range: use 64..2048 px")


Job = tuple[str, str, str, int]  # category, split, defect type, index
Example = tuple[str, np.ndarray, np.ndarray]  # label, image, mask
POOL_MIN_JOBS = 120  # below this, starting worker processes costs more than it saves


def _is_example(split: str, index: int) -> bool:
    return (split == "test" and index == 0) or (split == "train" and index < 2)


def _render_and_write(staging: Path, seed: int, size: int, job: Job) -> Example | None:
    """Render one job and write its files; returns the preview example if this job is one."""
    category, split, kind, index = job
    sample = render_sample(category, seed, split, kind, index, size)
    _write_sample(staging, category, split, kind, index, sample)
    return (kind, sample.image, sample.mask) if _is_example(split, index) else None


def _worker_init() -> None:
    cv2.setNumThreads(1)  # one process per core already


def _run_jobs(staging: Path, seed: int, size: int, jobs: list[Job], workers: int) -> Iterator[Example | None]:
    """Results in job order; in worker processes (spawned, so safe beside torch) for large sets."""
    task = functools.partial(_render_and_write, staging, seed, size)
    if workers <= 1 or len(jobs) < POOL_MIN_JOBS:
        yield from map(task, jobs)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
        yield from pool.map(task, jobs, chunksize=8)


def default_workers() -> int:
    """Worker processes used by default: the CPU count, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def generate_dataset(
    out: str | Path,
    *,
    categories: int | str | Sequence[str] | None = None,
    seed: int = 0,
    n_train: int = 60,
    n_test_good: int = 20,
    n_test_defect: int = 20,
    size: int = 256,
    force: bool = False,
    progress: bool = True,
    workers: int | None = None,
) -> SynthSummary:
    """Generate the synthetic data set into `out` (MVTec-AD layout); same arguments -> byte-identical files.

    Every image is a pure function of (seed, category, split, type, index), so the output does not
    depend on `workers` (default: `default_workers()`; 1 renders in this process).
    """
    from tqdm import tqdm

    out = Path(out)
    names = resolve_categories(categories)
    _check_args(out, force, (n_train, n_test_good, n_test_defect), size)
    started = time.perf_counter()
    jobs: list[Job] = [(c, *job) for c in names for job in plan(c, n_train, n_test_good, n_test_defect)]
    counts: dict[str, dict[str, int]] = {c: {} for c in names}
    examples: dict[str, list[Example]] = {c: [] for c in names}
    n_workers = default_workers() if workers is None else workers
    with atomic_directory(out, overwrite=True) as staging:
        bar = tqdm(total=len(jobs), desc="synth", unit="img", disable=not progress)
        for job, example in zip(jobs, _run_jobs(staging, seed, size, jobs, n_workers), strict=True):
            bar.update()
            category, split, kind, _ = job
            counts[category][f"{split}/{kind}"] = counts[category].get(f"{split}/{kind}", 0) + 1
            if example is not None:
                label = example[0] if examples[category] else f"{category}: {example[0]}"
                examples[category].append((label, example[1], example[2]))
        bar.close()
        _write_png(staging / PREVIEW_NAME, contact_sheet([examples[c] for c in names]))
        meta = {"generator": f"lineside {__version__}", "seed": seed, "size": size, "counts": counts}
        atomic_write_json(staging / META_NAME, meta)
    return SynthSummary(out, names, counts, seed, size, time.perf_counter() - started)
