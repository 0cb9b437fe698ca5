"""`lineside calibrate`: set per-class reject thresholds from good parts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    parser.add_argument("--false-reject", type=float, default=0.001, help="target false-reject rate (default 0.001)")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence of the false-reject bound")
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
    parser.add_argument("--class", dest="classes", action="append", help="calibrate only this class (repeatable)")
    parser.add_argument("--plot", type=Path, help="folder for one score histogram PNG per class")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime CPU threads")
    parser.add_argument("--dry-run", action="store_true", help="print the table, leave the manifest unchanged")


def _class_folder(root: Path, name: str, per_class: bool, sub: str | None = None) -> Path:
    """Folder of one class: `root` itself for a single class, else root/<class> (or root/<class>/<sub>)."""
    if not per_class:
        return root
    folder = root / name
    if sub and (folder / sub).is_dir():
        return folder / sub
    return folder


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside calibrate`."""
    from lineside.bundle import load_bundle, update_bundle
    from lineside.calibration.thresholds import calibrate_class, format_table
    from lineside.calibration.thresholds_scoring import good_and_defect_paths, score_images
    from lineside.errors import LinesideError

    bundle = load_bundle(args.bundle)
    classes = list(args.classes or bundle.manifest.classes)
    unknown = sorted(set(classes) - set(bundle.manifest.classes))
    if unknown:
        raise LinesideError(
            f"class(es) {', '.join(unknown)} not in the bundle; it has: {', '.join(bundle.manifest.classes)}"
        )
    per_class = len(classes) > 1 or (args.good / classes[0]).is_dir()
    objective = args.objective if args.objective != "auto" else ("f1" if args.defect else "false-reject")
    results, scores = [], {}
    for name in classes:
        defect_dir = None if args.defect is None else _class_folder(args.defect, name, per_class, "test")
        good_paths, defect_paths = good_and_defect_paths(_class_folder(args.good, name, per_class), defect_dir)
        good = score_images(bundle, good_paths, threads=args.threads, desc=f"{name} good")
        defect = score_images(bundle, defect_paths, threads=args.threads, desc=f"{name} defect")
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
    thresholds = dict(bundle.manifest.thresholds)
    thresholds.update({r.name: r.threshold for r in results})
    update_bundle(bundle.path, thresholds=thresholds)
    print(f"thresholds written to {bundle.path / 'manifest.json'}")
    return 0
