"""PatchCore through the whole chain: `lineside train` -> `export` (FP32 / FP16 / INT8) -> `bench`, and a TensorRT-RTX build.

The bank distance is one MatMul against the constant -2 b^T with precomputed ||b||^2, then a
ReduceMin over the bank; the parity and accuracy gates are the export's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lineside.cli import main

pytestmark = pytest.mark.slow  # one tiny bank build and one export per precision
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("torch")


@pytest.fixture(scope="module")
def run(export_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: D103
    out = tmp_path_factory.mktemp("patchcore_run")
    argv = ["train", "--data", str(export_data), "--model", "patchcore", "--preset", "tiny", "--out", str(out)]
    assert main([*argv, "--threads", "2"]) == 0
    return out


@pytest.fixture(scope="module")
def bundles(run: Path, export_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("patchcore_bundles")
    made = {}
    for precision in ("fp32", "fp16", "int8"):
        made[precision] = root / precision
        argv = ["export", str(run / "model.pt"), "--precision", precision, "--data", str(export_data)]
        assert main([*argv, "--out", str(made[precision])]) == 0
    return made


def _bank_matmul(path: Path):  # noqa: ANN202 - an onnx NodeProto
    model = onnx.load(str(path))
    nodes = [n for n in model.graph.node if n.op_type == "MatMul" and "map_tail" not in n.name]
    assert len(nodes) == 1, [n.name for n in nodes]
    return model, nodes[0]


def test_train_builds_the_bank_and_logs_it(run: Path) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert metrics["model"] == "patchcore" and metrics["trainable_parameters"] == 0
    assert [r["stage"] for r in log] == ["memory bank"]
    assert log[0]["bank"] == round(0.1 * log[0]["patches"]) and log[0]["patches"] % 256 == 0  # 16 x 16 grid
    assert metrics["eval"]["mean"]["image_auroc"] > 0.8  # the synthetic defects are easy for a kNN


def test_epochs_is_refused_for_a_memory_bank(export_data: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    argv = ["train", "--data", str(export_data), "--model", "patchcore", "--preset", "tiny", "--epochs", "3"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    assert "memory bank" in capsys.readouterr().err


def test_fp32_graph_is_one_bank_matmul_with_parity(bundles: dict[str, Path], run: Path) -> None:
    from lineside.train.checkpoint import load_checkpoint

    report = json.loads((bundles["fp32"] / "report.json").read_text())
    assert report["parity"]["map_max_abs_err_rel"] < 1e-4 and report["inference_form"]["rewritten"]
    model, matmul = _bank_matmul(bundles["fp32"] / "model.onnx")
    bank = load_checkpoint(run / "model.pt").model.bank
    constants = {i.name: tuple(i.dims) for i in model.graph.initializer}
    constants |= {
        n.output[0]: tuple(a.t.dims) for n in model.graph.node if n.op_type == "Constant" for a in n.attribute
    }
    assert constants[matmul.input[1]] == (bank.shape[1], bank.shape[0])  # -2 b^T: (D, M)
    assert any(n.op_type == "ReduceMin" for n in model.graph.node)


def test_fp16_keeps_the_bank_distance_fp32_and_int8_keeps_accuracy(bundles: dict[str, Path]) -> None:
    half, matmul = _bank_matmul(bundles["fp16"] / "model.onnx")
    constants = {i.name: i.data_type for i in half.graph.initializer}
    constants |= {n.output[0]: a.t.data_type for n in half.graph.node if n.op_type == "Constant" for a in n.attribute}
    assert constants[matmul.input[1]] == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in half.graph.initializer)  # the encoder is FP16
    for name in ("model.onnx", "model_cpu.onnx"):  # the distance is a small difference of large terms: float
        quantized, matmul = _bank_matmul(bundles["int8"] / name)
        producers = {out: n.op_type for n in quantized.graph.node for out in n.output}
        assert "DequantizeLinear" not in {producers.get(i) for i in matmul.input}
    report = json.loads((bundles["int8"] / "report.json").read_text())
    accuracy = report["accuracy"]
    for flavour in ("int8_s8s8", "int8_u8s8"):
        assert abs(accuracy[flavour]["mean"]["image_auroc"] - accuracy["fp32"]["mean"]["image_auroc"]) <= 0.05


def test_bench_times_every_precision(bundles: dict[str, Path], export_data: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    argv = ["bench", *map(str, bundles.values()), "--data", str(export_data), "--eval-limit", "4", "--runs", "4"]
    assert main([*argv, "--warmup", "1", "--batch-runs", "2", "--no-memory", "--report", str(report)]) == 0
    rows = {row["name"] for row in json.loads((report / "results.json").read_text())["variants"]}
    assert {"patchcore ort fp32", "patchcore ort fp16", "patchcore ort int8 u8s8"} <= rows


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_rtx_builds_the_bank_graph(bundles: dict[str, Path], precision: str) -> None:
    pytest.importorskip("tensorrt_rtx_bindings", reason="TensorRT-RTX: pip install 'lineside[tensorrt-rtx]'")
    from lineside.engine_file import read_engine

    bundle = bundles[precision]
    assert main(["build", str(bundle), "--target", "sm86", "--plain"]) == 0
    metadata, _ = read_engine(bundle / "model.engine")
    assert metadata.model == "patchcore" and metadata.precision == precision
    layers = json.loads((bundle / "model.layers.json").read_text())
    assert layers["by_type"].get("MATRIX_MULTIPLY")  # the bank distance and the map tail
