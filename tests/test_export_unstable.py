"""Export refusals and reports: an unstable model is refused in one line; an unscorable test split is named."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rlr_support import TINY

from lineside.cli import main
from lineside.train.checkpoint import save_checkpoint
from lineside.train.models.rlr import RLR

pytest.importorskip("onnxruntime")


@pytest.mark.slow
def test_unstable_attention_is_refused_with_exit_2(synth_factory, tmp_path: Path, capsys) -> None:
    data = synth_factory(categories=("wood",), n_train=8, n_test_good=2, n_test_defect=2, size=96)
    torch.manual_seed(0)
    model = RLR(TINY, ["wood"], random_init_backbone=True)
    with torch.no_grad():  # logits ~1e5: the -1e4 additive window mask no longer masks, rounding flips the argmax
        for decoder in model.decoders:
            for layer in decoder.layers:
                layer.lca.q_proj.weight.mul_(300.0)
                layer.lca.k_proj.weight.mul_(300.0)
    save_checkpoint(tmp_path / "model.pt", model)
    out = tmp_path / "bundle"
    assert (
        main(["export", str(tmp_path / "model.pt"), "--precision", "fp32", "--data", str(data), "--out", str(out)]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "does not reproduce rlr" in err and "numerically unstable" in err and "nothing was written" in err
    assert not out.exists()


@pytest.mark.slow
def test_a_data_set_without_test_defects_exports_and_the_report_says_why(
    synth_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The gates read only the validation split; a test split that cannot be scored is named, not swallowed."""
    import json
    import logging
    import shutil

    from lineside.train.runner import TrainRequest, train_run

    data = synth_factory(categories=("wood",), n_train=8, n_test_good=2, n_test_defect=2, size=128)
    train_run(TrainRequest(data=data, model="patchcore", out=tmp_path / "run", preset="tiny", progress=False))
    goods_only = tmp_path / "goods_only"
    shutil.copytree(data, goods_only)
    for folder in (goods_only / "wood" / "test").iterdir():
        if folder.name != "good":
            shutil.rmtree(folder)
    out = tmp_path / "bundle"
    caplog.set_level(logging.WARNING, logger="lineside.export.steps")  # whatever levels earlier tests left
    argv = ["export", str(tmp_path / "run" / "model.pt"), "--precision", "fp32", "--data", str(goods_only)]
    assert main([*argv, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert "accuracy" not in report and "needs good and defect images" in report["accuracy_skipped"]
    assert report["validation"]["fp32"]["mean"]["image_auroc"] >= 0.0  # the gates still measured
    assert any("no test-split accuracy" in r.getMessage() for r in caplog.records)
