"""The CLI contract: --help everywhere, --version, exit codes 0 / 1 / 2, one-line errors, lazy imports."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lineside
from lineside.cli import COMMANDS, main
from lineside.errors import LinesideError

LINESIDE = Path(sys.executable).with_name("lineside")
HEAVY_MODULES = ("torch", "torchvision", "timm", "onnx", "onnxruntime", "tensorrt", "tensorrt_rtx_bindings")
HEAVY_MODULES += ("pymodbus", "serial", "paramiko", "matplotlib", "sklearn")
BUNDLE_COMMANDS = {
    "build": [],
    "calibrate": ["--good", "{tmp}"],
    "run": ["--source", "{tmp}"],
    "bench": [],
    "deploy": ["--host", "user@127.0.0.1"],
}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINESIDE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_error(stderr: str) -> None:
    assert len(stderr.splitlines()) == 1, stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_subcommand(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: lineside {command}")
    help_text = importlib.import_module(f"lineside.commands.{command}").HELP
    assert " ".join(help_text.split()) in " ".join(out.split())


def test_top_level_help_lists_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert f"\n    {command}" in result.stdout


def test_version_from_console_script_and_module() -> None:
    assert run_cli("--version").stdout.strip() == f"lineside {lineside.__version__}"
    module = subprocess.run(
        [sys.executable, "-m", "lineside", "--version"], capture_output=True, text=True, timeout=120, check=False
    )
    assert (module.returncode, module.stdout.strip()) == (0, f"lineside {lineside.__version__}")


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: lineside" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no-such-command"], "invalid choice: 'no-such-command'"),
        (["train"], "the following arguments are required: --data, --model, --out"),
        (["train", "--data", "d", "--model", "vit", "--out", "o"], "argument --model: invalid choice: 'vit'"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_usage_errors_are_one_line_exit_2(argv: list[str], message: str) -> None:
    result = run_cli(*argv)
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert message in result.stderr
    assert result.stderr.startswith("lineside")


@pytest.mark.parametrize("command", sorted(BUNDLE_COMMANDS))
def test_missing_bundle_is_bad_input(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra = [arg.format(tmp=tmp_path) for arg in BUNDLE_COMMANDS[command]]
    assert main([command, str(tmp_path / "no-bundle"), *extra]) == 2
    captured = capsys.readouterr()
    assert_one_line_error(captured.err)
    assert captured.err.startswith(f"lineside {command}: error: ")


def test_missing_bundle_from_a_real_process(tmp_path: Path) -> None:
    result = run_cli("build", str(tmp_path / "no-bundle"))
    assert result.returncode == 2
    assert_one_line_error(result.stderr)


def raise_in(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """Make `lineside eval` raise `error`: the CLI's handlers must cope with any subcommand failing."""

    def failing_run(args: object) -> int:
        raise error

    monkeypatch.setattr(importlib.import_module("lineside.commands.eval"), "run", failing_run)


def test_lineside_error_is_one_line_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    raise_in(monkeypatch, LinesideError("data folder has no test images:\nadd test/good and test/<defect>"))
    assert main(["eval", "model.pt", "--data", "d"]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert err == "lineside eval: error: data folder has no test images: add test/good and test/<defect>\n"


def test_unexpected_exception_is_one_line_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LINESIDE_DEBUG", raising=False)
    raise_in(monkeypatch, ZeroDivisionError("division by zero\nin the scorer"))
    assert main(["eval", "model.pt", "--data", "d"]) == 1
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "internal error: ZeroDivisionError: division by zero in the scorer" in err
    assert "LINESIDE_DEBUG=1" in err


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINESIDE_DEBUG", "1")
    raise_in(monkeypatch, ZeroDivisionError("boom"))
    with pytest.raises(ZeroDivisionError):
        main(["eval", "model.pt", "--data", "d"])


def test_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    raise_in(monkeypatch, KeyboardInterrupt())
    assert main(["eval", "model.pt", "--data", "d"]) == 130
    assert capsys.readouterr().err == "lineside eval: interrupted\n"


def test_parser_imports_no_heavy_module() -> None:
    """`lineside --help` must stay fast on a Jetson: subcommands import torch & co inside run()."""
    code = (
        "import sys; from lineside.cli import build_parser; build_parser(); "
        f"print(','.join(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)))"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONSTARTUP"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
