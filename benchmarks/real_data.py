"""Every model on every real data set, in one run: each set alone and one unified model over all of them.

    python benchmarks/real_data.py [--models patchcore,crr,rlr] [--sets magnetic_tile,deeppcb] [--seeds 0,1]
                                   [--unified | --no-unified] [--preset edge] [--out benchmarks/results]

A cell is (training set, model, seed): train with `lineside train`'s own code (same preset, so the
same backbone and resolution for every model), evaluate on the test split of every set it was
trained on (I-AUROC, P-AUROC, AUPRO, I-AP per category and their mean), export ORT INT8 U8S8 and
time it at batch 1 on --threads threads, and save heatmap sheets of the worst misses. Each finished
part of a cell is cached in WORK/<cell>/, so an interrupted run continues where it stopped.
Writes OUT/real_data.json (top-level `rows`, one per training set x evaluated set x model x
category, `mean` = that set's mean) and OUT/real_data.md, and prints the table.
Sets are found under ../shared/data (relative to the repository); `--set NAME=PATH` adds or moves one.
Nothing here reads a test image to choose anything: every model runs its preset as shipped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from lineside.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from lineside.errors import LinesideError

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
REAL_SETS = {"magnetic_tile": SHARED_DATA / "magnetic_tile", "deeppcb": SHARED_DATA / "deeppcb"}
MODELS = ("patchcore", "crr", "rlr")
METRICS = (("i_auroc", "image_auroc"), ("p_auroc", "pixel_auroc"), ("aupro", "aupro"), ("i_ap", "image_ap"))
LATENCY_WARMUP, LATENCY_RUNS = 5, 30
WORST = 3  # heatmaps per kind (missed defects, highest goods) and category


def category_dirs(path: Path) -> dict[str, Path]:
    """Category name -> its MVTec folder (holding train/ and test/), for a set root or a category folder."""
    from lineside.data import open_dataset

    dataset = open_dataset(path, layout="mvtec")
    return {c: (path / c if (path / c / "train").is_dir() else path) for c in dataset.categories}


def unified_root(sets: dict[str, Path], work: Path) -> Path:
    """A folder of links to every set's category folders: one MVTec root for the unified model."""
    root = work / "unified_data"
    root.mkdir(parents=True, exist_ok=True)
    for name, path in sets.items():
        for category, folder in category_dirs(path).items():
            link = root / category
            if link.is_symlink() and link.resolve() != folder.resolve():
                raise LinesideError(f"category {category} of set {name} clashes with another set's category")
            if not link.is_symlink():
                link.symlink_to(folder.resolve(), target_is_directory=True)
    return root


def train_cell(data: Path, model: str, seed: int, args: argparse.Namespace, run: Path) -> dict[str, Any]:
    """Train (or resume) one run; returns the trainer's summary (cached in run/summary.json)."""
    from lineside.train.runner import TrainRequest, train_run

    cached = run / "summary.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    request = TrainRequest(data=data, model=model, out=run, preset=args.preset, seed=seed, evaluate=False,
                           resume=(run / "model.pt").is_file(), progress=not args.quiet)  # fmt: skip
    started = time.perf_counter()
    summary = train_run(request)
    summary = {k: v for k, v in summary.items() if k not in ("report", "eval")}
    summary["train_seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_json(cached, summary)
    return summary


def heatmap_sheet(folder: Path, out: Path, scale: float = 0.5) -> Path | None:
    """Stack the overlays `evaluate_model` wrote into one PNG (rows: missed defects, then highest goods)."""
    pictures = [cv2.imread(str(p)) for p in sorted(folder.glob("*.png"), key=lambda p: ("high_good" in p.name, p))]
    pictures = [
        cv2.resize(p, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for p in pictures if p is not None
    ]
    if not pictures:
        return None
    ok, png = cv2.imencode(".png", np.concatenate(pictures, axis=0))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode the heatmap sheet {out}")
    atomic_write_bytes(out, png.tobytes())
    return out


def evaluate_cell(checkpoint: Path, sets: dict[str, Path], names: list[str], cell: Path, sheets: Path,
                  label: str, quiet: bool) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Metrics of the trained model on each set's test split (its own categories); heatmap sheets per set."""
    from lineside.data import open_dataset
    from lineside.train.checkpoint import load_checkpoint
    from lineside.train.evaluate import evaluate_model

    model = load_checkpoint(checkpoint).model
    results = {}
    for name in names:
        dataset = open_dataset(sets[name], layout="mvtec")
        folder = cell / "heatmaps" / name
        results[name] = evaluate_model(model, dataset, dataset.categories, heatmap_dir=folder, worst=WORST,
                                       progress=not quiet)  # fmt: skip
        heatmap_sheet(folder, sheets / f"{label}_on_{name}.png")
    return results


def int8_latency(checkpoint: Path, data: Path, cell: Path, threads: int) -> dict[str, Any]:
    """Export INT8 (the export's own gates) and time the U8S8 graph with ORT at batch 1; or why it failed."""
    from lineside.cli import main as lineside
    from lineside.export.ort_run import cpu_session

    bundle = cell / "int8"
    if not (bundle / "model_cpu.onnx").is_file():
        command = ["export", str(checkpoint), "--precision", "int8", "--data", str(data), "--out", str(bundle),
                   "--threads", str(threads), "--eval-limit", "20", "--force"]  # fmt: skip
        if lineside(command) != 0:
            return {"int8_u8s8_ms": None, "int8_error": "lineside export --precision int8 refused (see its log)"}
    session = cpu_session(bundle / "model_cpu.onnx", threads=threads)
    shape = session.get_inputs()[0].shape
    image = np.random.default_rng(0).integers(0, 256, (1, shape[1], shape[2], 3), dtype=np.uint8)
    name, times = session.get_inputs()[0].name, []
    for index in range(LATENCY_WARMUP + LATENCY_RUNS):
        tick = time.perf_counter()
        session.run(None, {name: image})
        if index >= LATENCY_WARMUP:
            times.append(1000 * (time.perf_counter() - tick))
    return {"int8_u8s8_ms": round(statistics.median(times), 2), "int8_threads": threads}


def cell_rows(key: dict[str, Any], results: dict[str, dict[str, Any]], extra: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per evaluated set x category plus the set's mean; metrics in percent."""
    rows = []
    for dataset, result in results.items():
        per = [*result["categories"].items(), ("mean", result["mean"])]
        for category, metrics in per:
            row = {**key, "dataset": dataset, "category": category}
            row.update({out: _percent(metrics.get(src)) for out, src in METRICS})
            rows.append({**row, **extra})
    return rows


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100.0 * float(value), 2)


def run_cell(trained_on: str, model: str, seed: int, sets: dict[str, Path], args: argparse.Namespace) -> list[dict]:
    """Train, evaluate and time one (training set, model, seed) cell; each part cached in WORK/<cell>/."""
    cell = args.work / trained_on / model / f"seed{seed}"
    data = unified_root(sets, args.work) if trained_on == "unified" else sets[trained_on]
    checkpoint = cell / "run" / "model.pt"
    evaluated = cell / "eval.json"
    if not evaluated.is_file():
        names = list(sets) if trained_on == "unified" else [trained_on]
        summary = train_cell(data, model, seed, args, cell / "run")
        label = f"{trained_on}_{model}_s{seed}"
        results = evaluate_cell(checkpoint, sets, names, cell, cell / "sheets", label, args.quiet)
        extra = {"preset": args.preset, "train_seconds": summary["train_seconds"]}
        extra["train_images"] = summary["train_images"]
        rows = cell_rows({"trained_on": trained_on, "model": model, "seed": seed}, results, extra)
        atomic_write_json(evaluated, {"rows": rows})
    rows = json.loads(evaluated.read_text())["rows"]
    for sheet in (cell / "sheets").glob("*.png"):
        (args.out / "real_data_heatmaps").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sheet, args.out / "real_data_heatmaps" / sheet.name)
    timed = cell / "latency.json"
    if args.latency and not timed.is_file():
        atomic_write_json(timed, int8_latency(checkpoint, data, cell, args.threads))
    latency = json.loads(timed.read_text()) if timed.is_file() else {"int8_u8s8_ms": None}
    return [{**row, **latency} for row in rows]


def _cell(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(rows: list[dict[str, Any]], notes: list[str]) -> str:
    """Headline (set means, mean and spread over seeds) and the per-category table."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        if row["category"] == "mean":
            groups.setdefault((row["dataset"], row["trained_on"], row["model"]), []).append(row)
    lines = ["# Real data: every model on every set", "", "Set means, percent; seeds: mean (max - min).", ""]
    lines += ["| evaluated on | trained on | model | seeds | I-AUROC | P-AUROC | AUPRO | I-AP | train s | INT8 ms |"]
    lines += ["| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (dataset, trained_on, model), group in sorted(groups.items()):
        cells = [dataset, trained_on, model, ",".join(str(r["seed"]) for r in group)]
        for key, _ in METRICS:
            values = [r[key] for r in group if r[key] is not None]
            spread = f" ({max(values) - min(values):.1f})" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.1f}{spread}" if values else "-")
        cells += [_cell(group[0]["train_seconds"], 0), _cell(group[0]["int8_u8s8_ms"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Per category", "", "| evaluated on | category | trained on | model | seed | I-AUROC | P-AUROC |"
              " AUPRO | I-AP |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in sorted(rows, key=lambda r: (r["dataset"], r["category"], r["trained_on"], r["model"], r["seed"])):
        metrics = [_cell(r[k]) for k, _ in METRICS]
        lines.append(f"| {r['dataset']} | {r['category']} | {r['trained_on']} | {r['model']} | {r['seed']} | "
                     + " | ".join(metrics) + " |")  # fmt: skip
    return "\n".join([*lines, "", *(f"- {note}" for note in notes)]).rstrip() + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from lineside.bench_options import parse_choices

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated (default: all three)")
    parser.add_argument("--sets", help="comma-separated set names (default: every set present)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=PATH", help="add or move a data set")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    parser.add_argument("--unified", action=argparse.BooleanOptionalAction, default=True,
                        help="also train one model over all selected sets (default: yes)")  # fmt: skip
    parser.add_argument("--unified-only", action="store_true", help="only the unified cells, no per-set cells")
    parser.add_argument("--preset", default="edge", help="every model's preset (default: edge)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "lineside_real_data",
                        help="runs and the per-cell cache (default: TMPDIR/lineside_real_data)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="torch and ORT threads (default: 1)")
    parser.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True, help="time ORT INT8")
    parser.add_argument("--quiet", action="store_true", help="no per-step progress bars")
    parser.add_argument("--cached-only", action="store_true", help="tabulate finished cells only; train nothing")
    parser.add_argument("--note", action="append", default=[], help="a line for the notes under the table")
    args = parser.parse_args(argv)
    args.models = parse_choices(args.models, MODELS, "--models")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError as exc:
        raise LinesideError(f"--seeds takes comma-separated integers, got {args.seeds!r}") from exc
    known = dict(REAL_SETS)
    for spec in args.set:
        name, _, path = spec.partition("=")
        if not name or not path:
            raise LinesideError(f"--set wants NAME=PATH, got {spec!r}")
        known[name] = Path(path)
    wanted = args.sets.split(",") if args.sets else [n for n, p in known.items() if p.is_dir()]
    missing = [n for n in wanted if n not in known or not known[n].is_dir()]
    if missing or not wanted:
        raise LinesideError(
            f"data set(s) not found: {', '.join(missing) or 'none present'} (known: {', '.join(known)})"
        )
    args.data_sets = {n: known[n] for n in wanted}
    if args.unified_only and (len(wanted) < 2 or not args.unified):
        raise LinesideError("--unified-only needs --unified and at least two data sets")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except LinesideError as exc:
        print(f"real_data.py: error: {exc}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    sets: dict[str, Path] = args.data_sets
    trained_on = [*([] if args.unified_only else sets), *(["unified"] if args.unified and len(sets) > 1 else [])]
    cells = [(t, m, s) for s in args.seeds for t in trained_on for m in args.models]
    rows: list[dict[str, Any]] = []
    missing: list[str] = []
    for t, m, s in tqdm(cells, desc="cells", unit="cell"):
        if args.cached_only and not (args.work / t / m / f"seed{s}" / "eval.json").is_file():
            missing.append(f"{t}/{m}/seed {s}")
            continue
        tqdm.write(f"== {t} / {m} / seed {s}")
        rows += run_cell(t, m, s, sets, args)
        write_results(rows, sets, args, missing)  # after every cell: an interrupted run still leaves its table
    print(write_results(rows, sets, args, missing))
    return 0


def write_results(
    rows: list[dict[str, Any]], sets: dict[str, Path], args: argparse.Namespace, missing: list[str]
) -> str:
    """OUT/real_data.json and OUT/real_data.md; returns the markdown."""
    notes = [f"Preset {args.preset}; INT8 = ORT U8S8 (model_cpu.onnx), batch 1, {args.threads} thread(s), median of "
             f"{LATENCY_RUNS}; train s = `lineside train` wall time incl. feature caching."]  # fmt: skip
    notes += [f"Not run (no finished cell): {', '.join(missing)}."] if missing else []
    notes += args.note
    paths = {n: os.path.relpath(p, REPO) for n, p in sets.items()}
    atomic_write_json(args.out / "real_data.json", {"preset": args.preset, "sets": paths, "rows": rows})
    text = markdown(rows, notes)
    atomic_write_text(args.out / "real_data.md", text)
    return text


if __name__ == "__main__":
    raise SystemExit(main())
