"""Real TensorRT-RTX ahead-of-time engine builds on this CPU-only machine, through `lineside build`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lineside.bundle import Bundle, Manifest, TensorSpec, write_bundle
from lineside.cli import main
from lineside.engine_file import read_engine

pytestmark = pytest.mark.slow  # the module fixture exports three models with torch (~8 s)

pytest.importorskip("tensorrt_rtx_bindings", reason="TensorRT-RTX: pip install 'lineside[tensorrt-rtx]'")
onnx = pytest.importorskip("onnx")

from engine_graphs import SIZE, export_onnx, tiny_bundle, tiny_manifest  # noqa: E402


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Bundle]:
    root = tmp_path_factory.mktemp("engine_bundles")
    return {precision: tiny_bundle(root, precision) for precision in ("fp32", "fp16", "int8")}


def _build(bundle: Bundle, out: Path, *extra: str) -> int:
    return main(["build", str(bundle.path), "--target", "sm86", "--out", str(out), *extra])


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_writes_engine_with_metadata(bundles: dict[str, Bundle], tmp_path: Path, precision: str) -> None:
    bundle = bundles[precision]
    out = tmp_path / "model.engine"
    assert _build(bundle, out) == 0
    metadata, plan = read_engine(out)
    assert metadata.library == "tensorrt-rtx"
    assert metadata.compute_capabilities == ("8.6",) and metadata.gpu_name is None
    assert metadata.precision == precision
    assert metadata.bundle_model_sha256 == bundle.manifest.model_sha256
    assert metadata.plan_bytes == len(plan) > 100_000
    assert [(t.name, t.shape, t.dtype) for t in metadata.inputs] == [("image", (1, *SIZE, 3), "uint8")]
    assert [(t.name, t.shape, t.dtype) for t in metadata.outputs] == [
        ("anomaly_map", (1, 1, *SIZE), "float32"),
        ("score", (1,), "float32"),
    ]
    assert metadata.build_options["strongly_typed"] is True and metadata.build_options["builder_flags"] == []


def test_layer_report_shows_precision_of_each_engine(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    reports = {}
    for precision, bundle in bundles.items():
        out = tmp_path / f"{precision}.engine"
        assert _build(bundle, out) == 0
        reports[precision] = json.loads(out.with_suffix(".layers.json").read_text())
        assert read_engine(out)[0].layer_counts == reports[precision]["counts"]
    fp32, fp16, int8 = reports["fp32"], reports["fp16"], reports["int8"]
    assert "int8" not in fp32["counts"] and "fp16" not in fp32["counts"] and fp32["int8_tensors"] == 0
    assert fp16["by_type"]["CONVOLUTION"] == {"fp16": 4}  # the body runs in half
    assert fp16["counts"]["fp16"] >= 15 and "int8" not in fp16["counts"]
    assert int8["by_type"]["CONVOLUTION"] == {"int8": 4}  # every conv is fed by DequantizeLinear on both operands
    assert int8["by_type"]["MATRIX_MULTIPLY"].get("int8", 0) >= 1
    assert int8["by_type"]["QUANTIZE"]["qdq"] > 10 and int8["int8_tensors"] > 20
    assert "fp16" not in int8["counts"]
    assert int8["source"] == "network" and "GPU" in int8["inspector_note"]


def test_plain_writes_bare_plan_and_sidecar(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    out = tmp_path / "model.engine"
    assert _build(bundles["int8"], out, "--plain") == 0
    metadata, plan = read_engine(out)
    assert (tmp_path / "model.plan").read_bytes() == plan
    sidecar = json.loads((tmp_path / "model.plan.json").read_text())
    assert sidecar["plan_sha256"] == metadata.plan_sha256 and sidecar["precision"] == "int8"


def test_default_out_is_bundle_model_engine_and_inspect_prints_it(
    bundles: dict[str, Bundle], capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = bundles["fp16"]
    assert main(["build", str(bundle.path), "--target", "sm89", "--workspace", "256", "--opt-level", "2"]) == 0
    engine = bundle.path / "model.engine"
    metadata = read_engine(engine)[0]
    assert metadata.compute_capabilities == ("8.9",)
    assert metadata.build_options["workspace_mb"] == 256 and metadata.build_options["opt_level"] == 2
    capsys.readouterr()
    assert main(["build", str(bundle.path), "--inspect", str(engine)]) == 0
    text = capsys.readouterr().out
    assert "tensorrt-rtx" in text and "(sm89)" in text and "fp16" in text and "matches bundle" in text
    assert "in  image [1, 64, 64, 3] uint8" in text


def test_targets_give_different_plans(bundles: dict[str, Bundle], tmp_path: Path) -> None:
    plans = {}
    for target in ("sm80", "sm120"):
        out = tmp_path / f"{target}.engine"
        assert main(["build", str(bundles["fp32"].path), "--target", target, "--out", str(out)]) == 0
        metadata, plans[target] = read_engine(out)
        assert metadata.target == target
    assert plans["sm80"] != plans["sm120"]


def test_turing_needs_fp16_matmul(
    bundles: dict[str, Bundle], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["build", str(bundles["fp32"].path), "--target", "sm75", "--out", str(tmp_path / "a.engine")]) == 2
    err = capsys.readouterr().err
    assert "Cannot compile operation '/proj/MatMul' for Turing" in err and "build an fp16 bundle for sm75" in err
    assert main(["build", str(bundles["fp16"].path), "--target", "sm75", "--out", str(tmp_path / "b.engine")]) == 0
    assert read_engine(tmp_path / "b.engine")[0].compute_capabilities == ("7.5",)


def test_bundle_claiming_int8_without_qdq_is_flagged(
    bundles: dict[str, Bundle], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = write_bundle(tmp_path / "wrong", tiny_manifest("int8"), {"model.onnx": bundles["fp32"].model_path})
    assert main(["build", str(wrong.path), "--target", "sm86"]) == 0
    assert "the bundle says int8 but no layer of its network runs int8" in capsys.readouterr().err


def test_timing_cache_is_refused_loudly_by_rtx(
    bundles: dict[str, Bundle], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "timing.cache"
    assert _build(bundles["fp32"], tmp_path / "m.engine", "--timing-cache", str(cache)) == 0
    assert "TensorRT-RTX has no timing cache" in capsys.readouterr().err
    assert not cache.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-batch", "4"], "static batch of 1"),
        (["--dla-core", "0"], "--dla-core needs TensorRT on a Jetson"),
        (["--opt-level", "9"], "--opt-level must be 0..5"),
        (["--workspace", "0"], "--workspace must be a positive"),
    ],
)
def test_bad_options_exit_2(
    bundles: dict[str, Bundle], tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert _build(bundles["fp16"], tmp_path / "m.engine", *args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "m.engine").exists()


def test_no_target_without_gpu_says_what_to_pass(
    bundles: dict[str, Bundle], capsys: pytest.CaptureFixture[str]
) -> None:
    from lineside.cuda_device import current_gpu

    if current_gpu() is not None:
        pytest.skip("this machine has a GPU: a build without --target targets it")
    assert main(["build", str(bundles["fp32"].path), "--library", "tensorrt-rtx"]) == 2
    assert "pass --target sm75|sm80|sm86|sm89|sm120" in capsys.readouterr().err


def test_parser_error_names_the_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    helper = onnx.helper
    graph = helper.make_graph(
        [
            helper.make_node("Transpose", ["image"], ["nchw"], name="layout_u8", perm=[0, 3, 1, 2]),
            helper.make_node("Cast", ["nchw"], ["anomaly_map"], name="to_float", to=onnx.TensorProto.FLOAT),
        ],
        "uint8_transpose",
        [helper.make_tensor_value_info("image", onnx.TensorProto.UINT8, [1, 8, 8, 3])],
        [helper.make_tensor_value_info("anomaly_map", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    manifest = Manifest(
        model="broken", preset="test", classes=("part",), input_size=(8, 8), mean=(0.5,) * 3, std=(0.5,) * 3,
        precision="fp32", inputs=(TensorSpec("image", (1, 8, 8, 3), "uint8"),),
        outputs=(TensorSpec("anomaly_map", (1, 3, 8, 8), "float32"),),
    )  # fmt: skip
    bundle = write_bundle(tmp_path / "broken", manifest, {"model.onnx": model.SerializeToString()})
    assert main(["build", str(bundle.path), "--target", "sm86"]) == 2
    err = capsys.readouterr().err
    assert "TensorRT cannot parse" in err and "node layout_u8 (Transpose)" in err and "UInt8" in err


def test_int32_bias_dequantize_is_refused_with_the_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx_path = export_onnx(tmp_path / "biasq.onnx", "int8", quantize_bias=True)
    bundle = write_bundle(tmp_path / "biasq", tiny_manifest("int8"), {"model.onnx": onnx_path})
    assert main(["build", str(bundle.path), "--target", "sm86"]) == 2
    err = capsys.readouterr().err
    assert "_DequantizeLinear (DequantizeLinear)" in err and "Int32" in err and "float biases" in err


def test_dynamic_batch_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from engine_graphs import _torch_model

    onnx_path = tmp_path / "dyn.onnx"
    with torch.no_grad():
        torch.onnx.export(
            _torch_model(half_body=False), (torch.zeros((1, *SIZE, 3), dtype=torch.uint8),), str(onnx_path),
            input_names=["image"], output_names=["anomaly_map", "score"], opset_version=17, dynamo=False,
            dynamic_axes={"image": {0: "batch"}, "anomaly_map": {0: "batch"}, "score": {0: "batch"}},
        )  # fmt: skip
    manifest = Manifest(
        model="tiny", preset="test", classes=("part",), input_size=SIZE, mean=(0.5,) * 3, std=(0.5,) * 3,
        precision="fp32", inputs=(TensorSpec("image", ("batch", *SIZE, 3), "uint8"),),
        outputs=(TensorSpec("anomaly_map", ("batch", 1, *SIZE), "float32"), TensorSpec("score", ("batch",), "float32")),
        dynamic_batch=True,
    )  # fmt: skip
    bundle = write_bundle(tmp_path / "dyn", manifest, {"model.onnx": onnx_path})
    assert main(["build", str(bundle.path), "--target", "sm86"]) == 2
    assert "pass --max-batch N" in capsys.readouterr().err
    assert main(["build", str(bundle.path), "--target", "sm86", "--max-batch", "4"]) == 0
    metadata = read_engine(bundle.path / "model.engine")[0]
    assert metadata.inputs[0].shape == ("batch", *SIZE, 3) and metadata.build_options["max_batch"] == 4


def test_without_either_library_says_what_to_install(bundles: dict[str, Bundle]) -> None:
    code = (
        "import sys; sys.modules['tensorrt'] = None; sys.modules['tensorrt_rtx_bindings'] = None\n"
        "from lineside.cli import main; raise SystemExit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "build", str(bundles["fp32"].path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "neither TensorRT nor TensorRT-RTX is installed" in result.stderr
    assert "pip install 'lineside[tensorrt-rtx]'" in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("library", "message"),
    [("tensorrt", "TensorRT is not installed"), ("tensorrt-rtx", "TensorRT-RTX is not installed")],
)
def test_forced_missing_library_names_it(bundles: dict[str, Bundle], library: str, message: str) -> None:
    code = (
        "import sys; sys.modules['tensorrt'] = None; sys.modules['tensorrt_rtx_bindings'] = None\n"
        "from lineside.cli import main; raise SystemExit(main(sys.argv[1:]))"
    )
    argv = [sys.executable, "-c", code, "build", str(bundles["fp32"].path), "--library", library]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1


def test_int8_graph_really_is_quantized(bundles: dict[str, Bundle]) -> None:
    model = onnx.load(str(bundles["int8"].model_path))
    ops = [node.op_type for node in model.graph.node]
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")
    assert any(w.dtype == np.int8 and w.ndim == 4 for w in weights.values())  # per-channel conv weights
    assert not any(w.dtype == np.int32 for w in weights.values())  # biases stay float for TensorRT


def test_export_helper_writes_fp16_body(tmp_path: Path) -> None:
    model = onnx.load(str(export_onnx(tmp_path / "h.onnx", "fp16")))
    halves = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert len(halves) >= 8
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in model.graph.output)
