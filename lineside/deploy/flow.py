"""`lineside deploy` step by step: probe, stage, copy, verify, build, smoke test, switch, service, prune.

Nothing touches the target's `current` version until the copied bundle has passed its checksums,
the optional engine build and the smoke inference; any failure removes the staging folder and
leaves `current` (and a running service) as they were.
"""

from __future__ import annotations

import hashlib
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from lineside.bundle import MANIFEST_NAME, Bundle, load_bundle
from lineside.data import load_image
from lineside.deploy import scripts
from lineside.deploy.options import DeployOptions
from lineside.deploy.service import UNIT_NAME, ServiceSpec, render_unit
from lineside.deploy.ssh import RemoteResult, SshTarget, run_remote
from lineside.deploy.target_steps import build_on_target, smoke_frame, smoke_test
from lineside.deploy.upload import bundle_files, checksum_list, upload
from lineside.errors import LinesideError


@dataclass
class Steps:
    """Prints numbered step lines with timings; keeps them for the caller."""

    total: int
    done: list[str] = field(default_factory=list)
    _start: float = 0.0

    def begin(self, what: str) -> None:
        self._start = time.perf_counter()
        print(f"[{len(self.done) + 1}/{self.total}] {what} ...", flush=True)

    def end(self, outcome: str = "ok") -> None:
        line = f"{outcome} ({time.perf_counter() - self._start:.1f} s)"
        self.done.append(line)
        print(f"      {line}", flush=True)


def _check(result: RemoteResult, what: str) -> RemoteResult:
    if result.returncode != 0:
        detail = (result.stderr.strip() or result.stdout.strip())[-400:]
        raise LinesideError(f"{what} failed on the target (exit {result.returncode}): {detail}")
    return result


def _fields(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def probe(target: SshTarget, options: DeployOptions) -> dict[str, str]:
    """What the target offers (tools, lineside, trtexec, systemd, current version)."""
    info = _fields(
        _check(run_remote(target, scripts.PROBE, options.remote_dir, options.target_lineside[0]), "probe").stdout
    )
    missing = [tool for tool in ("sha256sum", "tar", "mv", "ln") if info.get(tool) != "yes"]
    if missing:
        raise LinesideError(f"the target lacks {', '.join(missing)} (coreutils/tar): install them there first")
    return info


def version_name(bundle_path: Path) -> str:
    """`<UTC time>-<sha12 of manifest.json>`: sortable by age, names the exact bundle."""
    digest = hashlib.sha256((bundle_path / MANIFEST_NAME).read_bytes()).hexdigest()[:12]
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{digest}"


def deploy_bundle(bundle_path: Path, target: SshTarget, options: DeployOptions) -> dict[str, str]:
    """Deploy a bundle; returns a summary (version, previous, engine, smoke, service)."""
    bundle = load_bundle(bundle_path)
    if not bundle.manifest.thresholds:
        print(f"WARNING: {bundle_path} has no calibrated thresholds: run `lineside calibrate` first", file=sys.stderr)
    files = bundle_files(bundle)
    frame = smoke_frame(bundle.manifest.input_size, load_image(options.smoke_image) if options.smoke_image else None)
    steps = Steps(total=7 + options.build_on_target + options.service)
    steps.begin(f"connect to {target.label}")
    info = probe(target, options)
    steps.end(
        f"{info.get('arch')}, lineside: {info.get('lineside') or 'absent'}, current: {info.get('current') or '-'}"
    )
    version = version_name(bundle.path)
    staging = f".incoming-{version}"
    root = options.remote_dir
    steps.begin(f"stage {root}/bundles/{staging}")
    root_abs = _fields(_check(run_remote(target, scripts.PREPARE, root, staging), "staging").stdout).get("root", root)
    steps.end()
    summary = {"version": version, "root": root_abs}
    try:
        _stage_and_test(bundle, files, frame, target, options, info, staging, steps, summary)
        steps.begin(f"switch current -> bundles/{version}")
        switch = run_remote(target, scripts.PROMOTE_AND_SWITCH, root, staging, version)
        summary["previous"] = _fields(_check(switch, "switch").stdout).get("previous", "")
    except BaseException:
        _discard(target, root, staging)
        raise
    steps.end(f"previous: {summary['previous'] or '-'}")
    if options.service:
        steps.begin("systemd unit")
        summary["service"] = install_service(target, options, info, root_abs)
        steps.end(summary["service"])
    else:
        restart = _fields(run_remote(target, scripts.RESTART_SERVICE, UNIT_NAME).stdout).get("restart", "skipped")
        summary["service"] = f"restart {restart}"
    steps.begin(f"prune (keep {options.keep})")
    pruned = _check(run_remote(target, scripts.PRUNE, root, str(options.keep)), "prune").stdout
    steps.end(f"removed {len(_fields(pruned))} old version(s)")
    print(f"deployed {version} to {target.label}:{root_abs}/current")
    return summary


def _stage_and_test(
    bundle: Bundle,
    files: dict[str, Path],
    frame: bytes,
    target: SshTarget,
    options: DeployOptions,
    info: dict[str, str],
    staging: str,
    steps: Steps,
    summary: dict[str, str],
) -> None:
    """Copy, verify, build and smoke-test inside the staging folder."""
    root = options.remote_dir
    steps.begin(f"copy {len(files)} files")
    sent = upload(target, root, staging, files, {"smoke/frame.png": frame})
    steps.end(f"{sent / 1e6:.1f} MB")
    steps.begin("verify sha256 on the target")
    result = run_remote(target, scripts.VERIFY, root, staging, "bundle", stdin=checksum_list(bundle))
    if result.returncode != 0:
        bad = [line for line in result.stdout.splitlines() if not line.endswith(": OK")]
        raise LinesideError(f"checksum mismatch on the target, not switched: {'; '.join(bad) or result.stderr.strip()}")
    steps.end(f"{len(files)} files match")
    if options.build_on_target:
        steps.begin("build the engine on the target")
        summary["engine"] = build_on_target(target, options, info, staging, bundle.manifest)
        steps.end(summary["engine"])
    steps.begin("smoke inference on the target")
    summary["smoke"] = smoke_test(target, options, info, staging, bundle.manifest, summary.get("engine", ""))
    steps.end(summary["smoke"])


def _discard(target: SshTarget, root: str, staging: str) -> None:
    """Best-effort removal of a failed deploy's staging folder (the next deploy removes it otherwise)."""
    try:
        run_remote(target, scripts.DISCARD, root, staging, timeout=60)
        print(f"      failed: removed {root}/bundles/{staging}; current is unchanged", file=sys.stderr)
    except LinesideError as exc:
        print(f"      failed; could not remove the staging folder ({exc}); current is unchanged", file=sys.stderr)


def install_service(target: SshTarget, options: DeployOptions, info: dict[str, str], root_abs: str) -> str:
    """Write ROOT/lineside.service; install and start it when systemd runs and we may."""
    if not info.get("lineside"):
        raise LinesideError("--service needs lineside installed on the target (see --target-lineside)")
    if not options.service_source:
        raise LinesideError("--service needs --service-source (the camera the line-side service reads)")
    spec = ServiceSpec(
        lineside=(info["lineside"], *options.target_lineside[1:]),
        root=root_abs,
        user=target.user,
        source=options.service_source,
        actuator=options.service_actuator,
        extra_args=options.service_args,
    )
    _check(run_remote(target, scripts.WRITE_FILE, root_abs, UNIT_NAME, stdin=render_unit(spec)), "writing the unit")
    unit = f"{root_abs}/{UNIT_NAME}"
    if info.get("systemd") != "yes":
        return f"unit written to {unit}; systemd is not running there, so it was not installed"
    result = run_remote(target, scripts.INSTALL_SERVICE, root_abs, UNIT_NAME, UNIT_NAME)
    if result.returncode != 0:
        return (
            f"unit written to {unit}; not installed ({result.stderr.strip()}): "
            f"sudo install -m 0644 {shlex.quote(unit)} /etc/systemd/system/ && sudo systemctl enable --now {UNIT_NAME}"
        )
    return f"installed and started {UNIT_NAME}"


def rollback(target: SshTarget, options: DeployOptions) -> dict[str, str]:
    """Switch `current` back to `previous` (and the new `previous` to what was current)."""
    print(f"[1/2] roll back {target.label}:{options.remote_dir}/current ...", flush=True)
    result = run_remote(target, scripts.ROLLBACK, options.remote_dir)
    if result.returncode == 3:
        raise LinesideError(result.stderr.strip())
    swapped = _fields(_check(result, "rollback").stdout)
    print(f"      current -> {swapped.get('current')} (previous -> {swapped.get('previous') or '-'})")
    print("[2/2] restart the service if installed ...", flush=True)
    restart = _fields(run_remote(target, scripts.RESTART_SERVICE, UNIT_NAME).stdout).get("restart", "skipped")
    print(f"      {restart}")
    return {**swapped, "service": restart}
