"""The TensorRT runtime backend on a machine without a GPU: imports without torch, refuses what it must.

Execution itself needs an NVIDIA GPU (docs/jetson.md says how to run it there); here the engine
is a real TensorRT-RTX ahead-of-time build and every check up to the GPU is exercised for real.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lineside.bundle import Bundle, Manifest, TensorSpec, write_bundle
from lineside.cli import main
from lineside.cuda_device import current_gpu
from lineside.engine_file import read_metadata
from lineside.errors import LinesideError

onnx = pytest.importorskip("onnx")
NO_GPU = current_gpu() is None


def _conv_bundle(path: Path, seed: int) -> Bundle:
    """uint8 NHWC image -> Cast -> Transpose -> 1x1 Conv -> anomaly map and its mean as score."""
    helper, tensor = onnx.helper, onnx.TensorProto
    weight = np.random.default_rng(seed).normal(size=(1, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=tensor.FLOAT),
        helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w"], ["anomaly_map"]),
        helper.make_node("ReduceMean", ["anomaly_map"], ["score"], axes=[1, 2, 3], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("image", tensor.UINT8, [1, 8, 8, 3])],
        [
            helper.make_tensor_value_info("anomaly_map", tensor.FLOAT, [1, 1, 8, 8]),
            helper.make_tensor_value_info("score", tensor.FLOAT, [1]),
        ],
        [onnx.numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    manifest = Manifest(
        model="conv", preset="test", classes=("part",), input_size=(8, 8), mean=(0.5,) * 3, std=(0.5,) * 3,
        precision="fp32", inputs=(TensorSpec("image", (1, 8, 8, 3), "uint8"),),
        outputs=(TensorSpec("anomaly_map", (1, 1, 8, 8), "float32"), TensorSpec("score", (1,), "float32")),
    )  # fmt: skip
    return write_bundle(path, manifest, {"model.onnx": model.SerializeToString()})


@pytest.fixture
def built(tmp_path: Path) -> Bundle:
    pytest.importorskip("tensorrt_rtx_bindings", reason="TensorRT-RTX: pip install 'lineside[tensorrt-rtx]'")
    bundle = _conv_bundle(tmp_path / "bundle", seed=0)
    assert main(["build", str(bundle.path), "--target", "sm86", "--library", "tensorrt-rtx"]) == 0
    return bundle


def test_runtime_backend_imports_without_torch_export_or_train() -> None:
    code = (
        "import sys\n"
        "for name in ('torch', 'lineside.train', 'lineside.export', 'tensorrt', 'tensorrt_rtx_bindings'):\n"
        "    sys.modules[name] = None\n"
        "import lineside.runtime.backends.tensorrt as t, lineside.runtime.backends.cuda_memory as c\n"
        "assert issubclass(t.TensorRTBackend, t.InferenceBackend) and t.TensorRTBackend.name == 'tensorrt'\n"
        "print('ok', c.open_cuda.__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok open_cuda"


def test_built_engine_records_the_bundle(built: Bundle) -> None:
    metadata = read_metadata(built.path / "model.engine")
    assert metadata.bundle_model_sha256 == built.manifest.model_sha256 and metadata.layer_counts["fp32"] >= 3


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_open_backend_without_gpu_refuses_clearly(built: Bundle) -> None:
    from lineside.runtime.backends.base import open_backend

    with pytest.raises(LinesideError, match="no NVIDIA GPU or driver found"):
        open_backend(built, "auto")  # auto picks TensorRT because BUNDLE/model.engine exists


def test_engine_from_another_bundle_is_refused_before_the_gpu(built: Bundle, tmp_path: Path) -> None:
    from lineside.runtime.backends.tensorrt import TensorRTBackend

    other = _conv_bundle(tmp_path / "other", seed=1)
    with pytest.raises(LinesideError, match="built from another bundle model.*rebuild it from this bundle"):
        TensorRTBackend(other, built.path / "model.engine")


def test_corrupt_engine_is_refused(built: Bundle) -> None:
    from lineside.runtime.backends.tensorrt import TensorRTBackend

    engine = built.path / "model.engine"
    data = bytearray(engine.read_bytes())
    data[-100] ^= 0xFF
    engine.write_bytes(bytes(data))
    with pytest.raises(LinesideError, match="is corrupt: the plan's sha256"):
        TensorRTBackend(built, engine)


def test_max_batch_from_header(built: Bundle) -> None:
    import dataclasses

    from lineside.runtime.backends.tensorrt import max_batch

    metadata = read_metadata(built.path / "model.engine")
    assert max_batch(metadata) == (1, False)
    dynamic = dataclasses.replace(
        metadata,
        inputs=(TensorSpec("image", ("batch", 8, 8, 3), "uint8"),),
        build_options=metadata.build_options | {"max_batch": 8},
    )
    assert max_batch(dynamic) == (8, True)


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_cuda_python_calls_are_checked_without_a_driver() -> None:
    pytest.importorskip("cuda.bindings", reason="cuda-python not installed")
    from lineside.runtime.backends.base import BackendError
    from lineside.runtime.backends.cuda_memory import CudaPythonMemory

    with pytest.raises(BackendError, match=r"cudaSetDevice failed: cudaError\w+: .+"):
        CudaPythonMemory(0)
