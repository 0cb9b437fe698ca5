"""`lineside deploy` against a real OpenSSH server on 127.0.0.1 (Debian openssh-server)."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from lineside.cli import main

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
pytestmark = [
    pytest.mark.network,
    pytest.mark.slow,
    pytest.mark.skipif(SSHD is None or shutil.which("ssh-keygen") is None, reason="openssh-server is not installed"),
]
PADDING = 256 * 1024 * 1024  # bytes of an extra bundle file, so the copy can be interrupted midway
LINESIDE = str(Path(sys.executable).with_name("lineside"))

# Wraps the target's tar: after a normal extraction, flips one byte of the model when the marker exists.
CORRUPTING_TAR = """#!/bin/sh
{tar} "$@" || exit $?
if [ -e "{marker}" ] && [ -f bundle/model.onnx ]; then
  printf 'X' | dd of=bundle/model.onnx bs=1 seek=200 conv=notrunc 2>/dev/null
fi
"""


@dataclass
class Sshd:
    port: int
    key: Path
    known_hosts: Path
    home: Path  # the deploy root's parent
    corrupt_marker: Path

    def args(self, *more: str, root: str = "site") -> list[str]:
        return [
            "deploy",
            *more,
            "--host",
            f"{getpass.getuser()}@127.0.0.1",
            "--port",
            str(self.port),
            "--identity",
            str(self.key),
            "--known-hosts",
            str(self.known_hosts),
            "--remote-dir",
            str(self.home / root),
            "--target-lineside",
            LINESIDE,
        ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().split()[1]


def _sshd_config(tmp: Path, port: int, bin_dir: Path) -> str:
    return "\n".join(
        [
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {tmp / 'host_key'}",
            f"PidFile {tmp / 'sshd.pid'}",
            f"AuthorizedKeysFile {tmp / 'authorized_keys'}",
            "UsePAM no",
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            f"SetEnv PATH={bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "LogLevel ERROR",
            "",
        ]
    )


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sshd")
    host_pub = _keygen(tmp / "host_key")
    _keygen(tmp / "user_key")
    shutil.copy(tmp / "user_key.pub", tmp / "authorized_keys")
    port = _free_port()
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    tar = bin_dir / "tar"
    tar.write_text(CORRUPTING_TAR.format(tar=shutil.which("tar"), marker=tmp / "corrupt"))
    tar.chmod(0o755)
    (tmp / "sshd_config").write_text(_sshd_config(tmp, port, bin_dir))
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege-separation directory sshd needs as root
    proc = subprocess.Popen([SSHD, "-D", "-f", str(tmp / "sshd_config"), "-E", str(tmp / "sshd.log")])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.skip(f"sshd did not start: {(tmp / 'sshd.log').read_text()}")
    (tmp / "known_hosts").write_text(f"[127.0.0.1]:{port} ssh-ed25519 {host_pub}\n")
    home = tmp / "remote"
    home.mkdir()
    yield Sshd(port, tmp / "user_key", tmp / "known_hosts", home, tmp / "corrupt")
    proc.terminate()
    proc.wait(timeout=10)


def _version_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "bundles").iterdir() if not p.name.startswith("."))


def _current(root: Path) -> str:
    return os.readlink(root / "current")


def test_deploy_switch_redeploy_and_rollback(sshd, tiny_bundle_factory, tmp_path, capsys):
    first = tiny_bundle_factory(tmp_path / "b1", classes=("washer",))
    from lineside.bundle import update_bundle

    update_bundle(first.path, thresholds={"washer": 0.25})
    second = tiny_bundle_factory(tmp_path / "b2", classes=("washer",))
    update_bundle(second.path, thresholds={"washer": 0.5})
    root = sshd.home / "site"

    assert main([*sshd.args(), str(first.path)]) == 0
    v1 = _version_dirs(root)
    assert len(v1) == 1 and _current(root) == f"bundles/{v1[0]}"
    manifest = json.loads((root / "current" / "manifest.json").read_text())
    assert manifest["thresholds"] == {"washer": 0.25}
    assert (root / "current" / "model.onnx").read_bytes() == (first.path / "model.onnx").read_bytes()
    out = capsys.readouterr().out
    assert "[1/7] connect to" in out and "verify sha256 on the target" in out and "2 files match" in out
    assert "smoke inference on the target" in out and "verdict PASS at threshold 0.25, score" in out

    assert main([*sshd.args("--no-smoke", "--service", "--service-source", "0"), str(second.path)]) == 0
    versions = _version_dirs(root)
    assert len(versions) == 2
    v2 = next(v for v in versions if v not in v1)
    assert _current(root) == f"bundles/{v2}" and os.readlink(root / "previous") == f"bundles/{v1[0]}"
    assert json.loads((root / "current" / "manifest.json").read_text())["thresholds"] == {"washer": 0.5}
    unit = (root / "lineside.service").read_text()
    assert f"ExecStart={LINESIDE} run {root}/current --source 0 --actuator log://" in unit
    assert "unit written to" in capsys.readouterr().out  # no running systemd in the test container

    assert main([*sshd.args("--rollback")]) == 0
    assert _current(root) == f"bundles/{v1[0]}" and os.readlink(root / "previous") == f"bundles/{v2}"
    assert json.loads((root / "current" / "manifest.json").read_text())["thresholds"] == {"washer": 0.25}
    assert not list((root / "bundles").glob(".incoming-*"))


def test_wrong_host_key_is_refused_and_nothing_is_copied(sshd, tiny_bundle_factory, tmp_path, capsys):
    bundle = tiny_bundle_factory(tmp_path / "b")
    _keygen(tmp_path / "other_host")
    other = (tmp_path / "other_host.pub").read_text().split()[1]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 {other}\n")
    args = sshd.args("--no-smoke", root="wrongkey")
    args[args.index("--known-hosts") + 1] = str(wrong)
    assert main([*args, str(bundle.path)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("lineside deploy: error:")]
    assert len(errors) == 1 and "host key" in errors[0] and "refusing to connect" in errors[0]
    assert "Traceback" not in err
    assert not (sshd.home / "wrongkey").exists()


def test_unreachable_host_is_a_clear_error(sshd, tiny_bundle_factory, tmp_path, capsys):
    bundle = tiny_bundle_factory(tmp_path / "b")
    args = sshd.args("--no-smoke", root="unreachable")
    args[args.index("--port") + 1] = str(_free_port())
    start = time.monotonic()
    assert main([*args, str(bundle.path)]) == 2
    err = capsys.readouterr().err
    assert "cannot reach" in err and "Connection refused" in err
    assert time.monotonic() - start < 10
    assert main(["deploy", "--host", "root@-oProxyCommand=touch", str(bundle.path)]) == 2
    assert "--host must be user@host" in capsys.readouterr().err


def test_checksum_mismatch_on_target_keeps_current(sshd, tiny_bundle_factory, tmp_path, capsys):
    good = tiny_bundle_factory(tmp_path / "good")
    root = sshd.home / "corrupt"
    assert main([*sshd.args("--no-smoke", root="corrupt"), str(good.path)]) == 0
    before = _current(root)
    sshd.corrupt_marker.touch()
    try:
        assert main([*sshd.args("--no-smoke", root="corrupt"), str(good.path)]) == 2
    finally:
        sshd.corrupt_marker.unlink()
    err = capsys.readouterr().err
    assert "checksum mismatch on the target" in err and "model.onnx" in err
    assert _current(root) == before and len(_version_dirs(root)) == 1
    assert not list((root / "bundles").glob(".incoming-*"))
    assert not (root / "previous").exists()


def test_interrupted_copy_leaves_no_half_written_version(sshd, tiny_bundle_factory, tmp_path):
    small = tiny_bundle_factory(tmp_path / "small")
    big = tiny_bundle_factory(tmp_path / "big", extra_files={"padding.bin": os.urandom(PADDING)})
    root = sshd.home / "interrupt"
    assert main([*sshd.args("--no-smoke", root="interrupt"), str(small.path)]) == 0
    before = _current(root)
    cmd = [sys.executable, "-m", "lineside", *sshd.args("--no-smoke", root="interrupt"), str(big.path)]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    staged = None
    while time.monotonic() < deadline and proc.poll() is None:
        staged = next((root / "bundles").glob(".incoming-*/bundle/padding.bin"), None)
        if staged is not None and staged.stat().st_size > 0:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the deploy and its ssh die mid-copy
    proc.wait(timeout=10)
    assert staged is not None, "the copy never started"
    assert staged.stat().st_size < PADDING
    time.sleep(0.5)
    assert _current(root) == before and len(_version_dirs(root)) == 1
    # the next deploy removes the stale staging folder and switches normally
    assert main([*sshd.args("--no-smoke", root="interrupt"), str(small.path)]) == 0
    assert not list((root / "bundles").glob(".incoming-*"))
    assert _current(root) != before and len(_version_dirs(root)) == 2


def test_remote_dir_is_quoted_never_interpreted(sshd, tiny_bundle_factory, tmp_path):
    bundle = tiny_bundle_factory(tmp_path / "b")
    odd = "odd dir/$(touch PWNED);x'y"
    assert main([*sshd.args("--no-smoke", root=odd), str(bundle.path)]) == 0
    root = sshd.home / odd
    assert (root / "current" / "manifest.json").is_file()
    assert not list(sshd.home.rglob("PWNED")) and not Path("PWNED").exists()


def _has_tensorrt_rtx() -> bool:
    try:
        import tensorrt_rtx_bindings  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(
    not _has_tensorrt_rtx(), reason="TensorRT-RTX is not installed (pip install 'lineside[tensorrt-rtx]')"
)
def test_build_on_target_with_tensorrt_rtx(sshd, tiny_bundle_factory, tmp_path, capsys):
    bundle = tiny_bundle_factory(tmp_path / "b")
    args = sshd.args("--build-on-target", "--build-args", "--target sm86 --max-batch 2", root="build")
    assert main([*args, "--smoke-backend", "ort", str(bundle.path)]) == 0
    out = capsys.readouterr().out
    assert "build . --target sm86 --max-batch 2" in out and "verdict" in out
    engine = sshd.home / "build" / "current" / "model.engine"
    assert engine.is_file() and engine.stat().st_size > 1000


def test_build_on_target_without_lineside_or_trtexec_is_refused(sshd, tiny_bundle_factory, tmp_path, capsys):
    bundle = tiny_bundle_factory(tmp_path / "b")
    root = sshd.home / "nobuild"
    assert main([*sshd.args("--no-smoke", root="nobuild"), str(bundle.path)]) == 0
    before = _current(root)
    args = sshd.args("--build-on-target", root="nobuild")
    args[args.index("--target-lineside") + 1] = "/nonexistent/lineside"
    assert main([*args, str(bundle.path)]) == 2
    err = capsys.readouterr().err
    assert "neither lineside (/nonexistent/lineside) nor trtexec is on the target" in err
    assert _current(root) == before and len(_version_dirs(root)) == 1
