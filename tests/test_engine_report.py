"""Layer report: precision of each layer from a really parsed network, and EngineInspector's JSON format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lineside.export.engine_report import LayerReport, format_precision, format_table, inspector_layers, network_report

onnx = pytest.importorskip("onnx")


def _qdq_conv_graph(quantize_weights: bool) -> bytes:
    """uint8 image -> Cast -> Transpose -> Q/DQ activation -> Conv (int8 weight via DQ, or float) -> Relu."""
    helper, tensor, numpy_helper = onnx.helper, onnx.TensorProto, onnx.numpy_helper
    weight = np.arange(8 * 3, dtype=np.float32).reshape(8, 3, 1, 1) / 10
    initializers = [
        numpy_helper.from_array(np.array(0.02, np.float32), "act_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "act_zero"),
    ]
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], name="cast", to=tensor.FLOAT),
        helper.make_node("Transpose", ["f"], ["nchw"], name="layout", perm=[0, 3, 1, 2]),
        helper.make_node("QuantizeLinear", ["nchw", "act_scale", "act_zero"], ["q"], name="q_act"),
        helper.make_node("DequantizeLinear", ["q", "act_scale", "act_zero"], ["dq"], name="dq_act"),
    ]
    if quantize_weights:
        scale = np.abs(weight).reshape(8, -1).max(1) / 127
        initializers += [
            numpy_helper.from_array(np.round(weight / scale[:, None, None, None]).astype(np.int8), "w_q"),
            numpy_helper.from_array(scale.astype(np.float32), "w_scale"),
            numpy_helper.from_array(np.zeros(8, np.int8), "w_zero"),
        ]
        nodes.append(helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], name="dq_w", axis=0))
    else:
        initializers.append(numpy_helper.from_array(weight, "w"))
    nodes += [
        helper.make_node("Conv", ["dq", "w"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["out"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("image", tensor.UINT8, [1, 4, 4, 3])],
        [helper.make_tensor_value_info("out", tensor.FLOAT, [1, 8, 4, 4])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _parsed(model: bytes) -> LayerReport:
    trt = pytest.importorskip("tensorrt_rtx_bindings")
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(model)
    return network_report(network)


def test_conv_fed_by_dequantize_on_both_operands_is_int8() -> None:
    report = _parsed(_qdq_conv_graph(quantize_weights=True))
    precisions = {layer.name: layer.precision for layer in report.layers}
    assert precisions["conv"] == "int8" and precisions["relu"] == "fp32"
    assert precisions["q_act"] == precisions["dq_act"] == precisions["dq_w"] == "qdq"
    assert all(layer.type != "CONSTANT" for layer in report.layers)  # weights are not work
    assert report.int8_tensors >= 2  # the quantized activation and the int8 weight constant
    assert report.by_type()["CONVOLUTION"] == {"int8": 1}


def test_conv_with_float_weights_is_not_int8() -> None:
    report = _parsed(_qdq_conv_graph(quantize_weights=False))
    assert report.by_type()["CONVOLUTION"] == {"fp32": 1}
    assert "int8" not in report.counts


def test_table_lists_types_and_totals() -> None:
    report = _parsed(_qdq_conv_graph(quantize_weights=True))
    report.inspector_note = "no GPU here"
    lines = format_table(report).splitlines()
    assert lines[0].split() == ["layer", "type", "int8", "fp32", "qdq"]
    assert lines[-2].split()[0] == "total" and lines[-1] == "no GPU here"
    assert any(line.split() == ["CONVOLUTION", "1", "0", "0"] for line in lines)


# EngineInspector JSON as TensorRT prints it with ProfilingVerbosity.DETAILED (documented format).
INSPECTOR_JSON = {
    "Layers": [
        {
            "Name": "conv + relu",
            "LayerType": "CaskConvolution",
            "Inputs": [{"Name": "dq", "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format."}],
            "Outputs": [
                {"Name": "out", "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format."}
            ],
            "TacticName": "sm80_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32",
        },
        {
            "Name": "matmul",
            "LayerType": "CaskGemmMatrixMultiply",
            "Inputs": [{"Name": "a", "Format/Datatype": "Row major linear FP16 format"}],
            "Outputs": [{"Name": "b", "Format/Datatype": "Row major linear FP16 format"}],
            "TacticValue": "0x0000000000000001",
        },
        {"Name": "tail", "LayerType": "Reduce", "Inputs": [{"Format/Datatype": "Float"}], "Outputs": []},
        "a name only (LAYER_NAMES_ONLY verbosity)",
    ],
    "Bindings": ["image", "anomaly_map", "score"],
}


def test_inspector_layers_and_counts() -> None:
    rows = inspector_layers(json.dumps(INSPECTOR_JSON))
    assert [row["precision"] for row in rows] == ["int8", "fp16", "fp32", "other"]
    assert rows[0]["tactic"].startswith("sm80_xmma") and rows[1]["tactic"] == "0x0000000000000001"
    report = LayerReport(source="network+inspector", engine_layers=rows)
    assert report.engine_counts == {"int8": 1, "fp16": 1, "fp32": 1, "other": 1}
    assert "built engine (EngineInspector): int8 1, fp16 1, fp32 1, other 1" in format_table(report)


@pytest.mark.parametrize(
    ("text", "precision"),
    [("Row major linear FP32", "fp32"), ("Half", "fp16"), ("Row major linear BF16 format", "bf16"), ("Int32", "other")],
)
def test_format_precision(text: str, precision: str) -> None:
    assert format_precision(text) == precision
