"""Export steps on small real graphs: precision regions, FP16 conversion, static padding, INT8 Q/DQ, calibration set."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lineside.errors import LinesideError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from lineside.export.fp16 import convert_to_fp16  # noqa: E402
from lineside.export.fuse import check_inference_only, fuse  # noqa: E402
from lineside.export.int8 import FeedReader  # noqa: E402
from lineside.export.onnx_export import export_onnx  # noqa: E402
from lineside.export.ort_run import cpu_session, run_images  # noqa: E402
from lineside.export.regions import find_regions  # noqa: E402
from lineside.export.simplify import simplify  # noqa: E402
from lineside.train.models.base import AnomalyOutput  # noqa: E402
from lineside.train.preprocess import Preprocess  # noqa: E402

torch.set_num_threads(2)
SIZE = (64, 64)


class TinyDetector(nn.Module):
    """A small real anomaly graph with the model contract: encoder, normalised targets, decoder, cosine tail."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU6(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU6(), nn.AvgPool2d(3, 1, 1)
        )
        self.decoder = nn.Sequential(nn.Conv2d(32, 32, 1), nn.ReLU(), nn.Dropout(0.3), nn.Conv2d(32, 32, 1))

    def forward(self, images: torch.Tensor) -> AnomalyOutput:  # (B, 3, H, W)
        target = F.normalize(self.encoder(images), dim=1)  # (B, 32, H/4, W/4)
        recon = self.decoder(target)
        distance = 1.0 - F.cosine_similarity(target, recon, dim=1).unsqueeze(1)  # (B, 1, H/4, W/4)
        full = F.interpolate(distance, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return AnomalyOutput(full, full.flatten(1).amax(dim=1))


@pytest.fixture(scope="module")
def fp32_graph(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("steps")
    fused = fuse(Preprocess((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), TinyDetector())
    export_onnx(fused, folder / "raw.onnx", SIZE)
    simplify(folder / "raw.onnx", folder / "fp32.onnx")
    return folder / "fp32.onnx"


def _images(n: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8) for _ in range(n)]


def test_fused_module_is_inference_only_and_exports_uint8_io(fp32_graph: Path) -> None:
    fused = fuse(Preprocess((0.5,) * 3, (0.5,) * 3), TinyDetector())
    check = check_inference_only(fused, torch.from_numpy(_images(1)[0][None]))
    assert check.ok and check.mode_dependent_modules == 1  # the decoder's Dropout exists but is off
    fused.model.decoder[2].train()
    assert not check_inference_only(fused, torch.from_numpy(_images(1)[0][None])).ok
    model = onnx.load(str(fp32_graph))
    assert model.opset_import[0].version == 17
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [o.name for o in model.graph.output] == ["anomaly_map", "score"]
    assert "Dropout" not in {n.op_type for n in model.graph.node}


def test_regions_keep_normalisation_in_body_and_distance_in_tail(fp32_graph: Path) -> None:
    model = onnx.load(str(fp32_graph))
    regions = find_regions(model)
    ops = {n.name: n.op_type for n in model.graph.node}
    tail_ops = Counter(ops[name] for name in regions.tail)
    body_ops = Counter(ops[name] for name in regions.body)
    assert tail_ops["ReduceSum"] >= 1 and tail_ops["Resize"] == 1 and tail_ops["ReduceMax"] == 1
    assert body_ops["ReduceL2"] == 1  # F.normalize of the targets: normalisation, not a distance
    assert body_ops["Conv"] == 4 and tail_ops["Conv"] == 0
    assert regions.first_weighted is not None and ops[regions.first_weighted] == "Conv"
    assert all(ops[name] not in ("Conv", "MatMul", "Gemm") for name in regions.head)


class ChannelsLastDetector(TinyDetector):
    """TinyDetector whose distance is the models' channels-last cosine (`layers.cosine_distance`)."""

    def forward(self, images: torch.Tensor) -> AnomalyOutput:
        from lineside.train.models.layers import cosine_distance

        target = F.normalize(self.encoder(images), dim=1)
        distance = cosine_distance(target, self.decoder(target)).unsqueeze(1)  # (B, 1, H/4, W/4)
        full = F.interpolate(distance, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return AnomalyOutput(full, full.flatten(1).amax(dim=1))


def test_regions_put_channels_last_distances_and_their_permutes_in_tail(tmp_path: Path) -> None:
    torch.manual_seed(0)
    export_onnx(fuse(Preprocess((0.5,) * 3, (0.5,) * 3), ChannelsLastDetector()), tmp_path / "raw.onnx", SIZE)
    simplify(tmp_path / "raw.onnx", tmp_path / "fp32.onnx")
    model = onnx.load(str(tmp_path / "fp32.onnx"))
    regions = find_regions(model)
    ops = {n.name: n.op_type for n in model.graph.node}
    tail_ops = Counter(ops[name] for name in regions.tail)
    assert tail_ops["ReduceSum"] == 3 and tail_ops["Transpose"] >= 2  # a.b, |a|^2, |b|^2 over permuted maps
    assert Counter(ops[name] for name in regions.body)["Conv"] == 4


def test_fp16_graph_is_valid_keeps_fp32_io_and_tail_and_matches(fp32_graph: Path, tmp_path: Path) -> None:
    model = onnx.load(str(fp32_graph))
    regions = find_regions(model)
    half = convert_to_fp16(model, regions.body)
    onnx.checker.check_model(half, full_check=True)
    onnx.save(half, str(tmp_path / "fp16.onnx"))
    types = {i.name: i.type.tensor_type.elem_type for i in [*half.graph.value_info, *half.graph.output]}
    conv_types = {types[n.output[0]] for n in half.graph.node if n.op_type == "Conv"}
    assert conv_types == {onnx.TensorProto.FLOAT16}
    reduce_types = {types[n.output[0]] for n in half.graph.node if n.op_type in ("ReduceSum", "ReduceMax")}
    assert reduce_types == {onnx.TensorProto.FLOAT}
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in half.graph.output)
    half_weights = [i for i in half.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert len(half_weights) >= 4
    images = _images()
    ref = run_images(cpu_session(fp32_graph), images)
    out = run_images(cpu_session(tmp_path / "fp16.onnx"), images)
    assert out.maps.dtype == np.float32
    assert np.abs(out.maps - ref.maps).max() < 2e-2 * np.ptp(ref.maps)
    assert not np.array_equal(out.maps, ref.maps)  # it really computed in half precision


def _reader(images: list[np.ndarray]) -> FeedReader:
    """Calibration feeds of (H, W, 3) uint8 images."""
    return FeedReader([{"image": image[None]} for image in images])


def test_int8_flavours_have_the_right_qdq_types(fp32_graph: Path, tmp_path: Path) -> None:
    from lineside.export.int8 import QuantSpec, quantize, sensitive_nodes

    model = onnx.load(str(fp32_graph))
    regions = find_regions(model)
    excluded = sensitive_nodes(model, regions)
    assert regions.first_weighted in excluded and regions.tail <= set(excluded)
    images = _images(8)
    spec = QuantSpec("minmax", tmp_path / "ranges.json")
    s8 = quantize(fp32_graph, tmp_path / "s8s8.onnx", "s8s8", excluded, spec, _reader(images))
    assert spec.cache.is_file()  # calibrated once, reused below without a reader
    u8 = quantize(fp32_graph, tmp_path / "u8s8.onnx", "u8s8", excluded, spec)
    for path, activation in ((s8, onnx.TensorProto.INT8), (u8, onnx.TensorProto.UINT8)):
        graph = onnx.load(str(path)).graph
        init = {i.name: i for i in graph.initializer}
        zero_points = [init[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear"]
        assert zero_points and {z.data_type for z in zero_points} == {activation}
        dq_inputs = [init[n.input[0]] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in init]
        assert dq_inputs and {w.data_type for w in dq_inputs} == {onnx.TensorProto.INT8}  # weights; no int32 bias
        if activation == onnx.TensorProto.INT8:
            assert all(not onnx.numpy_helper.to_array(z).any() for z in zero_points)  # symmetric: zero point 0
        pools = [n.output[0] for n in graph.node if n.op_type == "AveragePool"]
        requantized = [any(p in n.input for n in graph.node if n.op_type == "QuantizeLinear") for p in pools]
        # TensorRT pools INT8; ORT's CPU QLinearAveragePool is slower than the float pool
        assert requantized == [activation == onnx.TensorProto.INT8]
        ref = run_images(cpu_session(fp32_graph), images)
        out = run_images(cpu_session(path), images)
        assert np.abs(out.maps - ref.maps).max() < 0.25 * np.ptp(ref.maps)


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_histogram_calibration_copes_with_near_constant_tensors(fp32_graph: Path, tmp_path: Path, method: str) -> None:
    """The cosine tail reads the squared norm of unit vectors (1 +- 1e-7): ORT's own collector cannot bin it."""
    import json

    from lineside.export.int8 import QuantSpec, quantize, sensitive_nodes

    excluded = sensitive_nodes(onnx.load(str(fp32_graph)), find_regions(onnx.load(str(fp32_graph))))
    images = _images(8)
    spec = QuantSpec(method, tmp_path / "ranges.json")
    u8 = quantize(fp32_graph, tmp_path / "u8s8.onnx", "u8s8", excluded, spec, _reader(images))
    cache = json.loads(spec.cache.read_text())
    assert method in json.dumps(cache).lower()
    ref = run_images(cpu_session(fp32_graph), images)
    out = run_images(cpu_session(u8), images)
    assert np.abs(out.maps - ref.maps).max() < 0.25 * np.ptp(ref.maps)


@pytest.mark.slow
def test_static_same_padding_removes_shape_ops_and_keeps_outputs() -> None:
    import io

    timm = pytest.importorskip("timm")
    from lineside.export.static_pad import freeze_same_padding

    torch.manual_seed(0)
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(1, 2)).eval()

    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (1, 3, 96, 96) -> (1, 40, 6, 6)
            return F.adaptive_avg_pool2d(self.net(x)[1], (6, 6))

    module = Pooled().eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        before = module(x)
    assert freeze_same_padding(module, x) >= 2
    with torch.no_grad():
        assert torch.equal(before, module(x))
    buffer = io.BytesIO()
    torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=17)  # adaptive pool needs static sizes
    ops = Counter(n.op_type for n in onnx.load_from_string(buffer.getvalue()).graph.node)
    assert ops["Shape"] == 0 and ops["Conv"] > 10


def test_calibration_set_is_stratified_and_preprocessed(synth_data: Path) -> None:
    from lineside.calibration.calib_set import build_calibration_set, data_reader

    calib = build_calibration_set(synth_data, (96, 80), 6)
    assert calib.per_category == {"mesh": 3, "washer": 3}
    assert all(image.shape == (96, 80, 3) and image.dtype == np.uint8 for image in calib.images)
    assert all(path.parent.name == "good" and path.parent.parent.name == "train" for path in calib.paths)
    reader = data_reader(calib)
    feeds = [reader.get_next() for _ in range(7)]
    assert [f is None for f in feeds] == [False] * 6 + [True]
    assert feeds[0]["image"].shape == (1, 96, 80, 3)
    more = build_calibration_set(synth_data, (96, 80), 100)
    assert len(more) == 16  # everything there is: 8 good training images per category


def test_calibration_set_refuses_bad_input(tmp_path: Path, synth_data: Path) -> None:
    from lineside.calibration.calib_set import build_calibration_set

    with pytest.raises(LinesideError, match="no such data set folder"):
        build_calibration_set(tmp_path / "missing", (64, 64), 4)
    with pytest.raises(LinesideError, match="at least 1"):
        build_calibration_set(synth_data, (64, 64), 0)


def test_fp16_and_int8_graphs_parse_in_tensorrt_rtx(fp32_graph: Path, tmp_path: Path) -> None:
    trt = pytest.importorskip("tensorrt_rtx_bindings")
    from lineside.export.int8 import QuantSpec, quantize, sensitive_nodes

    model = onnx.load(str(fp32_graph))
    regions = find_regions(model)
    onnx.save(convert_to_fp16(model, regions.body), str(tmp_path / "fp16.onnx"))
    spec = QuantSpec("minmax", tmp_path / "ranges.json")
    quantize(fp32_graph, tmp_path / "s8s8.onnx", "s8s8", sensitive_nodes(model, regions), spec, _reader(_images(4)))
    logger = trt.Logger(trt.Logger.ERROR)
    for name, dtype in (("fp16.onnx", trt.DataType.HALF), ("s8s8.onnx", trt.DataType.INT8)):
        builder = trt.Builder(logger)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, logger)
        assert parser.parse_from_file(str(tmp_path / name)), [
            parser.get_error(i).desc() for i in range(parser.num_errors)
        ]
        dtypes = Counter(network.get_layer(i).get_output(0).dtype for i in range(network.num_layers))
        assert dtypes[dtype] > 0
