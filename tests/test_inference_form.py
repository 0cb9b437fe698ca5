"""Inference forms: the cheaper modules `lineside export` traces give the trained models' outputs."""

from __future__ import annotations

import pytest
import torch
from rlr_support import TINY

from lineside.train.models import build_model
from lineside.train.models.layers import MatrixUpsampleBlur, UpsampleBlur
from lineside.train.models.local_attention import ConstantWindowAttention
from lineside.train.models.rlr import RLR

torch.set_num_threads(2)


@pytest.mark.parametrize("align_corners", [True, False])
def test_upsample_blur_as_matrices_equals_resize_and_blur(align_corners: bool) -> None:
    torch.manual_seed(0)
    tail = UpsampleBlur((96, 80), sigma=4.0, align_corners=align_corners)
    maps = [torch.rand(2, 1, 12, 10), torch.rand(2, 1, 6, 5), torch.rand(2, 1, 7, 9)]
    matrices = tail.as_matrices([m.shape[-2:] for m in maps])
    assert isinstance(matrices, MatrixUpsampleBlur)
    with torch.no_grad():
        torch.testing.assert_close(matrices(maps), tail(maps), rtol=0, atol=1e-5)


def _assert_same_outputs(model: torch.nn.Module, form: torch.nn.Module, size: int) -> None:
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        trained, exported = model(images), form(images)
    scale = float(trained.anomaly_map.max() - trained.anomaly_map.min())
    torch.testing.assert_close(exported.anomaly_map, trained.anomaly_map, rtol=0, atol=1e-5 * scale)
    torch.testing.assert_close(exported.score, trained.score, rtol=0, atol=1e-5 * scale)


def test_rlr_inference_form_bakes_windows_and_leaves_the_model_alone() -> None:
    torch.manual_seed(0)
    model = RLR(TINY, ["a"], random_init_backbone=True).eval()
    form = model.inference_form()
    layers = [layer for decoder in form.decoders for layer in decoder.layers]
    assert layers and all(isinstance(layer.baked_lca, ConstantWindowAttention) for layer in layers)
    assert isinstance(form.map_tail, MatrixUpsampleBlur)
    assert all(layer.baked_lca is None for decoder in model.decoders for layer in decoder.layers)
    assert isinstance(model.map_tail, UpsampleBlur)
    _assert_same_outputs(model, form, TINY.input_size[0])


def test_crr_inference_form_has_the_matrix_tail() -> None:
    torch.manual_seed(0)
    model = build_model("crr", "tiny", ["a"], embed_dim=32).eval()
    form = model.inference_form()
    assert isinstance(form.map_tail, MatrixUpsampleBlur) and isinstance(model.map_tail, UpsampleBlur)
    _assert_same_outputs(model, form, 128)
