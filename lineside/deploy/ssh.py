"""The system OpenSSH client as argument lists: strict host keys, batch mode, quoted remote commands.

Every remote command is a constant POSIX `sh` script plus positional arguments; `remote_command`
joins them with `shlex.quote`, so no user input is ever interpreted by the remote shell.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lineside.errors import LinesideError

_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]{0,31}$")
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]+\])$")
CONNECT_TIMEOUT_S = 10
SSH_FAILED = 255  # ssh's own exit status for connection and authentication failures


@dataclass(frozen=True)
class SshTarget:
    """Where to deploy: user@host:port, the identity key and the known_hosts file to trust."""

    user: str
    host: str
    port: int = 22
    identity: Path | None = None
    known_hosts: Path | None = None
    connect_timeout: int = CONNECT_TIMEOUT_S

    @property
    def label(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def parse_target(spec: str, port: int = 22, identity: Path | None = None, known_hosts: Path | None = None) -> SshTarget:
    """Parse and validate `user@host` (no options can be smuggled in through it)."""
    user, at, host = spec.rpartition("@")
    if not at or not _USER.match(user) or not _HOST.match(host):
        raise LinesideError(f"--host must be user@host (a user name and a host name or address), got {spec!r}")
    if not 0 < port < 65536:
        raise LinesideError(f"--port must be 1..65535, got {port}")
    for name, path in (("--identity", identity), ("--known-hosts", known_hosts)):
        if path is not None and not path.is_file():
            raise LinesideError(f"{name} file not found: {path}")
    return SshTarget(user=user, host=host.strip("[]"), port=port, identity=identity, known_hosts=known_hosts)


def remote_command(script: str, *args: str) -> str:
    """The one string ssh sends: `sh -c SCRIPT sh ARGS...`, every piece shell-quoted."""
    return shlex.join(["sh", "-c", script, "sh", *args])


def ssh_argv(target: SshTarget, command: str) -> list[str]:
    """Argument list of the system ssh client running `command` on `target`."""
    ssh = shutil.which("ssh")
    if ssh is None:
        raise LinesideError("the OpenSSH client (ssh) is not installed here: apt install openssh-client")
    argv = [
        ssh,
        "-p",
        str(target.port),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"ConnectTimeout={target.connect_timeout}",
        "-o",
        "ServerAliveInterval=5",
        "-o",
        "ServerAliveCountMax=3",
        "-l",
        target.user,
    ]
    if target.identity is not None:
        argv += ["-i", str(target.identity), "-o", "IdentitiesOnly=yes"]
    if target.known_hosts is not None:
        argv += ["-o", f"UserKnownHostsFile={target.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
    return [*argv, "--", target.host, command]


def connection_error(target: SshTarget, stderr: str) -> LinesideError:
    """Turn ssh's exit-255 diagnostics into one actionable line."""
    text = stderr.strip()
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "Host key verification failed" in text:
        where = target.known_hosts or "~/.ssh/known_hosts"
        return LinesideError(
            f"host key of {target.label} is unknown or does not match {where}: refusing to connect; verify the "
            f"device's fingerprint and add it (ssh-keyscan -p {target.port} {target.host} >> {where})"
        )
    if "Permission denied" in text:
        return LinesideError(f"{target.label} refused our key: pass --identity or install the public key there")
    last = text.splitlines()[-1] if text else "no diagnostics"
    return LinesideError(f"cannot reach {target.label}: {last} (check --host, --port and the network)")


@dataclass(frozen=True)
class RemoteResult:
    """Exit status and output of one remote command."""

    returncode: int
    stdout: str
    stderr: str


def run_remote(
    target: SshTarget, script: str, *args: str, stdin: str | None = None, timeout: float | None = 600
) -> RemoteResult:
    """Run a constant `sh` script with quoted arguments on the target; raises on connection failures."""
    argv = ssh_argv(target, remote_command(script, *args))
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LinesideError(f"{target.label} did not answer within {timeout:.0f} s") from exc
    if proc.returncode == SSH_FAILED:
        raise connection_error(target, proc.stderr)
    return RemoteResult(proc.returncode, proc.stdout, proc.stderr)


def open_remote(target: SshTarget, script: str, *args: str, stderr: IO[bytes] | int) -> subprocess.Popen[bytes]:
    """Start a remote script whose stdin we stream (the bundle upload)."""
    argv = ssh_argv(target, remote_command(script, *args))
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr)
