"""Validation at every entry (issue 16, finding 3), property-based: manifests, engine headers, CLI options.

Whatever a manifest, an engine header or a command line holds, lineside either refuses it with one
line and exit code 2, or accepts values that keep the fail-safe on: never a traceback, never an
internal error (exit 1), never a NaN/garbage threshold that lets a part PASS.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import struct
from pathlib import Path
from typing import Any

import cv2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runtime_support import make_bundle, render_part

from lineside.bundle import MANIFEST_NAME, Bundle, Manifest, TensorSpec
from lineside.cli import build_parser, main
from lineside.engine_file import MAGIC, EngineMetadata, encode_engine, read_engine
from lineside.errors import LinesideError
from lineside.runtime.decision import Verdict, decide, resolve_threshold
from lineside.validate import bounded_int, finite_float, float_arg, int_arg

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any JSON value, NaN and infinities included (Python's json reads and writes them).
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
NOT_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])


def _manifest() -> Manifest:
    size = (64, 64)
    return Manifest(
        model="m",
        preset="edge",
        classes=("part",),
        input_size=size,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        precision="int8",
        inputs=(TensorSpec("image", (1, *size, 3), "uint8"),),
        outputs=(TensorSpec("anomaly_map", (1, 1, *size), "float32"), TensorSpec("score", (1,), "float32")),
        thresholds={"part": 0.7},
        files={"model.onnx": "ab" * 32},
    )


def _one_line(exc: BaseException) -> None:
    assert isinstance(exc, LinesideError), repr(exc)
    assert str(exc) and "Traceback" not in str(exc)


def _json_round_trip(raw: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(raw))  # what a manifest.json on disk would hold


def _check_safe(manifest: Manifest) -> None:
    """An accepted manifest keeps the fail-safe on: finite thresholds >= 0, sane sizes."""
    assert all(type(t) is float and math.isfinite(t) and t >= 0 for t in manifest.thresholds.values())
    assert all(type(v) is int and 1 <= v <= 16384 for v in manifest.input_size)
    assert all(math.isfinite(v) for v in manifest.mean) and all(math.isfinite(v) and v > 0 for v in manifest.std)
    bundle = Bundle(Path("unused"), manifest)
    for name in manifest.thresholds:
        threshold = resolve_threshold(bundle, None, name)
        assert decide(math.nextafter(threshold, math.inf), threshold) is Verdict.REJECT  # a higher score never PASSes
        assert decide(math.nan, threshold) is Verdict.ERROR


# -- manifests ---------------------------------------------------------------------------------------------------


@FAST
@given(field=st.sampled_from(sorted(_manifest().to_dict())), value=JSON)
def test_any_manifest_field_is_refused_in_one_line_or_safe(field: str, value: Any) -> None:
    raw = _json_round_trip(_manifest().to_dict() | {field: value})
    try:
        manifest = Manifest.from_dict(raw)
    except Exception as exc:  # noqa: BLE001 - the property: only LinesideError may come out
        _one_line(exc)
    else:
        _check_safe(manifest)


@FAST
@given(thresholds=JSON | st.dictionaries(st.text(max_size=6), JSON | NOT_FINITE, max_size=3))
def test_no_threshold_makes_a_part_pass_silently(thresholds: Any) -> None:
    raw = _json_round_trip(_manifest().to_dict() | {"thresholds": thresholds})
    try:
        manifest = Manifest.from_dict(raw)
    except Exception as exc:  # noqa: BLE001
        _one_line(exc)
    else:
        _check_safe(manifest)


@FAST
@given(key=st.sampled_from(["input_size", "mean", "std", "inputs", "outputs"]), data=st.data())
def test_nested_manifest_values_are_checked(key: str, data: st.DataObject) -> None:
    raw = _json_round_trip(_manifest().to_dict())
    target = raw[key] if key in ("input_size", "mean", "std") else raw[key][0]["shape"]
    target[data.draw(st.integers(0, len(target) - 1))] = data.draw(JSON | NOT_FINITE)
    try:
        manifest = Manifest.from_dict(raw)
    except Exception as exc:  # noqa: BLE001
        _one_line(exc)
    else:
        _check_safe(manifest)
        dims = [d for spec in manifest.inputs + manifest.outputs for d in spec.shape]
        assert all(isinstance(d, str) and d or type(d) is int and d >= 1 for d in dims)


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real bundle around the test detector and a folder of three parts (one defect)."""
    root = tmp_path_factory.mktemp("validation")
    folder = root / "parts"
    folder.mkdir()
    for index in range(3):
        cv2.imwrite(str(folder / f"part{index}.png"), render_part(index == 1, index))
    return {"bundle": make_bundle(root / "bundle").path, "parts": folder, "root": root}


def _main(argv: list[str]) -> tuple[int, str]:
    """`lineside ARGV` in this process: (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
    return code, err.getvalue()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("thresholds", [{"part": math.nan}, {"part": math.inf}, {"part": -0.5}, {"part": "0.5"}, []])
def test_run_refuses_a_manifest_threshold_that_would_pass_parts(
    line: dict[str, Path], tmp_path: Path, thresholds: Any
) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for name in ("model.onnx", MANIFEST_NAME):
        (bundle / name).write_bytes((line["bundle"] / name).read_bytes())
    raw = json.loads((bundle / MANIFEST_NAME).read_text()) | {"thresholds": thresholds}
    (bundle / MANIFEST_NAME).write_text(json.dumps(raw))  # NaN / Infinity as Python writes them
    code, err = _main(["run", str(bundle), "--source", str(line["parts"]), "--quiet"])
    assert code == 2, err
    assert err.count("\n") == 1 and "threshold" in err and "Traceback" not in err


# -- engine headers ----------------------------------------------------------------------------------------------

PLAN = bytes(range(256)) * 4


def _metadata() -> EngineMetadata:
    manifest = _manifest()
    return EngineMetadata(
        library="tensorrt",
        library_version="10.3.0",
        compute_capabilities=("8.7",),
        gpu_name="Orin",
        precision="int8",
        model="crr",
        inputs=manifest.inputs,
        outputs=manifest.outputs,
        bundle_model_sha256="ab" * 32,
        build_options={"workspace_mb": 512},
        layer_counts={"int8": 40},
        build_seconds=1.5,
    )


def _engine_bytes(raw: dict[str, Any]) -> bytes:
    text = json.dumps(raw).encode("utf-8")
    return struct.pack("<8sIQ", MAGIC, 1, len(text)) + text + PLAN


@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engines")


def _read(folder: Path, data: bytes) -> EngineMetadata | None:
    path = folder / "m.engine"
    path.write_bytes(data)
    try:
        metadata, plan = read_engine(path)
    except Exception as exc:  # noqa: BLE001
        _one_line(exc)
        return None
    assert plan == PLAN[: metadata.plan_bytes] and metadata.plan_bytes == len(plan)
    assert math.isfinite(metadata.build_seconds) and metadata.build_seconds >= 0
    assert all(type(v) is int and v >= 0 for v in metadata.layer_counts.values())
    return metadata


@FAST
@given(field=st.sampled_from(sorted(_metadata().to_dict())), value=JSON | NOT_FINITE)
def test_any_engine_header_field_is_refused_in_one_line_or_sane(engine_dir: Path, field: str, value: Any) -> None:
    good = json.loads(encode_engine(_metadata(), PLAN)[20 : -len(PLAN)])
    _read(engine_dir, _engine_bytes(good | {field: value}))


@FAST
@given(cut=st.integers(0, 2000), flip=st.integers(0, 2000), byte=st.integers(0, 255))
def test_damaged_engine_bytes_are_refused_or_read_intact(engine_dir: Path, cut: int, flip: int, byte: int) -> None:
    data = bytearray(encode_engine(_metadata(), PLAN))
    if flip < len(data):
        data[flip] = byte
    metadata = _read(engine_dir, bytes(data[: len(data) - cut]))
    if metadata is not None:  # accepted: then the plan is exactly the one its header hashes
        assert hashlib.sha256(PLAN).hexdigest() == metadata.plan_sha256


def test_engine_header_with_nan_build_time_or_list_counts_is_refused(engine_dir: Path) -> None:
    good = json.loads(encode_engine(_metadata(), PLAN)[20 : -len(PLAN)])
    for change in ({"build_seconds": math.nan}, {"layer_counts": []}, {"plan_bytes": 1024.0}, {"library": "onnx"}):
        assert _read(engine_dir, _engine_bytes(good | change)) is None, change


# -- command-line options ----------------------------------------------------------------------------------------

BAD_NUMBERS = ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e999", "-1e999", "", "x", "1,5", "0x10"]


def _run_numeric_options() -> list[tuple[str, str, Any]]:
    """(flag, dest, type) of every numeric option of `lineside run`, as the parser defines them today."""
    sub = next(a for a in build_parser()._subparsers._group_actions if a.choices)  # type: ignore[union-attr]
    run = sub.choices["run"]
    found = []
    for action in run._actions:
        kind = action.type
        if kind in (float, int) or getattr(kind, "__name__", "") in ("number", "integer"):
            found.append((action.option_strings[-1], action.dest, kind))
    return found


RUN_OPTIONS = _run_numeric_options()
PARSE_CHECKED = [o for o in RUN_OPTIONS if o[2] not in (float, int)]  # a bare float/int is checked later, in run()


def test_the_run_options_under_test_include_the_fail_safe_timings() -> None:
    flags = {flag for flag, _, _ in RUN_OPTIONS}
    assert {"--delay-ms", "--pulse-ms", "--timeout-ms", "--rate", "--threshold", "--queue", "--delay-counts"} <= flags


@FAST
@given(
    option=st.sampled_from(PARSE_CHECKED),
    value=st.sampled_from(BAD_NUMBERS)
    | st.floats(allow_nan=True, allow_infinity=True).map(repr)
    | st.integers(-(2**40), 2**40).map(str)
    | st.text(max_size=6),
)
def test_run_option_values_parse_finite_and_in_range_or_exit_2(option: tuple[str, str, Any], value: str) -> None:
    flag, dest, _ = option
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            args = build_parser().parse_args(["run", "BUNDLE", "--source", "SRC", f"{flag}={value}"])
        except SystemExit as exc:
            assert exc.code == 2 and err.getvalue().count("\n") == 1 and flag in err.getvalue()
            return
    parsed = getattr(args, dest)
    assert type(parsed) in (int, float) and math.isfinite(parsed)
    assert parsed >= 0  # every run option is a time, count, rate, size or score


@FAST
@given(option=st.sampled_from(RUN_OPTIONS), value=st.sampled_from(["nan", "inf", "-inf", "1e999", "garbage"]))
def test_lineside_run_with_a_non_finite_option_exits_2_before_inspecting(
    line: dict[str, Path], option: tuple[str, str, Any], value: str
) -> None:
    code, err = _main(["run", str(line["bundle"]), "--source", str(line["parts"]), "--quiet", f"{option[0]}={value}"])
    assert code == 2, (option[0], value, err[-300:])
    errors = [e for e in err.splitlines() if "error" in e]
    assert len(errors) == 1 and "Traceback" not in err


@pytest.mark.timeout(60)
@pytest.mark.parametrize("flag", ["--delay-ms", "--pulse-ms", "--timeout-ms", "--rate", "--heartbeat-ms", "--stall-s"])
def test_nan_timings_are_usage_errors(line: dict[str, Path], flag: str) -> None:
    code, err = _main(["run", str(line["bundle"]), "--source", str(line["parts"]), "--quiet", flag, "nan"])
    assert code == 2 and f"argument {flag}: must be a finite number, got nan" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "RUN/model.pt", "--data", "D", "--threads", "-2"],  # was an internal error (torch.set_num_threads)
        ["synth", "OUT", "--seed", "-1"],  # was an internal error (numpy seed)
        ["synth", "OUT", "--workers", "0"],  # was silently accepted
        ["calibrate", "BUNDLE", "--good", "G", "--threads", "-1"],  # was passed on to ONNX Runtime
        ["train", "--data", "D", "--model", "crr", "--out", "O", "--seed", "-1"],  # was an internal error
        ["train", "--data", "D", "--model", "crr", "--out", "O", "--eval-every", "-1"],  # was silently accepted
    ],
)
def test_other_commands_refuse_out_of_range_integers(argv: list[str]) -> None:
    code, err = _main(argv)
    assert code == 2 and "must be an integer at least" in err and err.count("\n") == 1


# -- the helpers themselves --------------------------------------------------------------------------------------


@FAST
@given(value=JSON | NOT_FINITE, low=st.none() | st.floats(-10, 10), high=st.none() | st.floats(-10, 10))
def test_finite_float_returns_a_finite_float_in_range_or_refuses(value: Any, low: float | None, high: float | None):
    try:
        number = finite_float("x", value, at_least=low, at_most=high)
    except LinesideError as exc:
        assert str(exc).startswith("x ") and "\n" not in str(exc)
    else:
        assert type(number) is float and math.isfinite(number) and not isinstance(value, bool)
        assert (low is None or number >= low) and (high is None or number <= high)


@FAST
@given(value=JSON | NOT_FINITE)
def test_bounded_int_refuses_bools_floats_and_out_of_range(value: Any) -> None:
    try:
        number = bounded_int("n", value, at_least=0, at_most=10)
    except LinesideError:
        assert type(value) is not int or not 0 <= value <= 10
    else:
        assert type(number) is int and 0 <= number <= 10 and number == value


@FAST
@given(text=st.text(max_size=10) | st.floats(allow_nan=True).map(str))
def test_argparse_factories_raise_only_argument_type_errors(text: str) -> None:
    for parse in (float_arg(above=0, at_most=5), int_arg(at_least=1)):
        try:
            value = parse(text)
        except argparse.ArgumentTypeError as exc:
            assert "\n" not in str(exc)
        else:
            assert math.isfinite(value) and value > 0
