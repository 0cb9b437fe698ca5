"""Small real ONNX graphs shaped like lineside bundles (uint8 NHWC in, anomaly_map + score out), for engine tests.

A conv/BN/ReLU feature net with a matmul attention step, a 1-cosine distance map, bilinear
upsampling and a max score, exported by torch at FP32; FP16 casts the body inside the graph
(IO and scoring tail stay FP32); INT8 is ORT `quantize_static` QDQ S8S8 per-channel with
float biases (QuantizeBias False), the flavour TensorRT accepts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lineside.bundle import Bundle, Manifest, TensorSpec, write_bundle

SIZE = (64, 64)


def _torch_model(half_body: bool):  # noqa: ANN202 - torch is imported lazily
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())
            self.body = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 3, 1, 1), nn.ReLU())
            self.proj = nn.Linear(32, 32)
            self.head = nn.Conv2d(32, 32, 1)

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = image.float().permute(0, 3, 1, 2).flip(1) / 255.0  # (B, 3, H, W) RGB
            x = (x - 0.5) / 0.5
            dtype = torch.float16 if half_body else torch.float32
            feats = self.body(self.stem(x.to(dtype)))  # (B, 32, H/4, W/4)
            tokens = feats.flatten(2).transpose(1, 2)  # (B, HW, 32)
            attn = torch.softmax(self.proj(tokens) @ tokens.transpose(1, 2) / 32**0.5, dim=-1)  # (B, HW, HW)
            recon = (attn @ tokens).transpose(1, 2).reshape(feats.shape)
            recon = self.head(recon).float()
            dist = 1 - nn.functional.cosine_similarity(feats.float(), recon, dim=1).unsqueeze(1)  # (B, 1, h, w)
            amap = nn.functional.interpolate(dist, size=SIZE, mode="bilinear", align_corners=False)
            return amap, amap.flatten(1).amax(1)

    torch.manual_seed(0)
    model = Tiny().eval()
    return model.half() if half_body else model


def export_onnx(path: Path, precision: str, *, quantize_bias: bool = False) -> Path:
    """Write a tiny model's ONNX at `precision` (fp32, fp16 or int8) to `path`."""
    import torch

    torch.set_num_threads(2)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = torch.randint(0, 255, (1, *SIZE, 3), dtype=torch.uint8)
    model = _torch_model(half_body=precision == "fp16")
    target = path if precision != "int8" else path.with_name(path.stem + ".fp32.onnx")
    with torch.no_grad():
        torch.onnx.export(
            model, (image,), str(target), input_names=["image"], output_names=["anomaly_map", "score"],
            opset_version=17, dynamo=False,
        )  # fmt: skip
    if precision == "int8":
        _quantize(target, path, quantize_bias)
    return path


def _quantize(source: Path, out: Path, quantize_bias: bool) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(0)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"image": rng.integers(0, 255, (1, *SIZE, 3), dtype=np.uint8)} for _ in range(8)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    quantize_static(
        str(source), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8, per_channel=True,
        extra_options={"QuantizeBias": quantize_bias, "ActivationSymmetric": True, "WeightSymmetric": True},
    )  # fmt: skip


def tiny_manifest(precision: str) -> Manifest:
    """The manifest of a tiny bundle at `precision` (static batch 1)."""
    return Manifest(
        model="tiny",
        preset="test",
        classes=("part",),
        input_size=SIZE,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        precision=precision,
        inputs=(TensorSpec("image", (1, *SIZE, 3), "uint8"),),
        outputs=(TensorSpec("anomaly_map", (1, 1, *SIZE), "float32"), TensorSpec("score", (1,), "float32")),
    )


def tiny_bundle(root: Path, precision: str) -> Bundle:
    """A real bundle around the tiny model's ONNX at `precision`."""
    onnx_path = export_onnx(root / f"tiny_{precision}.onnx", precision)
    return write_bundle(root / f"bundle_{precision}", tiny_manifest(precision), {"model.onnx": onnx_path})
