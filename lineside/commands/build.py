"""`lineside build`: build a TensorRT / TensorRT-RTX engine from a bundle, or inspect an engine file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lineside.engine_file import LIBRARIES, TARGETS
from lineside.errors import LinesideError

_BUILD_OPTIONS = (
    "target",
    "out",
    "plain",
    "workspace",
    "opt_level",
    "timing_cache",
    "dla_core",
    "max_batch",
    "library",
)
HELP = "Build a TensorRT / TensorRT-RTX engine from a bundle (or --inspect an engine file)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside build`."""
    parser.add_argument("bundle", nargs="?", type=Path, help="bundle folder (its manifest's model_file is built)")
    parser.add_argument(
        "--target",
        choices=TARGETS,
        help="TensorRT-RTX ahead-of-time build for this compute capability, no GPU needed (default: this GPU)",
    )
    parser.add_argument("--out", type=Path, help="engine file (default: BUNDLE/model.engine, where the runtime looks)")
    parser.add_argument(
        "--plain", action="store_true", help="also write a bare plan + sidecar JSON (trtexec, DeepStream)"
    )
    parser.add_argument("--workspace", type=int, metavar="MB", help="builder workspace limit in MB")
    parser.add_argument("--opt-level", type=int, metavar="N", help="builder optimisation level 0..5 (default 3)")
    parser.add_argument("--timing-cache", type=Path, metavar="FILE", help="TensorRT timing cache, loaded and saved")
    parser.add_argument("--dla-core", type=int, metavar="N", help="run on Jetson DLA core N (GPU fallback on)")
    parser.add_argument("--max-batch", type=int, metavar="N", help="batch range 1..N for a dynamic-batch bundle")
    parser.add_argument("--library", choices=LIBRARIES, help="force a library (default: TensorRT, else RTX)")
    parser.add_argument("--inspect", type=Path, metavar="ENGINE", help="print an engine file's metadata and exit")


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside build`."""
    build_flags = [f"--{k.replace('_', '-')}" for k in _BUILD_OPTIONS if getattr(args, k) not in (None, False)]
    if args.inspect is not None:
        if build_flags:
            raise LinesideError(f"--inspect only reads an engine: drop {' '.join(build_flags)}")
        return _inspect(args.inspect, args.bundle)
    if args.bundle is None:
        raise LinesideError("give a BUNDLE folder to build, or --inspect ENGINE")
    if args.out is not None and args.out.is_dir():
        raise LinesideError(
            f"--out {args.out} is a folder: give the engine file name, e.g. {args.out / 'model.engine'}"
        )
    from lineside.bundle import load_bundle
    from lineside.cuda_device import current_gpu
    from lineside.export.engine_build import BuildOptions, build_engine, default_engine_path, save_engine
    from lineside.export.engine_report import format_table

    bundle = load_bundle(args.bundle)
    options = BuildOptions(
        target=args.target,
        workspace_mb=args.workspace,
        opt_level=args.opt_level,
        timing_cache=args.timing_cache,
        dla_core=args.dla_core,
        max_batch=args.max_batch,
        library=args.library,
    )
    built = build_engine(bundle, options)
    out = args.out or default_engine_path(bundle)
    saved = save_engine(built, out, plain=args.plain)
    meta = built.metadata
    for warning in built.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    print(
        f"built {saved.engine} ({meta.library} {meta.library_version}, {meta.gpu_name or meta.target}, "
        f"{meta.precision}) in {meta.build_seconds:.2f} s, plan {meta.plan_bytes / 1024:.0f} KiB"
    )
    print(format_table(built.report))
    print(f"layer report: {saved.layers}")
    if saved.plan is not None:
        print(f"bare plan: {saved.plan} (metadata: {saved.sidecar})")
    if meta.gpu_name is None and args.target and current_gpu() is None:
        print(
            f"note: built ahead of time for {meta.target}; copy it to that GPU ('lineside run' here needs --backend ort)"
        )
    return 0


def _inspect(engine: Path, bundle_path: Path | None) -> int:
    from lineside.engine_file import describe, read_metadata

    metadata = read_metadata(engine)
    print(describe(metadata))
    if bundle_path is not None:
        from lineside.bundle import load_bundle

        expected = load_bundle(bundle_path).manifest.model_sha256
        if expected != metadata.bundle_model_sha256:
            raise LinesideError(
                f"{engine} was not built from {bundle_path}: rebuild with 'lineside build {bundle_path}'"
            )
        print(f"matches bundle {bundle_path}")
    return 0
