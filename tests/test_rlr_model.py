"""RLR model behaviour with a small frozen timm encoder (random init): shapes, training-only noise, blur, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rlr_support import TINY
from scipy.ndimage import gaussian_filter

from lineside.train.models.base import MODELS, TrainBatch
from lineside.train.models.rlr import RLR, sincos_2d

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def model() -> RLR:
    torch.manual_seed(0)
    return RLR(TINY, ["a", "b"], random_init_backbone=True).eval()


def test_registered_under_rlr() -> None:
    assert MODELS["rlr"] is RLR


def test_forward_shapes_and_score_is_map_max(model: RLR) -> None:
    images = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        out = model(images)
        again = model(images)
    assert out.anomaly_map.shape == (3, 1, 96, 96) and out.score.shape == (3,)
    assert torch.isfinite(out.anomaly_map).all() and (out.anomaly_map >= 0).all()
    torch.testing.assert_close(out.score, out.anomaly_map.flatten(1).amax(dim=1))
    torch.testing.assert_close(out.anomaly_map, again.anomaly_map, rtol=0, atol=0)  # eval: no noise


def test_level_grids_and_masks_follow_the_encoder(model: RLR) -> None:
    fine, coarse = model.decoders
    assert fine.reference.shape == (1, 12 * 12, 40) and coarse.reference.shape == (1, 6 * 6, 112)
    assert (fine.lca_mask == 0).sum(dim=1).max() == 49 and (coarse.lca_mask == 0).sum(dim=1).max() == 25
    assert "decoders.0.lca_mask" not in model.state_dict()  # derived from the config, not stored


def test_jitter_only_in_training_and_encoder_stays_frozen(model: RLR) -> None:
    images = torch.randn(2, 3, 96, 96)
    batch = TrainBatch(images=images, class_ids=torch.zeros(2, dtype=torch.long))
    model.eval()
    with torch.no_grad():
        eval_losses = {model.loss(batch)["loss"].item() for _ in range(2)}
    model.train()
    assert not model.encoder.training and all(d.training for d in model.decoders)
    with torch.no_grad():
        train_losses = {model.loss(batch)["loss"].item() for _ in range(2)}
    model.eval()
    assert len(eval_losses) == 1 and len(train_losses) == 2
    assert not any(p.requires_grad for p in model.encoder.parameters())


def test_training_stage_optimises_decoders_and_references(model: RLR) -> None:
    (stage,) = model.training_stages()
    ids = {id(p) for p in stage.parameters}
    assert {id(d.reference) for d in model.decoders} <= ids
    assert not ids & {id(p) for p in model.encoder.parameters()}
    assert len(ids) == sum(1 for _ in model.decoders.parameters())
    model.train()
    out = stage.loss(TrainBatch(torch.randn(2, 3, 96, 96), torch.zeros(2, dtype=torch.long)))
    out["loss"].backward()
    model.eval()
    assert all(d.reference.grad is not None and d.reference.grad.abs().sum() > 0 for d in model.decoders)
    assert set(out) == {"loss", "mse0", "cos0", "mse1", "cos1"}
    model.zero_grad(set_to_none=True)


def test_blur_is_scipy_gaussian_sigma_4(model: RLR) -> None:
    rng = np.random.default_rng(0)
    heat = rng.random((2, 1, 40, 56)).astype(np.float32)
    with torch.no_grad():
        ours = model.map_tail.blur(torch.from_numpy(heat)).numpy()
    expected = np.stack([gaussian_filter(h[0], sigma=4, mode="mirror")[None] for h in heat])
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_position_embedding_encodes_x_then_y() -> None:
    pos = sincos_2d(8, 3, 5).reshape(3, 5, 8)
    assert torch.allclose(pos[0, 0], torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))
    assert torch.allclose(pos[2, 3, 0], torch.tensor(3.0).sin())  # x part, lowest frequency
    assert torch.allclose(pos[2, 3, 4], torch.tensor(2.0).sin())  # y part
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(6, 2, 2)


@pytest.mark.slow
def test_paper_preset_loads_b6_from_a_user_weights_file(tmp_path) -> None:
    import timm

    from lineside.errors import LinesideError
    from lineside.train.models.base import build_model

    torch.manual_seed(0)
    weights = tmp_path / "tf_efficientnet_b6.pth"
    torch.save(timm.create_model("tf_efficientnet_b6", pretrained=False).state_dict(), weights)
    model = build_model("rlr", "paper", ["a"], backbone_weights=str(weights))
    fine, coarse = model.decoders
    assert fine.reference.shape == (1, 32 * 32, 72) and coarse.reference.shape == (1, 16 * 16, 200)
    assert len(model.decoders[0].layers) == 4 and model.decoders[1].embed.out_features == 512
    stem = model.encoder.model.conv_stem.weight
    assert torch.equal(stem, torch.load(weights, weights_only=True)["conv_stem.weight"])
    with pytest.raises(LinesideError, match="weights file"):
        build_model("rlr", "paper", ["a"])  # B6 has no bundled weights: refuse rather than run random


def test_edge_preset_pools_mlka_keys_at_stride_8_and_old_configs_keep_the_dense_form() -> None:
    from dataclasses import asdict

    from lineside.train.models.base import build_model, config_from_dict
    from lineside.train.models.rlr import RLRConfig

    edge = build_model("rlr", "edge", ["a"], random_init_backbone=True).eval()
    assert edge.config.key_pools == (2, 1)
    assert [tuple(d.mlka_mask.shape) for d in edge.decoders] == [(1024, 256), (256, 256)]
    assert [d.layers[0].key_pool.factor for d in edge.decoders] == [2, 1]
    with torch.no_grad():
        assert edge(torch.randn(1, 3, 256, 256)).anomaly_map.shape == (1, 1, 256, 256)
    saved = asdict(RLRConfig())
    del saved["key_pools"]  # a checkpoint written before the option existed
    assert config_from_dict(RLRConfig, saved).key_pools == (1, 1)
