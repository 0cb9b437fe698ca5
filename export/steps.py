"""The export steps in order, each measured: FP32 graph + parity, then the FP16 or INT8 graph.

Returns the files that go into the bundle and the report that describes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lineside.export.ort_run import Outputs, cpu_session, run_images

if TYPE_CHECKING:
    from lineside.export.evalset import EvalSet
    from lineside.export.pipeline import ExportOptions
    from lineside.train.checkpoint import LoadedCheckpoint

PARITY_IMAGES_WITHOUT_DATA = 8
SENSITIVITY_IMAGES = 8


def _fused_graph(loaded: LoadedCheckpoint, options: ExportOptions, work: Path, stages: Any) -> tuple[Any, dict]:
    """Fuse, prove inference-only, freeze 'same' padding, export the model's inference form and simplify.

    Returns the fused trained model (the parity reference) and the report part of these steps.
    """
    import torch

    from lineside.export.fuse import check_inference_only, fuse, fuse_checkpoint, max_abs_diff
    from lineside.export.onnx_export import export_onnx
    from lineside.export.simplify import simplify
    from lineside.export.static_pad import freeze_same_padding

    stages.start("fuse")
    size = tuple(loaded.input_size)
    generator = torch.Generator().manual_seed(0)
    example = torch.randint(0, 256, (1, *size, 3), dtype=torch.uint8, generator=generator)  # (1, H, W, 3)
    fused = fuse_checkpoint(loaded)
    check = check_inference_only(fused, example)
    if not check.ok:
        raise RuntimeError(f"the model is not inference-only after eval(): {check}")
    frozen = freeze_same_padding(fused, example)
    exported = fuse(fused.preprocess, fused.model.inference_form())
    form_diff = max_abs_diff(fused, exported, example)
    stages.start("onnx")
    export_onnx(exported, work / "raw.onnx", size, dynamic_batch=options.dynamic_batch)  # type: ignore[arg-type]
    stages.start("simplify")
    simplified = simplify(work / "raw.onnx", work / "fp32.onnx")
    report = {
        "inference_check": {
            "modules_in_train_mode": list(check.modules_in_train_mode),
            "mode_dependent_modules": check.mode_dependent_modules,
            "repeat_max_abs_diff": check.repeat_max_abs_diff,
        },
        "static_same_padding_convs": frozen,
        "inference_form": {"rewritten": exported.model is not fused.model, "max_abs_diff": form_diff},
        "simplify": vars(simplified),
    }
    return fused, report


def torch_outputs(fused: Any, images: tuple[np.ndarray, ...]) -> Outputs:
    """Run the fused torch module image by image (batch 1)."""
    import torch

    maps, scores = [], []
    with torch.no_grad():
        for image in images:
            out = fused(torch.from_numpy(image[None]))  # (1, 1, H, W), (1,)
            maps.append(out.anomaly_map[0].numpy())
            scores.append(out.score.reshape(-1)[:1].numpy())
    return Outputs(np.stack(maps).astype(np.float32), np.concatenate(scores).astype(np.float32))


def _parity(torch_out: Outputs, ort_out: Outputs, eval_set: EvalSet | None) -> dict[str, Any]:
    from lineside.export.pipeline import relative_error

    parity: dict[str, Any] = {
        "images": int(len(ort_out.scores)),
        "real_images": eval_set is not None,
        "map_max_abs_err": float(np.abs(ort_out.maps - torch_out.maps).max()),
        "map_range": float(np.ptp(torch_out.maps)),
        "map_max_abs_err_rel": relative_error(ort_out.maps, torch_out.maps),
        "score_max_abs_err": float(np.abs(ort_out.scores - torch_out.scores).max()),
    }
    if eval_set is not None:
        from lineside.export.evalset import image_auroc

        auroc = image_auroc(eval_set)
        parity["auroc_torch"], parity["auroc_onnx"] = auroc(torch_out.scores), auroc(ort_out.scores)
        parity["auroc_diff"] = parity["auroc_onnx"] - parity["auroc_torch"]
    return parity


def _images(options: ExportOptions, size: tuple[int, int]) -> tuple[EvalSet | None, tuple[np.ndarray, ...]]:
    if options.data is None:
        rng = np.random.default_rng(0)
        return None, tuple(rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(PARITY_IMAGES_WITHOUT_DATA))
    from lineside.export.evalset import load_eval_set

    eval_set = load_eval_set(options.data, size, limit_per_category=options.eval_limit)
    return eval_set, eval_set.images


def run_steps(
    loaded: LoadedCheckpoint, options: ExportOptions, work: Path, stages: Any
) -> tuple[dict[str, Path], dict[str, Any]]:
    """All export steps; returns ({bundle file name: path}, report)."""
    from lineside.export.evalset import accuracy
    from lineside.export.pipeline import PARITY_MAX_REL

    fused, report = _fused_graph(loaded, options, work, stages)
    stages.start("parity")
    size = tuple(loaded.input_size)
    eval_set, images = _images(options, size)  # type: ignore[arg-type]
    fp32_out = run_images(cpu_session(work / "fp32.onnx", threads=options.threads), images)
    report["parity"] = _parity(torch_outputs(fused, images), fp32_out, eval_set)
    if report["parity"]["map_max_abs_err_rel"] > PARITY_MAX_REL:
        raise RuntimeError(f"FP32 ONNX does not match torch: {report['parity']}")
    report["accuracy"] = {"fp32": accuracy(eval_set, fp32_out.scores, fp32_out.maps)} if eval_set else {}
    files = {"model.onnx": work / "fp32.onnx"}
    if options.precision == "fp16":
        files = {"model.onnx": _fp16(work, options, eval_set, images, fp32_out, report, stages)}
    elif options.precision == "int8":
        files = _int8(work, options, eval_set, fp32_out, report, stages)  # type: ignore[arg-type]
    return files, report


def _fp16(
    work: Path,
    options: ExportOptions,
    eval_set: EvalSet | None,
    images: tuple[np.ndarray, ...],
    fp32_out: Outputs,
    report: dict[str, Any],
    stages: Any,
) -> Path:
    import onnx

    from lineside.export.evalset import accuracy, one_pair_points
    from lineside.export.fp16 import convert_to_fp16
    from lineside.export.pipeline import FP16_MAX_DROP, drop_points, relative_error
    from lineside.export.regions import find_regions
    from lineside.export.simplify import check_model

    stages.start("fp16")
    model = onnx.load(str(work / "fp32.onnx"))
    regions = find_regions(model)
    half = check_model(convert_to_fp16(model, regions.body - regions.tail_feeders))
    onnx.save(half, str(work / "fp16.onnx"))
    out = run_images(cpu_session(work / "fp16.onnx", threads=options.threads), images)
    report["fp16"] = {
        "regions": {
            "head": len(regions.head),
            "body_fp16": len(regions.body - regions.tail_feeders),
            "tail_feeders_fp32": len(regions.tail_feeders),
            "tail_fp32": len(regions.tail),
        },
        "map_max_abs_err_rel_vs_fp32": relative_error(out.maps, fp32_out.maps),
        "score_max_abs_err_vs_fp32": float(np.abs(out.scores - fp32_out.scores).max()),
    }
    if eval_set is not None:
        report["accuracy"]["fp16"] = accuracy(eval_set, out.scores, out.maps)
        drop = drop_points(report["accuracy"]["fp32"], report["accuracy"]["fp16"])
        report["fp16"]["image_auroc_drop_points"] = drop
        # A drop finer than one swapped good/defect pair cannot be measured on this eval set: on a small set the
        # limit is that resolution (recorded), on the synthetic default set (20 x 20 pairs x 6 classes) it is 0.1.
        resolution = one_pair_points(eval_set)
        limit = max(FP16_MAX_DROP, resolution)
        report["fp16"].update(drop_limit_points=limit, eval_resolution_points=resolution)
        if drop > limit + 1e-9:
            raise RuntimeError(f"FP16 loses {drop:.3f} I-AUROC points (limit {limit:.3f}): conversion is broken")
    return work / "fp16.onnx"


def _int8(
    work: Path, options: ExportOptions, eval_set: EvalSet, fp32_out: Outputs, report: dict[str, Any], stages: Any
) -> dict[str, Path]:
    import onnx

    from lineside.calibration.calib_set import build_calibration_set, data_reader
    from lineside.export.evalset import accuracy, image_auroc
    from lineside.export.int8 import (
        QuantSpec,
        quantizable_nodes,
        quantize,
        quantize_with_fallback,
        sensitive_nodes,
    )
    from lineside.export.pipeline import drop_points
    from lineside.export.regions import find_regions
    from lineside.export.sensitivity import node_groups, rank_groups

    stages.start("calibrate")
    size = eval_set.images[0].shape[:2]
    calib = build_calibration_set(options.calib or options.data, size, options.calib_size)  # type: ignore[arg-type]
    spec = QuantSpec(method=options.calib_method, cache=work / "ranges.json")
    fp32 = work / "fp32.onnx"
    model = onnx.load(str(fp32))
    excluded = sensitive_nodes(model, find_regions(model))
    candidates = quantizable_nodes(model, excluded)
    stages.start("int8")
    outputs: dict[Path, Outputs] = {}
    report_groups: list[dict[str, Any]] = []
    score = image_auroc(eval_set)

    def evaluate(path: Path) -> float:
        outputs[path] = run_images(cpu_session(path, threads=options.threads), eval_set.images)
        return score(outputs[path].scores)

    def ranking() -> list[list[str]]:
        groups = node_groups(model, candidates)

        def without(extra: list[str]) -> Path:
            return quantize(fp32, work / "probe.onnx", "s8s8", excluded + extra, spec)

        ranked = rank_groups(fp32, groups, without, list(calib.images[:SENSITIVITY_IMAGES]), threads=options.threads)
        report_groups.extend({"group": name, "map_error_removed": gain} for name, gain in ranked)
        return [groups[name] for name, _ in ranked]

    fp32_auroc = score(fp32_out.scores)
    result = quantize_with_fallback(
        fp32, work, excluded, ranking, evaluate, fp32_auroc, spec, data_reader(calib), options.max_drop
    )
    report["int8"] = _int8_report(options, calib, excluded, candidates, result)
    report["int8"]["sensitivity"] = report_groups
    for flavour, path in result.paths.items():
        report["accuracy"][f"int8_{flavour}"] = accuracy(eval_set, outputs[path].scores, outputs[path].maps)
        report["int8"][f"drop_points_{flavour}"] = drop_points(
            report["accuracy"]["fp32"], report["accuracy"][f"int8_{flavour}"]
        )
    return {"model.onnx": result.paths["s8s8"], "model_cpu.onnx": result.paths["u8s8"]}


def _int8_report(options: ExportOptions, calib: Any, excluded: list, candidates: list, result: Any) -> dict[str, Any]:
    return {
        "calibration": {
            "method": options.calib_method,
            "images": len(calib),
            "per_category": calib.per_category,
            "source": str(options.calib or options.data),
        },
        "flavours": {"model.onnx": "s8s8 (TensorRT)", "model_cpu.onnx": "u8s8 (ONNX Runtime CPU)"},
        "kept_float_sensitive": len(excluded),
        "quantizable": len(candidates),
        "fallback_unquantized": result.fallback_nodes,
        "max_drop_points": options.max_drop,
        "attempts": [vars(a) for a in result.attempts],
    }
