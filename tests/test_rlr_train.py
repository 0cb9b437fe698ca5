"""RLR trained for real by the shared loop (tiny preset, Lite0 ImageNet weights) on synthetic defects."""

from __future__ import annotations

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
