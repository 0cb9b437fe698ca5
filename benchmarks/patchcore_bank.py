"""PatchCore's bank size as a latency knob: accuracy and ORT latency (FP32, INT8 U8S8) against the bank size.

    python benchmarks/patchcore_bank.py --data ../shared/data/magnetic_tile [--sizes 1024,4096,16384,40960]
                                       [--preset edge] [--threads 1] [--out benchmarks/results]

One greedy coreset of the largest size is built (the edge preset's training data and validation
split); greedy picks are a sequence, so its first K entries *are* the K-entry coreset. For each K:
the test split's metrics (torch FP32 and ORT INT8 U8S8, calibrated on good training images) and
the batch-1 latency of the exported FP32 and U8S8 graphs. Nothing is chosen from these numbers.
Writes OUT/patchcore_bank.json and OUT/patchcore_bank.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from lineside.atomic import atomic_write_json, atomic_write_text

REPO = Path(__file__).resolve().parents[1]
RUNS, WARMUP = 30, 5


def build_bank(data: Path, preset: str, size: int, out: Path) -> Any:
    """A PatchCore model of `preset` whose bank holds the first `size` greedy coreset picks."""
    from lineside.train.data import load_train_data, open_for_training
    from lineside.train.loop import LoopOptions, fit
    from lineside.train.models import build_model

    dataset, classes = open_for_training(data)
    model = build_model("patchcore", preset, classes, bank_max=size, coreset_fraction=1.0)
    train, model.held_out = load_train_data(dataset, classes, model.input_size)
    fit(model, train, LoopOptions(out_dir=out, seed=0))
    return model


def latency_ms(path: Path, threads: int) -> float:
    """Median batch-1 latency of an ONNX graph on ORT CPU."""
    from lineside.export.ort_run import cpu_session

    session = cpu_session(path, threads=threads)
    name, shape = session.get_inputs()[0].name, session.get_inputs()[0].shape
    image = np.random.default_rng(0).integers(0, 256, (1, shape[1], shape[2], 3), dtype=np.uint8)
    times = []
    for index in range(WARMUP + RUNS):
        tick = time.perf_counter()
        session.run(None, {name: image})
        if index >= WARMUP:
            times.append(1000 * (time.perf_counter() - tick))
    return round(statistics.median(times), 2)


def measure(model: Any, size: int, data: Path, work: Path, threads: int) -> dict[str, Any]:
    """Metrics and latency of the model cut to its first `size` bank entries."""
    from lineside.calibration.calib_set import build_calibration_set, data_reader
    from lineside.data import open_dataset
    from lineside.export.evalset import accuracy, load_eval_set
    from lineside.export.int8 import QuantSpec, quantize, sensitive_nodes
    from lineside.export.ort_run import cpu_session, run_images
    from lineside.export.regions import find_regions
    from lineside.train.checkpoint import save_checkpoint
    from lineside.train.evaluate import evaluate_model

    model._set_bank(model.bank[:size])
    fp32_metrics = evaluate_model(model, open_dataset(data))["mean"]
    save_checkpoint(work / f"bank{size}.pt", model)
    from lineside.cli import main as lineside

    bundle = work / f"fp32_{size}"
    if lineside(["export", str(work / f"bank{size}.pt"), "--out", str(bundle), "--threads", str(threads)]) != 0:
        raise RuntimeError(f"FP32 export of the {size}-entry bank failed")
    import onnx

    fp32 = bundle / "model.onnx"
    graph = onnx.load(str(fp32))
    calib = build_calibration_set(data, model.input_size, 64)
    spec = QuantSpec("minmax", work / f"ranges{size}.json")
    u8s8 = quantize(fp32, work / f"u8s8_{size}.onnx", "u8s8", sensitive_nodes(graph, find_regions(graph)), spec,
                    data_reader(calib))  # fmt: skip
    eval_set = load_eval_set(data, model.input_size)
    out = run_images(cpu_session(u8s8, threads=threads), eval_set.images)
    int8_metrics = accuracy(eval_set, out.scores, out.maps)["mean"]
    row: dict[str, Any] = {
        "bank": size,
        "fp32_ms": latency_ms(fp32, threads),
        "int8_u8s8_ms": latency_ms(u8s8, threads),
    }
    for prefix, metrics in (("", fp32_metrics), ("int8_", int8_metrics)):
        for key, name in (("i_auroc", "image_auroc"), ("p_auroc", "pixel_auroc"), ("aupro", "aupro")):
            row[prefix + key] = round(100 * float(metrics[name]), 2)
    return row


def markdown(rows: list[dict[str, Any]], data: str, threads: int) -> str:
    lines = [
        f"# PatchCore bank size on {data}",
        "",
        f"ORT batch 1, {threads} thread(s), median of {RUNS}; percent.",
        "",
    ]
    lines += [
        "| bank | FP32 ms | INT8 U8S8 ms | I-AUROC | P-AUROC | AUPRO | INT8 I-AUROC | INT8 P-AUROC | INT8 AUPRO |"
    ]
    lines += ["| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        cells = [r["bank"], r["fp32_ms"], r["int8_u8s8_ms"], r["i_auroc"], r["p_auroc"], r["aupro"]]
        cells += [r["int8_i_auroc"], r["int8_p_auroc"], r["int8_aupro"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="an MVTec-layout data set (train and test splits)")
    parser.add_argument("--sizes", default="1024,4096,16384,40960", help="bank sizes (comma-separated)")
    parser.add_argument("--preset", default="edge")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    rows = []
    with tempfile.TemporaryDirectory(prefix="patchcore-bank-") as tmp:
        model = build_bank(args.data, args.preset, sizes[-1], Path(tmp))
        full = model.bank.clone()
        for size in reversed(sizes):
            model._set_bank(full)
            rows.append(measure(model, size, args.data, Path(tmp), args.threads))
            print(rows[-1], flush=True)
    rows.sort(key=lambda r: r["bank"])
    doc = {"data": args.data.name, "preset": args.preset, "threads": args.threads, "rows": rows}
    atomic_write_json(args.out / "patchcore_bank.json", doc)
    text = markdown(rows, args.data.name, args.threads)
    atomic_write_text(args.out / "patchcore_bank.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
