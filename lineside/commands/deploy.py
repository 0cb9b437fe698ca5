"""`lineside deploy`: deploy a bundle to a Jetson over SSH and build the engine there."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

HELP = "Deploy a bundle to a Jetson over SSH and build the engine there."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lineside deploy`."""
    parser.add_argument("bundle", nargs="?", type=Path, help="bundle folder (not needed with --rollback)")
    parser.add_argument("--host", required=True, help="user@host of the device")
    parser.add_argument("--port", type=int, default=22, help="SSH port (default 22)")
    parser.add_argument("--identity", type=Path, help="SSH private key (default: ssh's own choice)")
    parser.add_argument(
        "--known-hosts", type=Path, help="known_hosts file holding the device's host key (default ~/.ssh/known_hosts)"
    )
    parser.add_argument(
        "--remote-dir", default="lineside", help="deploy root on the device, relative to the home (default lineside)"
    )
    parser.add_argument("--build-on-target", action="store_true", help="build the TensorRT engine on the device")
    parser.add_argument(
        "--build-args", default="", help="more `lineside build` arguments on the device, quoted (e.g. '--max-batch 4')"
    )
    parser.add_argument(
        "--target-lineside", default="lineside", help="lineside command on the device (default: lineside on its PATH)"
    )
    parser.add_argument("--no-smoke", action="store_true", help="skip the smoke inference on the device")
    parser.add_argument("--smoke-image", type=Path, help="image of a part for the smoke inference (default: a ramp)")
    parser.add_argument(
        "--smoke-backend",
        choices=("auto", "ort", "tensorrt"),
        default="auto",
        help="backend of the smoke inference (auto: the engine built on the device if any, else ONNX Runtime)",
    )
    parser.add_argument("--service", action="store_true", help="write (and install if possible) a systemd unit")
    parser.add_argument("--service-source", help="--source of the service's `lineside run` (camera, pipeline)")
    parser.add_argument("--service-actuator", default="log://", help="--actuator of the service (default log://)")
    parser.add_argument("--service-args", default="", help="more `lineside run` arguments for the service, quoted")
    parser.add_argument("--keep", type=int, default=3, help="versions to keep on the device (default 3)")
    parser.add_argument("--rollback", action="store_true", help="switch the device back to its previous version")


def run(args: argparse.Namespace) -> int:
    """Entry point of `lineside deploy`."""
    from lineside.deploy import DeployOptions, deploy_bundle, parse_target, rollback
    from lineside.errors import LinesideError

    target = parse_target(args.host, args.port, args.identity, args.known_hosts)
    try:
        lineside_cmd = tuple(shlex.split(args.target_lineside))
        service_args = tuple(shlex.split(args.service_args))
        build_args = tuple(shlex.split(args.build_args))
    except ValueError as exc:
        raise LinesideError(f"--target-lineside / --service-args / --build-args cannot be parsed: {exc}") from exc
    if not lineside_cmd:
        raise LinesideError("--target-lineside is empty")
    if not args.remote_dir or args.remote_dir.startswith("-") or any(c in args.remote_dir for c in "\n\0"):
        raise LinesideError(f"--remote-dir must be a plain path, got {args.remote_dir!r}")
    if args.keep < 2:
        raise LinesideError("--keep must be at least 2 (current and previous)")
    options = DeployOptions(
        remote_dir=args.remote_dir,
        target_lineside=lineside_cmd,
        build_on_target=args.build_on_target,
        build_args=build_args,
        smoke=not args.no_smoke,
        smoke_image=args.smoke_image,
        smoke_backend=args.smoke_backend,
        service=args.service,
        service_source=args.service_source,
        service_actuator=args.service_actuator,
        service_args=service_args,
        keep=args.keep,
    )
    if args.rollback:
        if args.bundle is not None:
            raise LinesideError("--rollback takes no BUNDLE: it switches the device back to its previous version")
        rollback(target, options)
        return 0
    if args.bundle is None:
        raise LinesideError("give the BUNDLE folder to deploy (or --rollback)")
    deploy_bundle(args.bundle, target, options)
    return 0
