"""Packaging: every folder is a listed package; the wheel installs without torch; editable installs map folders.

The slow tests build the real wheel (with build isolation, like `pip install .`), install it NON-editable into a fresh venv that has no torch
(numpy, opencv and onnxruntime come from the package index / local pip cache), and install the
source editable into another fresh venv. They skip only when pip cannot reach any index.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

from lineside.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS = PYPROJECT["tool"]["setuptools"]["package-dir"]  # import name -> folder
STAGES = {"lineside.train": "train", "lineside.export": "export", "lineside.calibration": "calibration"}
STAGES |= {"lineside.runtime": "runtime"}
NO_INDEX = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|"
    r"Network is unreachable|Max retries exceeded|ProxyError"
)


def source_packages() -> dict[str, Path]:
    """Every folder with an __init__.py under a mapped root, by its import name."""
    found: dict[str, Path] = {}
    for name, folder in PACKAGE_DIRS.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            if "__pycache__" in init.parts:
                continue
            relative = init.parent.relative_to(ROOT / folder).parts
            found.setdefault(".".join((name, *relative)), init.parent)
    return found


def source_modules() -> set[str]:
    """Paths of every .py file of every package as they must appear in the wheel (lineside/...)."""
    modules = set()
    for name, folder in source_packages().items():
        for path in folder.glob("*.py"):
            modules.add("/".join((*name.split("."), path.name)))
    return modules


def test_stage_folders_are_mapped_into_lineside() -> None:
    assert {name: PACKAGE_DIRS[name] for name in STAGES} == STAGES
    assert PYPROJECT["project"]["scripts"] == {"lineside": "lineside.cli:main"}


def test_every_package_folder_is_listed() -> None:
    """A new sub-folder with an __init__.py must be added to [tool.setuptools] packages, or the wheel lacks it."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = set(source_packages())
    assert sorted(on_disk - listed) == [], "add these to [tool.setuptools] packages in pyproject.toml"
    assert sorted(listed - on_disk) == [], "listed in pyproject.toml but missing on disk"


def clean_env() -> dict[str, str]:
    """The environment without this venv's activation, so the child venvs see only what they installed."""
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(args: list[str | Path], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args], capture_output=True, text=True, env=clean_env(), cwd=cwd, timeout=600, check=False
    )


def copy_source(destination: Path) -> Path:
    """Copy what the build needs, so building never writes build/ or egg-info into the checkout."""
    destination.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, destination / name)
    for folder in set(PACKAGE_DIRS.values()):
        shutil.copytree(ROOT / folder, destination / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return destination


def fresh_venv(path: Path) -> Path:
    """A new venv without system site-packages; returns its bin folder."""
    result = run([sys.executable, "-m", "venv", path])
    assert result.returncode == 0, result.stderr
    return path / "bin"


def pip_install(bin_dir: Path, *args: str | Path) -> None:
    """pip install into a venv; skip only when no package index can be reached."""
    result = run([bin_dir / "python", "-m", "pip", "install", "--quiet", *args])
    skip_without_index(result)
    assert result.returncode == 0, result.stdout + result.stderr


def skip_without_index(result: subprocess.CompletedProcess[str]) -> None:
    """Skip (with pip's own reason) when a pip call failed because no package index was reachable."""
    if result.returncode != 0 and NO_INDEX.search(result.stdout + result.stderr):
        pytest.skip(f"pip cannot reach a package index: {result.stderr.strip().splitlines()[-1]}")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = copy_source(work / "src")
    # Build isolation, as a user's `pip install .` does: setuptools comes from the index, not this venv.
    result = run([sys.executable, "-m", "pip", "wheel", source, "--no-deps", "-w", work])
    skip_without_index(result)
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = work.glob("lineside-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and the runtime's dependencies (numpy, opencv, onnxruntime), no torch."""
    bin_dir = fresh_venv(tmp_path_factory.mktemp("wheel-venv") / "venv")
    pip_install(bin_dir, f"{wheel}[opencv]", "onnxruntime")  # OpenCV is an extra: a Jetson keeps its own
    return bin_dir


@pytest.mark.slow
def test_wheel_contains_every_module(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        packaged = {name for name in archive.namelist() if name.endswith(".py")}
    assert sorted(source_modules() - packaged) == []
    assert sorted(packaged - source_modules()) == []
    for stage in STAGES:
        assert "/".join((*stage.split("."), "__init__.py")) in packaged


@pytest.mark.slow
def test_installed_wheel_runs_without_torch(wheel_venv: Path) -> None:
    no_torch = run([wheel_venv / "python", "-c", "import torch"])
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    help_result = run([wheel_venv / "lineside", "--help"])
    assert help_result.returncode == 0, help_result.stderr
    assert all(f"\n    {command}" in help_result.stdout for command in COMMANDS)
    version = run([wheel_venv / "python", "-m", "lineside", "--version"])
    assert (version.returncode, version.stdout.split()[0]) == (0, "lineside")


IMPORT_RUNTIME = """
import importlib, json, pkgutil, sys
import lineside.runtime
names = [m.name for m in pkgutil.walk_packages(lineside.runtime.__path__, "lineside.runtime.")]
for name in names:
    importlib.import_module(name)
stages = {s: importlib.util.find_spec(s).origin for s in sys.argv[1:]}
print(json.dumps({"modules": names, "torch": "torch" in sys.modules, "stages": stages}))
"""


@pytest.mark.slow
def test_runtime_imports_without_torch(wheel: Path, wheel_venv: Path) -> None:
    """`import lineside.runtime` and every runtime submodule work with torch absent, from site-packages."""
    result = run([wheel_venv / "python", "-c", IMPORT_RUNTIME, *STAGES], cwd=wheel_venv)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    with zipfile.ZipFile(wheel) as archive:
        packaged = [name for name in archive.namelist() if name.endswith(".py")]
    names = {path.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for path in packaged}
    expected = {name for name in names if name.startswith("lineside.runtime.")}
    assert sorted(expected - set(report["modules"])) == []
    assert report["torch"] is False
    site = wheel_venv.parent / "lib"
    for stage, origin in report["stages"].items():
        assert Path(origin).is_relative_to(site), f"{stage} imported from {origin}, not the installed wheel"


@pytest.mark.slow
def test_editable_install_maps_the_stage_folders(tmp_path: Path) -> None:
    source = copy_source(tmp_path / "src")
    bin_dir = fresh_venv(tmp_path / "venv")
    pip_install(bin_dir, "-e", source)
    (source / "train" / "editable_probe.py").write_text("VALUE = 41 + 1\n")
    code = (
        "import importlib.util, json, sys; import lineside.train.editable_probe as probe; "
        "print(json.dumps({'probe': probe.VALUE, "
        "'origins': {s: importlib.util.find_spec(s).origin for s in sys.argv[1:]}}))"
    )
    result = run([bin_dir / "python", "-c", code, "lineside", *STAGES], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["probe"] == 42  # a new file in the mapped folder is importable without reinstalling
    for name, folder in {"lineside": "lineside", **STAGES}.items():
        assert Path(report["origins"][name]) == source / folder / "__init__.py"
    assert run([bin_dir / "lineside", "--version"]).returncode == 0


@pytest.mark.slow
def test_installed_wheel_inspects_a_line_without_torch(wheel_venv: Path, tmp_path: Path) -> None:
    """`lineside run` from the wheel, torch absent: a real ONNX bundle, a video of 10 parts, a results log."""
    from runtime_support import make_bundle, write_video

    bundle = make_bundle(tmp_path / "bundle").path
    video = write_video(tmp_path / "parts.avi", [index % 5 == 2 for index in range(10)])
    log = tmp_path / "results.jsonl"
    result = run([wheel_venv / "lineside", "run", bundle, "--source", video, "--log", log, "--quiet"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("10 parts: 8 PASS, 2 REJECT, 0 ERROR")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    verdicts = [record["verdict"] for record in records if record["type"] == "part"]
    assert len(verdicts) == 10
