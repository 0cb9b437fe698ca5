"""CRR model: contract, training-only noise, fixed blur/top-k, ONNX export parity with ONNX Runtime."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lineside.train.models import MODELS, TrainBatch, build_model
from lineside.train.models.layers import GaussianBlur, LinearAttention, top_mean_score
from lineside.train.preprocess import Preprocess


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    return build_model("crr", "tiny", ["a", "b"], embed_dim=32)


def test_registry_presets_and_outputs(tiny):
    assert MODELS["crr"].presets.keys() >= {"tiny", "edge", "paper"}
    assert MODELS["crr"].presets["edge"].backbone == "efficientnet_lite2"
    assert MODELS["crr"].presets["paper"].backbone == "dinov2_vitb14_reg"
    tiny.eval()
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        out, again = tiny(x), tiny(x)
    assert out.anomaly_map.shape == (2, 1, 128, 128) and out.score.shape == (2,)
    assert torch.equal(out.anomaly_map, again.anomaly_map)  # no masking/dropout in eval
    assert torch.allclose(out.score, top_mean_score(out.anomaly_map, 0.01))


def test_feature_masking_and_dropout_only_in_training(tiny):
    targets = tiny.encode(torch.randn(1, 3, 128, 128))
    with torch.no_grad():
        noisy = [tiny.reconstruct(targets, noisy=True)[0] for _ in range(2)]
        clean = [tiny.reconstruct(targets, noisy=False)[0] for _ in range(2)]
    assert not torch.equal(noisy[0], noisy[1])
    assert torch.equal(clean[0], clean[1])


def test_losses_train_the_right_parameters(tiny):
    tiny.train()
    x = torch.randn(2, 3, 128, 128)
    masks = torch.zeros(2, 1, 128, 128)
    masks[:, :, 40:60, 40:60] = 1
    batch = TrainBatch(
        images=x, class_ids=torch.zeros(2, dtype=torch.long), defect_images=x.flip(-1), defect_masks=masks
    )
    recon, seg = tiny.training_stages()
    losses = recon.loss(batch)
    assert set(losses) >= {"loss", "recon", "repair"} and losses["loss"].requires_grad
    seg_ids = {id(p) for p in seg.parameters}
    assert not seg_ids & {id(p) for p in recon.parameters}
    assert not any(id(p) in seg_ids or id(p) in {id(q) for q in recon.parameters} for p in tiny.encoder.parameters())
    seg_loss = seg.loss(batch)["loss"]
    seg_loss.backward()
    assert all(p.grad is not None for p in seg.parameters)
    assert all(p.grad is None for p in recon.parameters)  # reconstruction frozen in stage 2


def test_blur_is_normalised_gaussian_and_attention_is_row_stochastic():
    blur = GaussianBlur(4.0)
    assert blur.kernel_x.shape[-1] == 33 and math.isclose(float(blur.kernel_x.sum()), 1.0, rel_tol=1e-6)
    flat = torch.full((1, 1, 64, 64), 0.3)
    assert torch.allclose(blur(flat), flat, atol=1e-6)
    impulse = torch.zeros(1, 1, 65, 65)
    impulse[..., 32, 32] = 1
    out = blur(impulse)
    ys = torch.arange(65.0) - 32
    std = float(((out[0, 0].sum(1) * ys**2).sum()).sqrt())
    assert std == pytest.approx(4.0, rel=0.02)
    attn = LinearAttention(8, 2)
    with torch.no_grad():
        attn.proj.weight.copy_(torch.eye(8))
        attn.proj.bias.zero_()
        attn.qkv.bias.zero_()
        attn.qkv.weight[16:].copy_(torch.zeros(8, 8))
        attn.qkv.bias[16:] = 1.0  # v = 1 everywhere: attention weights summing to 1 give exactly 1
    assert torch.allclose(attn(torch.randn(1, 10, 8)), torch.ones(1, 10, 8), atol=1e-4)


@pytest.mark.slow
def test_fused_onnx_export_matches_torch(tiny, tmp_path):
    ort = pytest.importorskip("onnxruntime")

    class Fused(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.pre, self.model = Preprocess(model.mean, model.std), model

        def forward(self, frames):
            return tuple(self.model(self.pre(frames)))

    fused = Fused(tiny.eval()).eval()
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 128, 128, 3), dtype=np.uint8))
    path = tmp_path / "crr.onnx"
    torch.onnx.export(fused, (frames,), str(path), input_names=["image"], output_names=["anomaly_map", "score"],
                      opset_version=17, dynamo=False)  # fmt: skip
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    amap, score = session.run(None, {"image": frames.numpy()})
    with torch.no_grad():
        expected = fused(frames)
    np.testing.assert_allclose(amap, expected[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(score, expected[1].numpy(), atol=1e-4)
