"""The whole chain for both models at every precision: checkpoint -> `lineside export` -> `lineside build` (TensorRT-RTX).

The checkpoints are untrained tiny models (EfficientNet-Lite0 with its real weights, random
decoders): an engine build does not depend on training, and training would only slow CI down.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lineside.cli import main
from lineside.engine_file import read_engine

pytestmark = pytest.mark.slow  # one real export (torch -> ONNX -> simplify -> fp16 / Q/DQ) per case, ~30-60 s

pytest.importorskip("tensorrt_rtx_bindings", reason="TensorRT-RTX: pip install 'lineside[tensorrt-rtx]'")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from lineside.train.checkpoint import save_checkpoint
    from lineside.train.models.base import build_model

    torch.set_num_threads(2)
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("engine_checkpoints")
    paths = {}
    for name in ("crr", "rlr"):
        paths[name] = root / f"{name}.pt"
        save_checkpoint(paths[name], build_model(name, "tiny", ["washer"]))
    return paths


@pytest.fixture(scope="module")
def data(synth_factory) -> Path:  # noqa: ANN001 - shared conftest fixture
    return synth_factory(categories=("washer",), n_train=4, n_test_good=2, n_test_defect=2, size=128)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("model", ["crr", "rlr"])
def test_export_then_build(
    checkpoints: dict[str, Path], data: Path, tmp_path: Path, model: str, precision: str
) -> None:
    bundle = tmp_path / f"{model}_{precision}"
    export = ["export", str(checkpoints[model]), "--precision", precision, "--out", str(bundle)]
    if precision == "int8":  # calibrate on the synthetic good parts; an untrained model's metrics mean nothing
        export += ["--data", str(data), "--calib-size", "4", "--eval-limit", "2"]
        export += ["--max-drop", "100", "--max-pixel-drop", "100", "--max-aupro-drop", "100"]
    assert main(export) == 0
    assert main(["build", str(bundle), "--target", "sm86", "--plain"]) == 0

    metadata, plan = read_engine(bundle / "model.engine")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert metadata.precision == precision and metadata.model == model
    assert metadata.bundle_model_sha256 == manifest["files"][manifest["model_file"]]
    assert metadata.inputs[0].shape == (1, 128, 128, 3) and metadata.inputs[0].dtype == "uint8"
    assert [t.name for t in metadata.outputs] == ["anomaly_map", "score"]
    assert all(t.dtype == "float32" for t in metadata.outputs)
    assert (bundle / "model.plan").read_bytes() == plan

    report = json.loads((bundle / "model.layers.json").read_text())
    convs, matmuls = report["by_type"]["CONVOLUTION"], report["by_type"].get("MATRIX_MULTIPLY", {})
    if precision == "fp32":
        assert set(report["counts"]) <= {"fp32", "other"}
    elif precision == "fp16":
        assert convs.get("fp16", 0) >= 0.8 * sum(convs.values()) and "int8" not in report["counts"]
        # the export keeps the few MatMul/Gemm that produce the compared features in FP32 (scoring tail)
        assert matmuls.get("fp16", 0) >= 0.75 * sum(matmuls.values()) > 0
    else:
        assert convs.get("int8", 0) >= 0.7 * sum(convs.values()) and matmuls.get("int8", 0) > 0
        assert "fp16" not in report["counts"] and report["int8_tensors"] > 100
