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
from lineside.preprocess import resize_for_model

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
        argv = [*_lineside(options, info), "build", ".", *options.build_args]
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


def smoke_frame(size: tuple[int, int], image: np.ndarray | None = None) -> bytes:
    """A PNG frame of the model's input size (height, width): `image` resized, else a smooth gradient.

    The runtime refuses uniform frames as blanked cameras, so the default is a diagonal grey ramp.
    """
    height, width = size
    if image is None:
        ramp = np.add.outer(np.arange(height) / max(1, height - 1), np.arange(width) / max(1, width - 1))  # (H, W)
        image = np.repeat((60 + 70 * ramp)[..., None], 3, axis=2).astype(np.uint8)  # (H, W, 3)
    ok, png = cv2.imencode(".png", resize_for_model(image, size))
    if not ok:
        raise RuntimeError("OpenCV could not encode the smoke-test frame")
    return png.tobytes()


def smoke_args(manifest: Manifest, backend: str = "auto") -> list[str]:
    """`lineside run` arguments for one frame from ../smoke, logged to ../smoke/results.jsonl.

    The bundle's calibrated threshold is used (first calibrated class); an uncalibrated bundle runs
    with a placeholder threshold, since the smoke test checks that inference works, not the verdict.
    """
    argv = ["run", ".", "--source", "../smoke", "--actuator", "log://", "--log", "../smoke/results.jsonl"]
    argv += ["--max-parts", "1", "--quiet", "--backend", backend]
    calibrated = [c for c in manifest.classes if c in manifest.thresholds]
    if calibrated:
        return [*argv, "--class", calibrated[0]]
    if "*" in manifest.thresholds:
        return argv
    return [*argv, "--threshold", "1e30"]


def smoke_test(
    target: SshTarget, options: DeployOptions, info: dict[str, str], staging: str, manifest: Manifest, engine: str
) -> str:
    """Run one frame through the staged bundle on the target; returns what it saw."""
    if not options.smoke:
        return "skipped (--no-smoke)"
    root = options.remote_dir
    if info.get("lineside"):
        argv = [*_lineside(options, info), *smoke_args(manifest, options.smoke_backend)]
        result = _in_bundle(target, root, staging, argv, timeout=600)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()[-400:]
            raise LinesideError(f"smoke inference failed on the target: {detail}")
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
    parts = [r for r in records if isinstance(r, dict) and r.get("type") == "part"]
    if not parts:
        raise LinesideError("smoke inference on the target logged no decision")
    first = parts[0]
    score = first.get("score")
    if first.get("verdict") == "ERROR" or not isinstance(score, (int, float)) or not np.isfinite(score):
        raise LinesideError(f"smoke inference on the target failed: {first.get('reason') or first}")
    infer = first.get("latency_ms", {}).get("infer")
    timing = f", inference {infer:.1f} ms" if isinstance(infer, (int, float)) else ""
    threshold = first.get("threshold")
    at = f" at threshold {threshold:.4g}" if isinstance(threshold, (int, float)) and threshold < 1e29 else ""
    return f"verdict {first['verdict']}{at}, score {score:.4g}{timing}"
