"""Stream a bundle to the target as a tar archive over ssh, with byte progress."""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import IO

from tqdm import tqdm

from lineside.bundle import MANIFEST_NAME, Bundle, sha256_file
from lineside.deploy import scripts
from lineside.deploy.ssh import SSH_FAILED, SshTarget, connection_error, open_remote
from lineside.errors import LinesideError

_TAR_BLOCK = 512
_TAR_HEADER = 3 * _TAR_BLOCK  # ustar header plus a PAX extended header, roughly
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class _Progress(io.RawIOBase):
    """A write-only stream that forwards to `sink` and counts bytes on a tqdm bar."""

    def __init__(self, sink: IO[bytes], bar: tqdm) -> None:
        self._sink, self._bar = sink, bar

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._sink.write(data)
        self._bar.update(len(data))
        return len(data)


def bundle_files(bundle: Bundle) -> dict[str, Path]:
    """The files a deploy copies (manifest + every listed file), names checked for safe transport."""
    names = [MANIFEST_NAME, *bundle.manifest.files]
    bad = [n for n in names if not _FILE_NAME.match(n)]
    if bad:
        raise LinesideError(f"bundle {bundle.path} has file names that cannot be deployed safely: {bad}")
    return {name: bundle.path / name for name in names}


def checksum_list(bundle: Bundle) -> str:
    """sha256sum -c input for the target: the manifest's own hash plus every file it lists."""
    lines = [f"{sha256_file(bundle.path / MANIFEST_NAME)}  {MANIFEST_NAME}"]
    lines += [f"{digest}  {name}" for name, digest in sorted(bundle.manifest.files.items())]
    return "\n".join(lines) + "\n"


def upload(target: SshTarget, root: str, staging: str, files: dict[str, Path], extra: dict[str, bytes]) -> int:
    """Send `files` (into staging/bundle/) and `extra` (arcname -> bytes) as one tar stream.

    Returns the (approximate) tar bytes sent. The remote tar fails on a truncated stream, so an interrupted copy
    leaves only the staging folder, which the next deploy removes.
    """
    sizes = [p.stat().st_size for p in files.values()] + [len(b) for b in extra.values()]
    total = sum(_TAR_HEADER + -(-size // _TAR_BLOCK) * _TAR_BLOCK for size in sizes) + tarfile.RECORDSIZE
    with tempfile.TemporaryFile() as errors:
        proc = open_remote(target, scripts.RECEIVE, root, staging, stderr=errors)
        if proc.stdin is None:
            raise LinesideError("could not open the upload stream to the target")
        try:
            with tqdm(total=total, unit="B", unit_scale=True, desc="copy") as bar:
                with tarfile.open(fileobj=_Progress(proc.stdin, bar), mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    for name, path in files.items():
                        tar.add(str(path), arcname=f"bundle/{name}", recursive=False)
                    for arcname, data in extra.items():
                        info = tarfile.TarInfo(arcname)
                        info.size, info.mode = len(data), 0o644
                        tar.addfile(info, io.BytesIO(data))
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the remote side quit; its exit status and stderr say why
        finally:
            if not proc.stdin.closed:
                proc.stdin.close()
            code = _wait(proc)
        errors.seek(0)
        stderr = errors.read().decode("utf-8", "replace")
    if code == SSH_FAILED:
        raise connection_error(target, stderr)
    if code != 0:
        raise LinesideError(f"copy to {target.label} failed (exit {code}): {stderr.strip()[-300:]}")
    return total


def _wait(proc: subprocess.Popen[bytes]) -> int:
    """Wait for the ssh process; kill it if it hangs after its input ended."""
    try:
        return proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
