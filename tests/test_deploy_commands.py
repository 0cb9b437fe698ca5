"""Deploy building blocks without a server: remote quoting through a real sh, unit files, input checks."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lineside.bundle import Manifest, TensorSpec
from lineside.cli import main
from lineside.deploy.service import ServiceSpec, render_unit, systemd_quote
from lineside.deploy.ssh import parse_target, remote_command, ssh_argv
from lineside.deploy.target_steps import smoke_args, trtexec_command
from lineside.errors import LinesideError

NASTY = ["plain", "two words", "$(touch PWNED)", "`id`", "a'b\"c", "semi;colon", "new\nline", "-rf", "*", ""]


def test_remote_command_reaches_the_script_verbatim(tmp_path):
    # ssh hands the command string to the remote user's shell: run it through a real one
    command = remote_command('for a in "$@"; do printf "%s\\0" "$a"; done', *NASTY)
    out = subprocess.run(["sh", "-c", command], cwd=tmp_path, capture_output=True, check=True).stdout
    assert out.split(b"\0")[:-1] == [a.encode() for a in NASTY]
    assert not (tmp_path / "PWNED").exists()


def test_ssh_argv_is_strict():
    target = parse_target("jetson@10.0.0.5", port=2222)
    argv = ssh_argv(target, "true")
    assert "StrictHostKeyChecking=yes" in argv and "BatchMode=yes" in argv
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-l") + 1] == "jetson"
    assert argv[-3:] == ["--", "10.0.0.5", "true"]


@pytest.mark.parametrize(
    "spec", ["jetson", "@host", "user@", "-oProxyCommand=x@host", "user@-oProxyCommand=x", "us er@host", "u@h;x"]
)
def test_bad_host_specs_are_refused(spec):
    with pytest.raises(LinesideError, match="--host must be user@host"):
        parse_target(spec)


def test_missing_identity_and_bad_port(tmp_path):
    with pytest.raises(LinesideError, match="--identity file not found"):
        parse_target("a@b", identity=tmp_path / "nope")
    with pytest.raises(LinesideError, match="--port"):
        parse_target("a@b", port=70000)


def test_systemd_unit_quotes_arguments():
    assert systemd_quote("/opt/x/bin/lineside") == "/opt/x/bin/lineside"
    assert systemd_quote("100%") == "100%%"
    assert systemd_quote('v4l2src ! video/x-raw,width=640 ! appsink name="s"') == (
        '"v4l2src ! video/x-raw,width=640 ! appsink name=\\"s\\""'
    )
    unit = render_unit(
        ServiceSpec(("/usr/bin/lineside",), "/home/nv/lineside", "nv", "rtsp://cam/1", "modbus+tcp://plc:502?coil=3")
    )
    assert "User=nv\n" in unit and "Restart=always" in unit and "WantedBy=multi-user.target" in unit
    assert (
        "ExecStart=/usr/bin/lineside run /home/nv/lineside/current --source rtsp://cam/1 --actuator "
        '"modbus+tcp://plc:502?coil=3" --log /home/nv/lineside/logs/results.jsonl\n'
    ) in unit


def _manifest(precision: str, thresholds: dict[str, float]) -> Manifest:
    return Manifest(
        model="crr",
        preset="edge",
        classes=("bolt", "washer"),
        input_size=(256, 256),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        precision=precision,
        inputs=(TensorSpec("image", (1, 256, 256, 3), "uint8"),),
        outputs=(TensorSpec("score", (1,), "float32"),),
        thresholds=thresholds,
    )


def test_trtexec_and_smoke_commands():
    argv = trtexec_command("/usr/src/tensorrt/bin/trtexec", _manifest("int8", {}))
    assert argv == [
        "/usr/src/tensorrt/bin/trtexec",
        "--onnx=model.onnx",
        "--saveEngine=model.plan",
        "--int8",
        "--fp16",
        "--skipInference",
    ]
    assert smoke_args(_manifest("fp16", {"washer": 0.3}))[-2:] == ["--class", "washer"]
    assert smoke_args(_manifest("fp16", {}), "ort")[-4:] == ["--backend", "ort", "--threshold", "1e30"]


def test_cli_input_errors_are_one_line(tmp_path, capsys):
    assert main(["deploy", "--host", "a@b", "--rollback", str(tmp_path)]) == 2
    assert "--rollback takes no BUNDLE" in capsys.readouterr().err
    assert main(["deploy", "--host", "a@b"]) == 2
    assert "give the BUNDLE folder" in capsys.readouterr().err
    assert main(["deploy", "--host", "a@b", "--keep", "1", str(tmp_path)]) == 2
    assert "--keep must be at least 2" in capsys.readouterr().err
    assert main(["deploy", "--host", "a@b", "--remote-dir=-x", str(tmp_path)]) == 2
    assert "--remote-dir must be a plain path" in capsys.readouterr().err
    assert main(["deploy", "--host", "a@b", str(Path(tmp_path) / "missing")]) == 2
    assert "bundle folder not found" in capsys.readouterr().err


def test_missing_smoke_image_is_refused_before_connecting(tiny_bundle_factory, tmp_path, capsys):
    bundle = tiny_bundle_factory(tmp_path / "b")
    args = ["deploy", "--host", "a@192.0.2.1", "--smoke-image", str(tmp_path / "none.png"), str(bundle.path)]
    assert main(args) == 2  # 192.0.2.1 (TEST-NET) is never contacted: the image check comes first
    err = capsys.readouterr().err
    assert "none.png" in err and "cannot reach" not in err
