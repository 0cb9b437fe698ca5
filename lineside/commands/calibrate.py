"""`lineside calibrate`: set per-class reject thresholds from good parts."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lineside.bundle import BACKEND_FAMILIES, Bundle, CalibrationTarget
from lineside.validate import float_arg, int_arg

if TYPE_CHECKING:
    import numpy as np

    from lineside.calibration.thresholds import ClassThreshold

HELP = "Set per-class reject thresholds from good parts."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside calibrate`."""
    parser.add_argument("bundle", help="bundle folder (thresholds are written into its manifest)")
    parser.add_argument(
        "--good",
        required=True,
        type=Path,
        help="good images held out from training: a folder of images (one class, or with --class), "
        "or a folder with one sub-folder per class (DIR/<class>/ or DIR/<class>/good/)",
    )
    parser.add_argument(
        "--defect",
        type=Path,
        help="labelled defect images (same layout; DIR/<class>/test/ of an MVTec root works, its 'good' "
        "sub-folder counts as good); enables the F1-optimal threshold and miss rates",
    )
    parser.add_argument(
        "--false-reject",
        type=float_arg(above=0, below=0.5),
        default=0.001,
        help="target false-reject rate (default 0.001)",
    )
    parser.add_argument(
        "--confidence", type=float_arg(at_least=0.5, below=1), default=0.95, help="confidence of the false-reject bound"
    )
    parser.add_argument(
        "--objective",
        choices=("auto", "false-reject", "f1"),
        default="auto",
        help="threshold for the false-reject target or maximal F1 (auto: F1 when --defect is given)",
    )
    parser.add_argument(
        "--method",
        choices=("auto", "empirical", "tail"),
        default="auto",
        help="false-reject estimator: distribution-free order statistic, fitted Pareto tail, or auto "
        "(empirical when there are enough good images, else the tail)",
    )
    parser.add_argument(
        "--for",
        dest="backend_for",
        choices=BACKEND_FAMILIES,
        help="the backend the line will run: its graph is scored (model.onnx, S8S8 for INT8, for tensorrt and ort-gpu; "
        "model_cpu.onnx, U8S8, for ort-cpu), always with ONNX Runtime on CPU here; default: what `lineside run` "
        "picks on this bundle here (tensorrt when BUNDLE/model.engine exists, else ORT's best provider)",
    )
    parser.add_argument("--class", dest="classes", action="append", help="calibrate only this class (repeatable)")
    parser.add_argument("--plot", type=Path, help="folder for one score histogram PNG per class")
    parser.add_argument(
        "--threads", type=int_arg(at_least=1, at_most=1024), default=None, help="ONNX Runtime CPU threads"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the table, leave the manifest unchanged")


def _class_folder(root: Path, name: str, per_class: bool, sub: str | None = None) -> Path:
    """Folder of one class: `root` itself for a single class, else root/<class> (or root/<class>/<sub>)."""
    if not per_class:
        return root
    folder = root / name
    if sub and (folder / sub).is_dir():
        return folder / sub
    return folder


def default_backend(bundle: Bundle) -> str:
    """The backend family `lineside run BUNDLE` picks by default on this machine."""
    from lineside.errors import missing_extra
    from lineside.runtime.backends.base import DEFAULT_ENGINE_NAME
    from lineside.runtime.backends.onnxruntime import resolve_providers

    if (bundle.path / DEFAULT_ENGINE_NAME).is_file():
        return "tensorrt"
    try:
        import onnxruntime
    except ImportError as exc:
        raise missing_extra("onnxruntime", "calibrate") from exc
    providers = resolve_providers(None, list(onnxruntime.get_available_providers()))
    return "ort-cpu" if providers == ["CPUExecutionProvider"] else "ort-gpu"


def scoring_target(bundle: Bundle, backend: str) -> tuple[Bundle, CalibrationTarget]:
    """The bundle as ONNX Runtime on CPU must see it to score the graph `backend` runs, and that target.

    ORT's CPU session takes `cpu_model_file` when the manifest names one, so the view names the target's
    graph there (or none, for the main graph): scoring then runs exactly the graph the line will run.
    """
    manifest = bundle.manifest
    graph = manifest.graph_for(backend)
    bundle.file(graph)  # listed (and so checksum-verified), else a one-line error
    view = dataclasses.replace(manifest, cpu_model_file=None if graph == manifest.model_file else graph)
    return Bundle(bundle.path, view), CalibrationTarget(backend, graph, manifest.files[graph])


def _calibrate(
    args: argparse.Namespace, scored: Bundle, classes: list[str]
) -> tuple[list[ClassThreshold], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Score each class's good (and defect) images and calibrate its threshold; returns (results, scores by class)."""
    from lineside.calibration.thresholds import calibrate_class
    from lineside.calibration.thresholds_scoring import good_and_defect_paths, score_images

    per_class = len(classes) > 1 or (args.good / classes[0]).is_dir()
    objective = args.objective if args.objective != "auto" else ("f1" if args.defect else "false-reject")
    results: list[ClassThreshold] = []
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in classes:
        defect_dir = None if args.defect is None else _class_folder(args.defect, name, per_class, "test")
        good_paths, defect_paths = good_and_defect_paths(_class_folder(args.good, name, per_class), defect_dir)
        good = score_images(scored, good_paths, threads=args.threads, desc=f"{name} good")
        defect = score_images(scored, defect_paths, threads=args.threads, desc=f"{name} defect")
        results.append(
            calibrate_class(
                name,
                good,
                defect,
                false_reject=args.false_reject,
                confidence=args.confidence,
                objective=objective,
                method=args.method,
            )
        )
        scores[name] = (good, defect)
    return results, scores


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside calibrate`."""
    from lineside.bundle import load_bundle, update_bundle
    from lineside.calibration.thresholds import format_table
    from lineside.errors import LinesideError

    bundle = load_bundle(args.bundle)
    classes = list(args.classes or bundle.manifest.classes)
    unknown = sorted(set(classes) - set(bundle.manifest.classes))
    if unknown:
        raise LinesideError(
            f"class(es) {', '.join(unknown)} not in the bundle; it has: {', '.join(bundle.manifest.classes)}"
        )
    backend = args.backend_for or default_backend(bundle)
    scored, target = scoring_target(bundle, backend)
    chosen = "" if args.backend_for else " (what `lineside run` picks here; --for chooses)"
    print(f"calibrating for {backend}{chosen}: scoring {target.graph} (the graph it runs) with ONNX Runtime on CPU")
    results, scores = _calibrate(args, scored, classes)
    print(format_table(results, args.false_reject, args.confidence))
    for r in results:
        if r.false_reject_observed > args.false_reject:
            print(
                f"WARNING: {r.name}: the {r.method} threshold rejects {r.false_reject_observed:.2%} of the good images, "
                f"above the target {args.false_reject:g}",
                file=sys.stderr,
            )
    if args.plot:
        from lineside.calibration.thresholds_plot import plot_class_scores

        for result in results:
            good, defect = scores[result.name]
            print(f"plot: {plot_class_scores(result, good, defect, args.plot)}")
    if args.dry_run:
        print("dry run: manifest unchanged")
        return 0
    thresholds = {**bundle.manifest.thresholds, **{r.name: r.threshold for r in results}}
    targets = {**bundle.manifest.calibrated_for, **{r.name: target for r in results}}
    update_bundle(bundle.path, thresholds=thresholds, calibrated_for=targets)
    print(f"thresholds written to {bundle.path / 'manifest.json'} (made for {backend}, {target.graph})")
    return 0
