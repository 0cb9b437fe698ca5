"""Work done inside the target's staging folder: engine build and smoke inference."""

from __future__ import annotations

import json
import shlex

import cv2
import numpy as np

from lineside.bundle import Manifest
from lineside.deploy import scripts
from lineside.deploy.options import DeployOptions
from lineside.deploy.ssh import SshTarget, run_remote
from lineside.errors import LinesideError

TRTEXEC_PLAN = "model.plan"
TRTEXEC_FLAGS = {"fp32": (), "fp16": ("--fp16",), "int8": ("--int8", "--fp16")}


def _in_bundle(target: SshTarget, root: str, staging: str, argv: list[str], timeout: float = 1800):  # noqa: ANN202
    return run_remote(target, scripts.RUN_IN, root, staging, "bundle", *argv, timeout=timeout)


def _lineside(options: DeployOptions, info: dict[str, str]) -> list[str]:
    """The target's lineside command, resolved to the absolute path the probe found."""
    return [info["lineside"], *options.target_lineside[1:]]


def trtexec_command(trtexec: str, manifest: Manifest) -> list[str]:
    """trtexec argument list building BUNDLE/model.plan from the bundle's ONNX (TensorRT 8.5-10)."""
    flags = TRTEXEC_FLAGS.get(manifest.precision, ())
    return [trtexec, f"--onnx={manifest.model_file}", f"--saveEngine={TRTEXEC_PLAN}", *flags, "--skipInference"]


def build_on_target(
    target: SshTarget, options: DeployOptions, info: dict[str, str], staging: str, manifest: Manifest
) -> str:
    """Build the engine in the staging bundle with the target's lineside, else with trtexec."""
    if info.get("lineside"):
        argv = [*_lineside(options, info), "build", "."]
        if options.build_target:
            argv += ["--target", options.build_target]
    elif info.get("trtexec"):
        argv = trtexec_command(info["trtexec"], manifest)
    else:
        raise LinesideError(
            f"--build-on-target: neither lineside ({options.target_lineside[0]}) nor trtexec is on the target; "
            "install lineside there (docs/jetson.md) or pass --target-lineside PATH"
        )
    print(f"      on target: {shlex.join(argv)}", flush=True)
    result = _in_bundle(target, options.remote_dir, staging, argv)
    if result.returncode != 0:
        raise LinesideError(f"engine build failed on the target: {(result.stderr or result.stdout).strip()[-400:]}")
    listing = _in_bundle(target, options.remote_dir, staging, ["ls", "-1"]).stdout.split()
    engines = [name for name in listing if name.endswith((".engine", ".plan"))]
    if not engines:
        raise LinesideError("the engine build on the target reported success but wrote no .engine/.plan file")
    return ", ".join(engines)


def smoke_frame(size: tuple[int, int]) -> bytes:
    """A mid-grey PNG frame of the model's input size (height, width)."""
    ok, png = cv2.imencode(".png", np.full((*size, 3), 128, np.uint8))
    if not ok:
        raise RuntimeError("OpenCV could not encode the smoke-test frame")
    return png.tobytes()


def smoke_test(target: SshTarget, options: DeployOptions, info: dict[str, str], staging: str, engine: str) -> str:
    """Run one frame through the staged bundle on the target; returns what it saw."""
    if not options.smoke:
        return "skipped (--no-smoke)"
    root = options.remote_dir
    if info.get("lineside"):
        argv = [*_lineside(options, info), "run", ".", "--source", "../smoke", "--actuator", "log://"]
        argv += ["--log", "../smoke/results.jsonl"]
        result = _in_bundle(target, root, staging, argv, timeout=600)
        if result.returncode != 0:
            raise LinesideError(
                f"smoke inference failed on the target: {(result.stderr or result.stdout).strip()[-400:]}"
            )
        log = _in_bundle(target, root, staging, ["cat", "../smoke/results.jsonl"]).stdout
        return _smoke_verdict(log)
    if engine.endswith(TRTEXEC_PLAN):
        argv = [info["trtexec"], f"--loadEngine={TRTEXEC_PLAN}", "--iterations=10", "--warmUp=0", "--duration=0"]
        print(f"      on target: {shlex.join(argv)}", flush=True)
        result = _in_bundle(target, root, staging, argv, timeout=600)
        if result.returncode != 0:
            raise LinesideError(f"trtexec could not run the engine on the target: {result.stdout.strip()[-400:]}")
        return "trtexec ran the engine 10 times"
    print("WARNING: no smoke inference: lineside is not installed on the target", flush=True)
    return "skipped: lineside not on the target"


def _smoke_verdict(log: str) -> str:
    """Check the smoke run logged one decision with a finite score; summarise it."""
    records = [json.loads(line) for line in log.splitlines() if line.strip()]
    decisions = [r for r in records if isinstance(r, dict) and "verdict" in r]
    if not decisions:
        raise LinesideError("smoke inference on the target logged no decision")
    first = decisions[0]
    score = first.get("score")
    if not isinstance(score, (int, float)) or not np.isfinite(score):
        raise LinesideError(f"smoke inference on the target gave no finite score: {first}")
    return f"verdict {first['verdict']}, score {score:.4g}"
