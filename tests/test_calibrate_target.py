"""`lineside calibrate --for`: a real tiny INT8 bundle (S8S8 model.onnx + U8S8 model_cpu.onnx) is calibrated on the
graph the line runs, the manifest records which, and `lineside run` warns when it runs another one."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from lineside.bundle import load_bundle, sha256_file, write_bundle
from lineside.calibration.thresholds_scoring import list_images
from lineside.cli import main
from lineside.runtime.runner import RunOptions, run_line

N_GOOD = 80  # enough for an empirical 5 % false-reject threshold at 95 % confidence (needs 59)


def _textures(count: int, seed: int) -> list[np.ndarray]:
    """(64, 64, 3) uint8 BGR good parts: a smooth gradient plus noise of a per-image amplitude."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(40, 200, 64)[None, :, None]  # (1, 64, 1)
    images = []
    for _ in range(count):
        noise = rng.normal(0.0, rng.uniform(3.0, 12.0), (64, 64, 3))
        images.append(np.clip(ramp + noise, 0, 255).astype(np.uint8))
    return images


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("good")
    for i, image in enumerate(_textures(N_GOOD, seed=7)):
        cv2.imwrite(str(folder / f"good{i:03d}.png"), image)
    return folder


def _export_conv_detector(path: Path) -> Path:
    """A tiny real anomaly graph with convolutions (what INT8 quantizes): uint8 NHWC BGR -> |conv(conv(x))| map."""
    import torch
    from torch import nn

    class ConvDetector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (N, H, W, 3) uint8
            amap = self.features(images.float().permute(0, 3, 1, 2) / 255.0).abs()  # (N, 1, H, W)
            return amap, amap.flatten(1).topk(40, dim=1).values.mean(dim=1)  # (N, 1, H, W), (N,)

    torch.set_num_threads(1)
    torch.onnx.export(
        ConvDetector().eval(), (torch.zeros((1, 64, 64, 3), dtype=torch.uint8),), str(path),
        input_names=["image"], output_names=["anomaly_map", "score"], opset_version=17, dynamo=False,
        dynamic_axes={"image": {0: "batch"}, "anomaly_map": {0: "batch"}, "score": {0: "batch"}},
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def int8_bundle(tiny_bundle_factory, tmp_path_factory) -> Path:
    """A conv graph quantized both ways (minmax ranges of 16 textures) in the tiny bundle's layout, as export does."""
    from lineside.export.int8 import FeedReader, QuantSpec, quantize

    base = tmp_path_factory.mktemp("int8")
    fp32 = tiny_bundle_factory(base / "fp32")  # the manifest: 64 x 64 uint8 NHWC in, map + score out
    graph = _export_conv_detector(base / "conv.onnx")
    feeds = [{"image": image[None]} for image in _textures(16, seed=1)]
    graphs = {
        flavour: quantize(
            graph, base / f"{flavour}.onnx", flavour, [], QuantSpec("minmax", base / f"{flavour}.cache"),
            FeedReader(feeds),
        )
        for flavour in ("s8s8", "u8s8")
    }  # fmt: skip
    manifest = dataclasses.replace(
        fp32.manifest, precision="int8", cpu_model_file="model_cpu.onnx", files={}, created=""
    )
    write_bundle(base / "int8", manifest, {"model.onnx": graphs["s8s8"], "model_cpu.onnx": graphs["u8s8"]})
    return base / "int8"


def _copy(bundle: Path, out: Path) -> Path:
    shutil.copytree(bundle, out)
    return out


def _calibrate(bundle: Path, good: Path, *extra: str) -> dict:
    argv = ["calibrate", str(bundle), "--good", str(good), "--false-reject", "0.05", "--method", "empirical"]
    assert main([*argv, *extra]) == 0
    return json.loads((bundle / "manifest.json").read_text())


def test_each_target_is_calibrated_on_its_own_graph_and_recorded(int8_bundle, good_dir, tmp_path, capsys):
    trt = _calibrate(_copy(int8_bundle, tmp_path / "trt"), good_dir, "--for", "tensorrt")
    assert "calibrating for tensorrt: scoring model.onnx" in capsys.readouterr().out
    cpu = _calibrate(_copy(int8_bundle, tmp_path / "cpu"), good_dir, "--for", "ort-cpu")
    assert "calibrating for ort-cpu: scoring model_cpu.onnx" in capsys.readouterr().out
    assert trt["calibrated_for"] == {
        "part": {"backend": "tensorrt", "graph": "model.onnx", "graph_sha256": sha256_file(int8_bundle / "model.onnx")}
    }
    assert cpu["calibrated_for"] == {
        "part": {
            "backend": "ort-cpu",
            "graph": "model_cpu.onnx",
            "graph_sha256": sha256_file(int8_bundle / "model_cpu.onnx"),
        }
    }
    # the two flavours score the same parts differently, so their thresholds differ
    s8s8, u8s8 = trt["thresholds"]["part"], cpu["thresholds"]["part"]
    assert abs(s8s8 - u8s8) > 1e-4 * max(abs(s8s8), abs(u8s8)), (s8s8, u8s8)
    assert load_bundle(tmp_path / "trt").manifest.calibrated_for["part"].graph == "model.onnx"  # checksums verify


def test_default_target_is_what_run_picks(int8_bundle, good_dir, tmp_path, capsys):
    cpu = _calibrate(_copy(int8_bundle, tmp_path / "plain"), good_dir)  # no engine, CPU-only ONNX Runtime here
    assert cpu["calibrated_for"]["part"]["backend"] == "ort-cpu"
    with_engine = _copy(int8_bundle, tmp_path / "engine")
    (with_engine / "model.engine").write_bytes(b"")  # `lineside run` would open it with TensorRT
    assert _calibrate(with_engine, good_dir)["calibrated_for"]["part"]["graph"] == "model.onnx"
    capsys.readouterr()


def _start_event(bundle: Path, good: Path, log: Path) -> dict:
    options = RunOptions(bundle=bundle, source=str(good), log_path=log, status=False, warmup=1)
    run_line(options)
    return json.loads(log.read_text().splitlines()[0])


def test_run_warns_when_it_runs_a_graph_the_thresholds_were_not_made_for(
    int8_bundle, good_dir, tmp_path, caplog, capsys
):
    few = tmp_path / "few"
    few.mkdir()
    for image in list_images(good_dir)[:3]:
        shutil.copy(image, few / image.name)
    trt = _copy(int8_bundle, tmp_path / "trt")
    _calibrate(trt, good_dir, "--for", "tensorrt")
    with caplog.at_level(logging.WARNING, logger="lineside.runtime.runner"):
        start = _start_event(trt, few, tmp_path / "trt.jsonl")  # ORT on CPU runs model_cpu.onnx here
    warnings = [r.getMessage() for r in caplog.records if "THRESHOLD NOT CALIBRATED" in r.getMessage()]
    assert len(warnings) == 1
    assert "calibrated for tensorrt on model.onnx" in warnings[0] and "runs ort-cpu on model_cpu.onnx" in warnings[0]
    assert start["calibration"]["mismatch"] in warnings[0]
    assert start["calibration"]["calibrated_for"]["graph"] == "model.onnx"
    assert start["calibration"]["running"] == {
        "backend": "ort-cpu",
        "graph": "model_cpu.onnx",
        "graph_sha256": sha256_file(int8_bundle / "model_cpu.onnx"),
    }
    caplog.clear()
    cpu = _copy(int8_bundle, tmp_path / "cpu")
    _calibrate(cpu, good_dir, "--for", "ort-cpu")
    with caplog.at_level(logging.WARNING, logger="lineside.runtime.runner"):
        start = _start_event(cpu, few, tmp_path / "cpu.jsonl")
    assert start["calibration"]["mismatch"] is None
    assert not [r for r in caplog.records if "THRESHOLD NOT CALIBRATED" in r.getMessage()]
    capsys.readouterr()


def test_uncalibrated_record_of_a_two_graph_bundle_is_warned(int8_bundle, good_dir, tmp_path, caplog):
    from lineside.bundle import update_bundle

    old = _copy(int8_bundle, tmp_path / "old")
    update_bundle(old, thresholds={"part": 0.05})  # calibrated before the graph was recorded
    few = tmp_path / "few"
    few.mkdir()
    shutil.copy(list_images(good_dir)[0], few / "a.png")
    with caplog.at_level(logging.WARNING, logger="lineside.runtime.runner"):
        start = _start_event(old, few, tmp_path / "old.jsonl")
    assert "does not record the graph it was calibrated on" in start["calibration"]["mismatch"]
    assert any("THRESHOLD NOT CALIBRATED" in r.getMessage() for r in caplog.records)
