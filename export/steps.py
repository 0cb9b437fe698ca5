"""The export steps in order, each measured: FP32 graph + parity, then the FP16 or INT8 graph.

Returns the files that go into the bundle and the report that describes them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lineside.errors import LinesideError
from lineside.export.ort_run import Outputs, cpu_session, run_images

log = logging.getLogger(__name__)

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


@dataclass
class _Sets:
    """What each graph is measured on: the validation set (gates) and the test split (reported only)."""

    validation: EvalSet | None
    test: EvalSet | None
    threads: int
    report: dict[str, Any] = field(default_factory=dict)

    def parity_images(self, size: tuple[int, int]) -> tuple[np.ndarray, ...]:
        if self.validation is not None:
            return self.validation.images
        rng = np.random.default_rng(0)
        return tuple(rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(PARITY_IMAGES_WITHOUT_DATA))

    def measure(self, name: str, path: Path, validation_out: Outputs | None = None) -> Outputs | None:
        """Record `name`'s metrics on both sets in the report; returns its validation outputs."""
        from lineside.export.evalset import accuracy

        if self.validation is None:
            return None
        if validation_out is None:
            validation_out = run_images(cpu_session(path, threads=self.threads), self.validation.images)
        self.report.setdefault("validation", {})[name] = accuracy(
            self.validation, validation_out.scores, validation_out.maps
        )
        if self.test is not None:
            out = run_images(cpu_session(path, threads=self.threads), self.test.images)
            self.report.setdefault("accuracy", {})[name] = accuracy(self.test, out.scores, out.maps)
        return validation_out


def _measurement_sets(options: ExportOptions, loaded: LoadedCheckpoint, size: tuple[int, int]) -> _Sets:
    if options.data is None:
        return _Sets(None, None, options.threads)
    from lineside.export.evalset import load_eval_set
    from lineside.export.validation import load_validation_set

    validation, source = load_validation_set(options.data, loaded.classes, loaded.held_out, size)
    skipped = None
    try:
        test = load_eval_set(options.data, size, limit_per_category=options.eval_limit)
    except LinesideError as exc:  # the gates never read the test split: export goes on, and says why it is absent
        test, skipped = None, str(exc)
        log.warning("no test-split accuracy in the report: %s", exc)
    sets = _Sets(validation, test, options.threads)
    if skipped is not None:
        sets.report["accuracy_skipped"] = skipped
    sets.report["validation_source"] = source.report()
    sets.report["accuracy_note"] = "gates use 'validation'; 'accuracy' (test split) is reported, never decides"
    return sets


def run_steps(
    loaded: LoadedCheckpoint, options: ExportOptions, work: Path, stages: Any
) -> tuple[dict[str, Path], dict[str, Any]]:
    """All export steps; returns ({bundle file name: path}, report)."""
    from lineside.export.pipeline import PARITY_MAX_REL

    fused, report = _fused_graph(loaded, options, work, stages)
    stages.start("parity")
    size = tuple(loaded.input_size)
    sets = _measurement_sets(options, loaded, size)  # type: ignore[arg-type]
    report.update(sets.report)
    sets.report = report
    images = sets.parity_images(size)  # type: ignore[arg-type]
    fp32_out = run_images(cpu_session(work / "fp32.onnx", threads=options.threads), images)
    report["parity"] = _parity(torch_outputs(fused, images), fp32_out, sets.validation)
    if report["parity"]["map_max_abs_err_rel"] > PARITY_MAX_REL:
        parity = report["parity"]
        raise LinesideError(
            f"the FP32 ONNX graph does not reproduce {loaded.model_name}: map error "
            f"{100 * parity['map_max_abs_err_rel']:.2f} % of its range (limit {100 * PARITY_MAX_REL:.2f} %) on "
            f"{parity['images']} validation images; the model is numerically unstable (e.g. attention logits "
            "far beyond the local-window mask of -1e4, which then no longer masks): nothing was written"
        )
    sets.measure("fp32", work / "fp32.onnx", fp32_out)
    files = {"model.onnx": work / "fp32.onnx"}
    if options.precision == "fp16":
        files = {"model.onnx": _fp16(work, options, sets, images, fp32_out, stages)}
    elif options.precision == "int8":
        files = _int8(work, options, sets, stages)
    return files, report


def _fp16(
    work: Path,
    options: ExportOptions,
    sets: _Sets,
    images: tuple[np.ndarray, ...],
    fp32_out: Outputs,
    stages: Any,
) -> Path:
    import onnx

    from lineside.export.evalset import one_pair_points
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
    report = sets.report
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
    if sets.validation is not None:
        sets.measure("fp16", work / "fp16.onnx", out)
        drop = drop_points(report["validation"]["fp32"], report["validation"]["fp16"])
        report["fp16"]["image_auroc_drop_points"] = drop
        # A drop finer than one swapped good/defect pair cannot be measured on this validation set: on a small
        # set the limit is that resolution (recorded).
        resolution = one_pair_points(sets.validation)
        limit = max(FP16_MAX_DROP, resolution)
        report["fp16"].update(drop_limit_points=limit, eval_resolution_points=resolution)
        if drop > limit + 1e-9:
            raise RuntimeError(f"FP16 loses {drop:.3f} I-AUROC points (limit {limit:.3f}): conversion is broken")
    return work / "fp16.onnx"


def _gate(options: ExportOptions, validation: EvalSet, reference: dict[str, Any]) -> Any:
    """The INT8 accuracy gate: I-AUROC (no finer than one swapped pair), P-AUROC and AUPRO drops vs FP32."""
    from lineside.export.evalset import one_pair_points
    from lineside.export.int8 import Gate

    limits = {
        "image_auroc": max(options.max_drop, one_pair_points(validation)),
        "pixel_auroc": options.max_pixel_drop,
        "aupro": options.max_aupro_drop,
    }
    return Gate({m: float(v) for m, v in reference["mean"].items() if m in limits}, limits)


def _int8(work: Path, options: ExportOptions, sets: _Sets, stages: Any) -> dict[str, Path]:
    import onnx

    from lineside.calibration.calib_set import build_calibration_set, data_reader
    from lineside.export.evalset import accuracy
    from lineside.export.int8 import QuantSpec, quantizable_nodes, quantize, quantize_with_fallback, sensitive_nodes
    from lineside.export.regions import find_regions
    from lineside.export.sensitivity import node_groups, rank_groups

    validation = sets.validation
    assert validation is not None  # ExportOptions.validate requires --data for int8
    stages.start("calibrate")
    size = validation.images[0].shape[:2]
    calib = build_calibration_set(options.calib or options.data, size, options.calib_size)  # type: ignore[arg-type]
    spec = QuantSpec(method=options.calib_method, cache=work / "ranges.json")
    fp32 = work / "fp32.onnx"
    model = onnx.load(str(fp32))
    excluded = sensitive_nodes(model, find_regions(model))
    candidates = quantizable_nodes(model, excluded)
    stages.start("int8")
    outputs: dict[Path, Outputs] = {}
    report_groups: list[dict[str, Any]] = []
    gate = _gate(options, validation, sets.report["validation"]["fp32"])

    def evaluate(path: Path) -> dict[str, float]:
        outputs[path] = run_images(cpu_session(path, threads=options.threads), validation.images)
        return accuracy(validation, outputs[path].scores, outputs[path].maps)["mean"]  # type: ignore[return-value]

    def ranking() -> list[list[str]]:
        groups = node_groups(model, candidates)

        def without(extra: list[str]) -> Path:
            return quantize(fp32, work / "probe.onnx", "s8s8", excluded + extra, spec)

        ranked = rank_groups(fp32, groups, without, list(calib.images[:SENSITIVITY_IMAGES]), threads=options.threads)
        report_groups.extend({"group": name, "map_error_removed": gain} for name, gain in ranked)
        return [groups[name] for name, _ in ranked]

    result = quantize_with_fallback(fp32, work, excluded, ranking, evaluate, gate, spec, data_reader(calib))
    report = sets.report
    report["int8"] = _int8_report(options, calib, excluded, candidates, result)
    report["int8"].update(sensitivity=report_groups, gate_limits_points=gate.limits)
    for flavour, path in result.paths.items():
        sets.measure(f"int8_{flavour}", path, outputs[path])
        report["int8"][f"drop_points_{flavour}"] = gate.drops(report["validation"][f"int8_{flavour}"]["mean"])
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
        "max_drop_points": {
            "image_auroc": options.max_drop,
            "pixel_auroc": options.max_pixel_drop,
            "aupro": options.max_aupro_drop,
        },
        "attempts": [vars(a) for a in result.attempts],
    }
