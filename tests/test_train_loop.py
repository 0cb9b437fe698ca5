"""Shared training loop and checkpoints: real tiny training, determinism, resume, round trip, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lineside.data import open_dataset
from lineside.errors import LinesideError
from lineside.train.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from lineside.train.data import load_train_data, open_for_training
from lineside.train.loop import LoopOptions, fit, warmup_cosine
from lineside.train.models import build_model


@pytest.fixture(scope="module")
def tiny_setup(synth_factory):
    torch.set_num_threads(1)
    root = synth_factory(categories=("washer",), n_train=6, n_test_good=2, n_test_defect=2, size=128)
    dataset, classes = open_for_training(root)
    data, _ = load_train_data(dataset, classes, (128, 128), progress=False)
    return data, classes


def _tiny(classes, **overrides):
    torch.manual_seed(0)
    return build_model("crr", "tiny", classes, recon_epochs=2, seg_epochs=1, embed_dim=32, **overrides)


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("encoder.")}


@pytest.mark.slow
def test_fit_is_deterministic_and_resume_continues_exactly(tiny_setup, tmp_path):
    data, classes = tiny_setup
    first = _tiny(classes)
    result = fit(first, data, LoopOptions(out_dir=tmp_path / "a", progress=False))
    assert [(r["stage"], r["epoch"]) for r in result.history] == [
        ("reconstruct+repair", 1), ("reconstruct+repair", 2), ("segmentation", 1)
    ]  # fmt: skip
    assert result.history[1]["loss"] < result.history[0]["loss"]
    second = _tiny(classes)
    fit(second, data, LoopOptions(out_dir=tmp_path / "b", progress=False))
    for key, value in _state(first).items():
        assert torch.equal(value, second.state_dict()[key]), key

    calls = []

    def interrupt(_model):  # evaluated before the epoch's checkpoint: the 2nd call stops after epoch 1 is saved
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return {}

    third = _tiny(classes)
    with pytest.raises(KeyboardInterrupt):
        fit(third, data, LoopOptions(out_dir=tmp_path / "c", eval_every=1, progress=False), eval_fn=interrupt)
    assert read_checkpoint(tmp_path / "c" / "model.pt")["train_state"]["epoch"] == 1
    resumed = _tiny(classes)
    fit(resumed, data, LoopOptions(out_dir=tmp_path / "c", resume=True, progress=False))
    for key, value in _state(first).items():
        assert torch.allclose(value, resumed.state_dict()[key], atol=1e-6), key


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = build_model("crr", "tiny", ["a", "b"], embed_dim=32).eval()
    save_checkpoint(tmp_path / "m.pt", model, metrics={"image_auroc": 0.9})
    raw = torch.load(tmp_path / "m.pt", weights_only=True)  # plain data only
    assert raw["classes"] == ["a", "b"] and raw["mean"] == [0.5, 0.5, 0.5]
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert (loaded.model_name, loaded.preset, loaded.input_size) == ("crr", "tiny", (128, 128))
    assert loaded.config == model.config and loaded.metrics == {"image_auroc": 0.9}
    assert not loaded.model.training
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        a, b = model(x), loaded.model(x)
    assert torch.equal(a.anomaly_map, b.anomaly_map) and torch.equal(a.score, b.score)


def test_bad_checkpoints_and_data_fail_with_one_line(tmp_path, synth_factory):
    with pytest.raises(LinesideError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(LinesideError, match="not a lineside checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    root = synth_factory(categories=("washer",), n_train=6, n_test_good=2, n_test_defect=2, size=128)
    with pytest.raises(LinesideError, match="no training images for category screw"):
        open_for_training(root, ["screw"])
    with pytest.raises(LinesideError, match="no such data set folder"):
        open_for_training(tmp_path / "nothing")
    assert open_dataset(root).categories == ["washer"]
    with pytest.raises(LinesideError, match="unknown crr config"):
        build_model("crr", "tiny", ["a"], no_such_field=1)
    with pytest.raises(LinesideError, match="no preset"):
        build_model("crr", "huge", ["a"])


def test_warmup_cosine_schedule():
    factor = warmup_cosine(100, 0.1)
    values = np.array([factor(s) for s in range(100)])
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert np.all(np.diff(values[10:]) <= 1e-12) and values[-1] < 0.05
