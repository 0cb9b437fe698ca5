"""RLR trained for real by the shared loop (tiny preset, Lite0 ImageNet weights) on synthetic defects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lineside.train.checkpoint import load_checkpoint
from lineside.train.models.rlr import RLR
from lineside.train.runner import TrainRequest, train_run


@pytest.mark.slow
def test_tiny_rlr_learns_to_find_synthetic_defects(synth_factory, tmp_path: Path) -> None:
    torch.set_num_threads(2)
    data = synth_factory(categories=("washer", "wood"), n_train=16, n_test_good=8, n_test_defect=8, size=128)
    out = tmp_path / "run"
    summary = train_run(TrainRequest(data=data, model="rlr", out=out, preset="tiny", epochs=60, progress=False))
    mean = summary["eval"]["mean"]
    assert summary["classes"] == ["washer", "wood"]  # one model for both categories
    assert mean["image_auroc"] >= 0.7, summary["eval"]  # chance is 0.5
    assert mean["pixel_auroc"] >= 0.9, summary["eval"]
    loaded = load_checkpoint(out / "model.pt").model
    assert isinstance(loaded, RLR) and not loaded.training
    trained = [float(d.reference.detach().std()) for d in loaded.decoders]
    assert all(0.1 < s < 10 for s in trained)  # the references are real, trained tensors


@pytest.mark.slow
def test_map_statistics_standardise_good_training_maps(synth_factory, tmp_path: Path) -> None:
    """After training, each level's error on the good training images is ~N(0, 1) per position."""
    from lineside.train.data import load_train_data, open_for_training
    from lineside.train.features import prepare

    torch.set_num_threads(2)
    data = synth_factory(categories=("wood",), n_train=12, n_test_good=4, n_test_defect=4, size=128)
    out = tmp_path / "run"
    train_run(TrainRequest(data=data, model="rlr", out=out, preset="tiny", epochs=3, progress=False))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["stage"] == "map statistics" and log[-1]["images"] >= 8
    model = load_checkpoint(out / "model.pt").model
    assert isinstance(model, RLR)
    dataset, classes = open_for_training(data, None)
    images, _ = load_train_data(dataset, classes, model.input_size, progress=False)
    prepared = prepare(model, images, seed=0, device=torch.device("cpu"), progress=False)
    assert prepared.features is not None
    with torch.no_grad():
        raw = model.level_errors([level.float() for level in prepared.features])
    for error, decoder in zip(raw, model.reference_decoders(), strict=True):
        z = (error[:, 0] - decoder.error_mean) / decoder.error_std  # (N, h, w)
        assert abs(float(z.mean(0).abs().max())) < 1e-3  # centred on the good parts at every position
        assert float(z.std(0, unbiased=False).max()) <= 1.0 + 1e-3  # unit spread at most (floored stds: less)
        assert float(decoder.error_std.min()) >= 0.1 * float(decoder.error_std.mean()) - 1e-6


def test_checkpoint_without_statistics_loads_as_unstandardised(tmp_path: Path) -> None:
    """A checkpoint written before the statistics existed loads strictly, with an identity standardisation."""
    from rlr_support import TINY

    from lineside.train.checkpoint import checkpoint_dict

    model = RLR(TINY, ["part"], random_init_backbone=True)
    data = checkpoint_dict(model)
    data["state_dict"] = {k: v for k, v in data["state_dict"].items() if "error_" not in k}
    torch.save(data, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt").model
    assert isinstance(loaded, RLR)
    for decoder in loaded.reference_decoders():
        assert torch.equal(decoder.error_mean, torch.zeros(decoder.grid))
        assert torch.equal(decoder.error_std, torch.ones(decoder.grid))
